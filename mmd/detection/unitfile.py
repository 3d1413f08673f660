"""Read a systemd unit the way systemd would assemble it from disk.

Only the settings detection needs: ExecStart, Environment, EnvironmentFile
(from [Service]) and ListenStream (from [Socket]). The fragment is the first
file found in systemd's search order; drop-ins come from every directory,
a same-named drop-in in an earlier directory hiding a later one, applied in
file-name order. An empty assignment resets a list, as in systemd.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from mmd.detection.files import RootFiles
from mmd.detection.shellvars import expand

# systemd's system unit search path, highest priority first. /lib is kept
# apart from /usr/lib for hosts (and fake roots) without merged /usr.
UNIT_DIRECTORIES: tuple[str, ...] = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)

_LIST_KEYS = {"ExecStart", "Environment", "EnvironmentFile", "ListenStream"}


@dataclass(frozen=True, slots=True)
class UnitFile:
    name: str
    files: tuple[str, ...]  # fragment first, then drop-ins, as host paths
    exec_start: tuple[str, ...] = ()  # argv of the last ExecStart, not yet expanded
    exec_start_file: str = ""  # the file that set it
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: tuple[tuple[str, bool], ...] = ()  # (path, optional)
    listen_streams: tuple[str, ...] = ()


def find_unit(files: RootFiles, name: str, fragment_hint: str = "") -> UnitFile | None:
    """The unit as assembled from disk, or None when no fragment exists below the root."""
    fragment = fragment_hint if fragment_hint and files.exists(fragment_hint) else ""
    if not fragment:
        for directory in UNIT_DIRECTORIES:
            candidate = f"{directory}/{name}"
            if files.exists(candidate) and not files.local(candidate).is_dir():
                fragment = candidate
                break
    if not fragment:
        return None
    text = files.read(fragment)
    if text is None:
        return None
    settings: dict[str, list[tuple[str, str]]] = {key: [] for key in _LIST_KEYS}
    _apply(settings, text, fragment)
    paths = [fragment]
    for drop_in in _drop_ins(files, name):
        drop_text = files.read(drop_in)
        if drop_text is not None:
            _apply(settings, drop_text, drop_in)
            paths.append(drop_in)
    exec_start = settings["ExecStart"][-1] if settings["ExecStart"] else ("", "")
    return UnitFile(
        name=name,
        files=tuple(paths),
        exec_start=_argv(exec_start[0]),
        exec_start_file=exec_start[1],
        environment=_environment([value for value, _ in settings["Environment"]]),
        environment_files=tuple(
            (value[1:], True) if value.startswith("-") else (value, False)
            for value, _ in settings["EnvironmentFile"]
        ),
        listen_streams=tuple(value for value, _ in settings["ListenStream"]),
    )


def _drop_ins(files: RootFiles, name: str) -> list[str]:
    chosen: dict[str, str] = {}
    for directory in UNIT_DIRECTORIES:
        folder = f"{directory}/{name}.d"
        for entry in files.list_dir(folder):
            if entry.endswith(".conf") and entry not in chosen:
                chosen[entry] = f"{folder}/{entry}"
    return [chosen[entry] for entry in sorted(chosen)]


def _apply(settings: dict[str, list[tuple[str, str]]], text: str, path: str) -> None:
    section = ""
    for line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        key, sep, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _LIST_KEYS or section not in ("Service", "Socket"):
            continue
        if value:
            settings[key].append((value, path))
        else:
            settings[key].clear()


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _split(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:  # unbalanced quotes: systemd would refuse it, we just do our best
        return value.split()


def _argv(value: str) -> tuple[str, ...]:
    argv = _split(value)
    if argv:
        argv[0] = argv[0].lstrip("@-:+!|")
    return tuple(argv)


def _environment(values: list[str]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for value in values:
        for word in _split(value):
            name, sep, setting = word.partition("=")
            if sep:
                environment[name] = setting
    return environment


_BARE_REFERENCE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")


def expand_argv(argv: tuple[str, ...], variables: dict[str, str]) -> list[str]:
    """systemd's rules: ``$VAR`` splits into words, ``${VAR}`` stays one word."""
    out: list[str] = []
    for word in argv:
        if _BARE_REFERENCE.fullmatch(word):
            out.extend(expand(word, variables).split())
        else:
            out.append(expand(word, variables))
    return out


def unwrap_shell(argv: list[str], variables: dict[str, str]) -> list[str]:
    """``/bin/sh -c 'milter -p $SOCKET'`` -> the milter's own argv, shell-expanded."""
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash", "dash") and argv[1] == "-c":
        return [expand(word, variables) for word in _split(argv[2])]
    return argv


def option_value(argv: list[str], option: str) -> str | None:
    """The value of ``-x VALUE`` or ``-xVALUE`` (the last one wins, as with getopt)."""
    found: str | None = None
    i = 1
    while i < len(argv):
        word = argv[i]
        if word == option and i + 1 < len(argv):
            found = argv[i + 1]
            i += 2
            continue
        if len(option) == 2 and word.startswith(option) and len(word) > 2:
            found = word[2:]
        i += 1
    return found
