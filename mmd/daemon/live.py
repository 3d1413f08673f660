"""Pieces of the live update that follows systemd (``Controller.refresh_detection``).

A live update re-runs detection only for what systemd changed; the configuration files
are read again as well (the merge needs them), so it runs only while they are exactly as
the last start or reload read them. An edit not yet reloaded waits for the admin's
``systemctl reload``: a live update never applies it on the side.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from mmd.config.loader import config_files
from mmd.journal_schema import Event, Field, extra

log = logging.getLogger("mmd.daemon")


def fingerprint(config_dir: Path) -> str:
    """The configuration files' names and contents, as one digest (unreadable ones count)."""
    digest = hashlib.sha256()
    problems: list[str] = []
    paths = config_files(config_dir, problems)
    digest.update("\n".join(problems).encode() + b"\0")
    for path in paths:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as error:
            digest.update(f"unreadable: {error}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def announce(
    name: str,
    in_use: bool,
    status: str,
    reason: str,
    text: str,
    subscribers: Iterable[Callable[[str, bool, str], None]],
    level: int = logging.INFO,
    more: Mapping[str, str] | None = None,
) -> None:
    """One journal entry (MMD_EVENT=milter-state) and one MilterStateChanged per change."""
    log.log(
        level,
        "%s",
        text,
        extra=extra(
            Event.MILTER_STATE,
            {Field.MILTER: name, Field.STATUS: status, Field.REASON: reason, **(more or {})},
        ),
    )
    for changed in subscribers:
        changed(name, in_use, text)


def report_set_change(
    before: Sequence[str],
    after: Sequence[str],
    why: str,
    already_said: Iterable[str],
    subscribers: Iterable[Callable[[str, bool, str], None]],
) -> None:
    """Each child that joined or left the set, unless already announced as (in)active."""
    said = set(already_said)
    children = ", ".join(after) or "none"
    listeners = list(subscribers)
    for name in sorted(set(before) ^ set(after)):
        if name in said:
            continue
        joined = name in after
        word = "joined" if joined else "left"
        text = f"milter {name} {word} the set of children (systemd: {why}); now: {children}"
        announce(name, joined, word, f"systemd: {why}", text, listeners,
                 more={Field.CHILDREN: children})  # fmt: skip


def log_update(number: int, why: str, children: Sequence[str]) -> None:
    """One line per live update (as a reload logs one): how often systemd's bursts made a
    new generation, e.g. during a package upgrade (MMD_EVENT=live-update)."""
    names = ", ".join(children) or "none"
    log.info(
        "live update after systemd: %s: generation %d, milters: %s",
        why,
        number,
        names,
        extra=extra(
            Event.LIVE_UPDATE,
            {
                Field.GENERATION: str(number),
                Field.REASON: f"systemd: {why}",
                Field.CHILDREN: names,
            },
        ),
    )
