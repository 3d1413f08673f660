"""Statistics entries from the daemon's text log (stderr without journald), for ``--from-file``.

Without journald the daemon writes each entry as one line: ``LEVEL logger: message`` followed
by the journal fields as ``KEY=value`` (values with blanks, quotes, ``=`` or backslashes are
JSON strings), see ``mmd.adapters.journal.FieldsFormatter``. The line has no time of its own:
a leading timestamp (ISO 8601, as ``journalctl -o short-iso``, ``ts`` or the awk line of
docs/report.md put there) gives it one; lines without one count at ``default_time``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from datetime import UTC, datetime

from mmd.journal_schema import Field

_STAMP = re.compile(
    r"^\s*(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s"
)
_FIELD = re.compile(r' ([A-Z][A-Z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?= |$)')
_EVENT = f" {Field.EVENT}="


def timestamp(line: str) -> float | None:
    """The Unix time a line starts with, or None; a time without a zone is UTC."""
    match = _STAMP.match(line)
    if match is None:
        return None
    text = match.group(1).replace(",", ".").replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-]\d\d\d\d$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def fields(line: str) -> dict[str, str]:
    """The ``KEY=value`` fields from ``MMD_EVENT=`` on (the message before it is free text)."""
    at = line.find(_EVENT)
    if at < 0:
        return {}
    found: dict[str, str] = {}
    for match in _FIELD.finditer(line.rstrip("\n"), at):
        name, value = match.groups()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        found[name] = value
    return found


def entry(line: str, default_time: float, events: Collection[str]) -> dict[str, str] | None:
    """One journal-shaped entry (``__REALTIME_TIMESTAMP`` in microseconds) or None when the
    line is not one of ``events``."""
    found = fields(line)
    if found.get(Field.EVENT) not in events:
        return None
    when = timestamp(line)
    found["__REALTIME_TIMESTAMP"] = str(round((default_time if when is None else when)
                                              * 1_000_000))
    return found
