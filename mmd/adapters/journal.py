"""Logging to the systemd journal, with structured fields, or to stderr as ``KEY=value``.

The only module that imports cysystemd. Callers log with the standard ``logging`` API and pass
structured data as ``extra={"fields": {"MMD_SESSION_ID": "42", ...}}``; the statistics tools
read those fields back with ``journalctl -o json``. Journal field names must be
``[A-Z0-9_]``, must not start with ``_`` (trusted fields) or a digit (journald drops those
silently), and are at most 64 characters: bad names are repaired here rather than lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import TextIO

from cysystemd import journal as _journal

SYSLOG_IDENTIFIER = "milter-manager"
SYSLOG_FACILITY_MAIL = 2
JOURNAL_SOCKET = "/run/systemd/journal/socket"
MAX_FIELD_NAME = 64

_BAD_CHARACTERS = re.compile(r"[^A-Z0-9_]")
_BASE_FIELDS = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "LOGGER"}
)


def field_name(name: str) -> str | None:
    """A valid journal field name for ``name``, or None when nothing usable is left.

    Lower case is raised, other characters become ``_``, leading ``_`` and digits go.
    """
    repaired = _BAD_CHARACTERS.sub("_", name.upper()).lstrip("_0123456789")
    repaired = repaired[:MAX_FIELD_NAME]
    return repaired or None


def structured_fields(record: logging.LogRecord) -> dict[str, str]:
    """The record's ``extra={"fields": ...}`` as journal fields: valid names, string values.

    Names that would overwrite the handler's own fields (MESSAGE, PRIORITY, ...) are dropped;
    None values are left out.
    """
    raw = getattr(record, "fields", None)
    if not isinstance(raw, Mapping):
        return {}
    fields: dict[str, str] = {}
    for key, value in raw.items():
        name = field_name(str(key))
        if name is None or name in _BASE_FIELDS or value is None:
            continue
        fields[name] = str(value)
    return fields


def syslog_priority(levelno: int) -> int:
    """syslog priority (0 emerg .. 7 debug) for a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalHandler(logging.Handler):
    """Sends each record as one journal entry with its structured fields."""

    def __init__(self, identifier: str = SYSLOG_IDENTIFIER, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.identifier = identifier
        self.setFormatter(logging.Formatter("%(message)s"))

    def journal_fields(self, record: logging.LogRecord) -> dict[str, str]:
        fields = structured_fields(record)
        fields.update(
            MESSAGE=self.format(record),
            PRIORITY=str(syslog_priority(record.levelno)),
            SYSLOG_IDENTIFIER=self.identifier,
            SYSLOG_FACILITY=str(SYSLOG_FACILITY_MAIL),
            LOGGER=record.name,
        )
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _journal.send(**self.journal_fields(record))
        except Exception:
            self.handleError(record)


def _quote(value: str) -> str:
    if value and not re.search(r'[\s"=\\]', value):
        return value
    return json.dumps(value, ensure_ascii=False)


class FieldsFormatter(logging.Formatter):
    """Plain text for stderr: the message followed by the same fields as ``KEY=value``."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = structured_fields(record)
        if not fields:
            return text
        pairs = " ".join(f"{name}={_quote(value)}" for name, value in fields.items())
        first, newline, rest = text.partition("\n")
        return f"{first} {pairs}{newline}{rest}"


def stderr_is_journal(journal_stream: str | None, stderr_identity: tuple[int, int] | None) -> bool:
    """True when systemd connected our stderr to the journal (JOURNAL_STREAM=DEV:INODE)."""
    if not journal_stream or stderr_identity is None:
        return False
    device, _, inode = journal_stream.partition(":")
    try:
        return (int(device), int(inode)) == stderr_identity
    except ValueError:
        return False


def should_use_journal(
    journal_stream: str | None,
    stderr_identity: tuple[int, int] | None,
    invocation_id: str | None,
    journal_socket_exists: bool,
) -> bool:
    """Journal when stderr already goes there, or when systemd runs us and journald listens."""
    if stderr_is_journal(journal_stream, stderr_identity):
        return True
    return bool(invocation_id) and journal_socket_exists


def _identity(stream: TextIO) -> tuple[int, int] | None:
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return (status.st_dev, status.st_ino)


def journal_wanted(environ: Mapping[str, str] | None = None, stderr: TextIO | None = None) -> bool:
    env = os.environ if environ is None else environ
    return should_use_journal(
        env.get("JOURNAL_STREAM"),
        _identity(sys.stderr if stderr is None else stderr),
        env.get("INVOCATION_ID"),
        os.path.exists(JOURNAL_SOCKET),
    )


_installed: logging.Handler | None = None


def setup_logging(verbose: bool, *, use_journal: bool | None = None) -> logging.Handler:
    """Route the root logger to the journal or stderr; ``--verbose`` adds debug messages.

    Replaces handlers a previous call installed, so a reload may call it again.
    """
    if use_journal is None:
        use_journal = journal_wanted()
    handler: logging.Handler
    if use_journal:
        handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(FieldsFormatter())
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    _installed = handler
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


__all__ = [
    "FieldsFormatter",
    "JournalHandler",
    "field_name",
    "journal_wanted",
    "setup_logging",
    "should_use_journal",
    "structured_fields",
    "syslog_priority",
]
