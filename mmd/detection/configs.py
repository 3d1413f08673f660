"""Parsers for the milters' own configuration files: where each one listens.

Each parser takes the file's text and returns a :class:`ConfigFinding`; it
never raises on odd content (a line it does not understand is skipped), so a
half-edited file still yields what can be known from it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from mmd.detection.specs import host_port_spec, normalize_spec


@dataclass(frozen=True, slots=True)
class ConfigFinding:
    spec: str | None = None  # normalised connection spec
    raw: str = ""  # the value as written, for notes
    extra_timeout: float = 0.0  # seconds to add to read/write timeouts
    not_configured: str = ""  # why the file says the milter is not set up yet


ConfigParser = Callable[[str], ConfigFinding]


def _content_lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", ";"))
    ]


def _first_word(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    return words[0] if words else ""


def keyword(key: str) -> ConfigParser:
    """``Key value`` files (opendkim, opendmarc, dkimpy-milter, ...); the key ignores case."""
    wanted = key.lower()

    def parse(text: str) -> ConfigFinding:
        for line in _content_lines(text):
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].lower() == wanted:
                raw = _first_word(parts[1])
                return ConfigFinding(spec=normalize_spec(raw), raw=raw)
        return ConfigFinding()

    parse.__name__ = f"keyword_{key}"
    return parse


def clamav_milter(text: str) -> ConfigFinding:
    """clamav-milter.conf: ``MilterSocket``; an ``Example`` line means not configured yet."""
    lines = _content_lines(text)
    if any(line.split()[0] == "Example" for line in lines):
        return ConfigFinding(not_configured="the file still holds the 'Example' line")
    return keyword("MilterSocket")(text)


_TIME_PART = re.compile(r"(\d+)([smhdw]?)")
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _greylist_seconds(word: str) -> float | None:
    """milter-greylist time values: ``30``, ``30s``, ``2m``, ``1h30m``."""
    pos, total = 0, 0
    while pos < len(word):
        match = _TIME_PART.match(word, pos)
        if match is None:
            return None
        total += int(match[1]) * _TIME_UNITS[match[2]]
        pos = match.end()
    return float(total) if word else None


def milter_greylist(text: str) -> ConfigFinding:
    """greylist.conf: ``socket "PATH" [MODE]``; the largest ``tarpit TIME`` anywhere."""
    spec: str | None = None
    raw = ""
    tarpit = 0.0
    for line in _content_lines(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if not words:
            continue
        if words[0] == "socket" and len(words) > 1 and spec is None:
            raw = words[1]
            spec = normalize_spec(raw)
        for i, word in enumerate(words[:-1]):
            if word == "tarpit":
                seconds = _greylist_seconds(words[i + 1])
                if seconds is not None:
                    tarpit = max(tarpit, seconds)
    return ConfigFinding(spec=spec, raw=raw, extra_timeout=tarpit)


_RSPAMD_BIND = re.compile(r"""^bind_socket\s*=\s*(?:"([^"]*)"|'([^']*)'|([^;\s]+))""")
_RSPAMD_MILTER = re.compile(r"^milter\s*=\s*\"?(\w+)\"?")


def rspamd_proxy(text: str) -> ConfigFinding:
    """worker-proxy.inc: the first ``bind_socket``; ``milter = no`` means no milter there."""
    spec: str | None = None
    raw = ""
    for line in _content_lines(text):
        milter = _RSPAMD_MILTER.match(line)
        if milter is not None and milter[1].lower() in ("no", "false", "off"):
            return ConfigFinding(not_configured="the proxy worker has 'milter = no'")
        bind = _RSPAMD_BIND.match(line)
        if bind is not None and spec is None:
            value = next(group for group in bind.groups() if group is not None)
            raw = value.split()[0] if value.split() else ""
            spec = host_port_spec(raw)
    return ConfigFinding(spec=spec, raw=raw)


def colon_keyword(key: str) -> ConfigParser:
    """``key: value`` files (enma.conf's ``milter.socket``)."""
    wanted = key.lower()

    def parse(text: str) -> ConfigFinding:
        for line in _content_lines(text):
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == wanted:
                raw = _first_word(value)
                return ConfigFinding(spec=normalize_spec(raw), raw=raw)
        return ConfigFinding()

    parse.__name__ = f"colon_keyword_{key}"
    return parse
