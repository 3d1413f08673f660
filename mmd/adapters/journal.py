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
_NEEDS_QUOTES = re.compile(r'[\s"=\\]').search
_BASE_FIELDS = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "LOGGER"}
)
FACILITY_TEXT = str(SYSLOG_FACILITY_MAIL)

# Callers name their fields with a few constants, so each name is repaired once and looked up
# after that (key -> usable name, or None for a name that is dropped). Bounded, in case a
# caller ever passes names built from data.
_USABLE_NAMES: dict[object, str | None] = {}
_USABLE_NAMES_LIMIT = 4096


def field_name(name: str) -> str | None:
    """A valid journal field name for ``name``, or None when nothing usable is left.

    Lower case is raised, other characters become ``_``, leading ``_`` and digits go.
    """
    repaired = _BAD_CHARACTERS.sub("_", name.upper()).lstrip("_0123456789")
    repaired = repaired[:MAX_FIELD_NAME]
    return repaired or None


def _usable_name(key: object) -> str | None:
    """``field_name`` of a caller's key, None for the handler's own fields; cached."""
    name = field_name(str(key))
    if name in _BASE_FIELDS:
        name = None
    if len(_USABLE_NAMES) < _USABLE_NAMES_LIMIT:
        _USABLE_NAMES[key] = name
    return name


def structured_fields(record: logging.LogRecord) -> dict[str, str]:
    """The record's ``extra={"fields": ...}`` as journal fields: valid names, string values.

    Names that would overwrite the handler's own fields (MESSAGE, PRIORITY, ...) are dropped;
    None values are left out.
    """
    raw = record.__dict__.get("fields")
    if not isinstance(raw, Mapping):
        return {}
    known = _USABLE_NAMES
    fields: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        name = known.get(key, "")
        if name == "":
            name = _usable_name(key)
        if name is None:
            continue
        fields[name] = value if type(value) is str else str(value)
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


_PRIORITY_TEXT = {level: str(syslog_priority(level)) for level in range(logging.CRITICAL + 1)}


def _priority_text(levelno: int) -> str:
    text = _PRIORITY_TEXT.get(levelno)
    return str(syslog_priority(levelno)) if text is None else text


class JournalHandler(logging.Handler):
    """Sends each record as one journal entry with its structured fields."""

    def __init__(self, identifier: str = SYSLOG_IDENTIFIER, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.identifier = identifier
        self._plain = logging.Formatter("%(message)s")
        self.setFormatter(self._plain)

    def message(self, record: logging.LogRecord) -> str:
        """MESSAGE: the text alone (no Formatter pass) unless a traceback or another formatter
        adds to it."""
        if (self.formatter is self._plain and not record.exc_info and not record.exc_text
                and not record.stack_info):
            return record.getMessage()
        return self.format(record)

    def journal_fields(self, record: logging.LogRecord) -> dict[str, str]:
        return self._stamped(
            structured_fields(record), record.name, record.levelno, self.message(record)
        )

    def _stamped(
        self, fields: dict[str, str], logger: str, levelno: int, message: str
    ) -> dict[str, str]:
        """``fields`` with the handler's own: the one place both send paths take them from."""
        fields["MESSAGE"] = message
        fields["PRIORITY"] = _priority_text(levelno)
        fields["SYSLOG_IDENTIFIER"] = self.identifier
        fields["SYSLOG_FACILITY"] = FACILITY_TEXT
        fields["LOGGER"] = logger
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _journal.send(**self.journal_fields(record))
        except Exception:
            self.handleError(record)

    def send_entry(self, logger: str, levelno: int, message: str, fields: dict[str, str]) -> None:
        """The entry ``emit`` would send for a record, from valid field names and string
        values (``mmd.journal_schema``'s), without a LogRecord. Adds the handler's own fields
        to ``fields``; raises what cysystemd raises."""
        _journal.send(**self._stamped(fields, logger, levelno, message))


def sole_journal(logger: logging.Logger, levelno: int) -> JournalHandler | None:
    """The journal handler, when a record of ``levelno`` from ``logger`` would go to it and
    nowhere else (as the daemon runs): the per-session entries then skip the logging
    machinery. None whenever anything else listens (a test's handler, stderr, a filter)."""
    handler = _installed
    if type(handler) is not JournalHandler or not logger.isEnabledFor(levelno):
        return None
    if handler.filters or handler.level > levelno:
        return None
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            if current.handlers != [handler] or found:
                return None
            found = True
        if not current.propagate:
            break
        current = current.parent
    return handler if found else None


def _quote(value: str) -> str:
    if value and not _NEEDS_QUOTES(value):
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
    # Nothing reads a record's thread, process or caller (journald adds _PID itself): not
    # collecting them saves a quarter of each record's cost (the logging HOWTO's
    # "Optimization" list names these switches).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
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
    "sole_journal",
    "structured_fields",
    "syslog_priority",
]
