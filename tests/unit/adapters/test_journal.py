"""Journal logging: field repair and the journal/stderr choice (entries read back from a real
journald: tests/integration/test_journal_entries.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmd.adapters.journal import (
    FieldsFormatter,
    JournalHandler,
    field_name,
    should_use_journal,
    stderr_is_journal,
    structured_fields,
    syslog_priority,
)

ROOT = Path(__file__).resolve().parents[3]


def test_field_name_repair() -> None:
    assert field_name("MMD_SESSION_ID") == "MMD_SESSION_ID"
    assert field_name("mmd-queue.id") == "MMD_QUEUE_ID"
    assert field_name("__x") == "X"
    assert field_name("42") is None
    assert field_name("_") is None
    assert field_name("A" * 80) == "A" * 64


def test_structured_fields_keep_base_fields_and_drop_none() -> None:
    record = logging.LogRecord("mmd", logging.INFO, __file__, 1, "m", None, None)
    record.fields = {"PRIORITY": "0", "SYSLOG_IDENTIFIER": "x", "MMD_MILTER": "opendkim", "B": None}
    assert structured_fields(record) == {"MMD_MILTER": "opendkim"}
    plain = logging.LogRecord("mmd", logging.INFO, __file__, 1, "m", None, None)
    assert structured_fields(plain) == {}
    handler = JournalHandler()
    fields = handler.journal_fields(record)
    assert fields["PRIORITY"] == "6"
    assert fields["SYSLOG_IDENTIFIER"] == "milter-manager"


@pytest.mark.parametrize(
    ("level", "priority"),
    [(logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6),
     (logging.DEBUG, 7), (25, 6), (5, 7)],
)
def test_priorities(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def test_stderr_formatter_prints_fields_after_the_message() -> None:
    record = logging.LogRecord("mmd.server", logging.WARNING, __file__, 1, "child %s failed",
                               ("opendkim",), None)
    record.fields = {"MMD_MILTER": "opendkim", "MMD_REASON": "connection refused", "X": ""}
    assert FieldsFormatter().format(record) == (
        'WARNING mmd.server: child opendkim failed MMD_MILTER=opendkim '
        'MMD_REASON="connection refused" X=""'
    )


def test_journal_stream_must_match_stderr(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        status = os.fstat(stream.fileno())
        identity = (status.st_dev, status.st_ino)
    assert stderr_is_journal(f"{status.st_dev}:{status.st_ino}", identity)
    assert not stderr_is_journal(f"{status.st_dev}:{status.st_ino + 1}", identity)
    assert not stderr_is_journal("garbage", identity)
    assert not stderr_is_journal(None, identity)


def test_journal_choice() -> None:
    identity = (1, 2)
    assert should_use_journal("1:2", identity, None, False)
    assert should_use_journal(None, identity, "abc", True)
    assert not should_use_journal(None, identity, "abc", False)
    assert not should_use_journal(None, identity, None, True)
    assert not should_use_journal("1:3", identity, None, True)


def outside_systemd(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that systemd did not start (logging to stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)


def test_setup_logging_uses_stderr_outside_systemd() -> None:
    script = (
        "import logging\n"
        "from mmd.adapters.journal import setup_logging\n"
        "setup_logging(verbose=False)\n"
        "setup_logging(verbose=False)\n"
        "logging.getLogger('mmd.x').info('hello', extra={'fields': {'MMD_EVENT': 'reload'}})\n"
        "logging.getLogger('mmd.x').debug('hidden')\n"
    )
    result = outside_systemd(script)
    assert result.stderr == "INFO mmd.x: hello MMD_EVENT=reload\n"


def test_field_names_are_repaired_once_and_stay_the_same() -> None:
    record = logging.LogRecord("mmd", logging.INFO, __file__, 1, "m", None, None)
    record.fields = {"mmd-cached.name": 1, "MESSAGE": "x", "_": "y", 7: "seven"}
    first = structured_fields(record)
    assert first == {"MMD_CACHED_NAME": "1"}
    assert structured_fields(record) == first  # second time from the cache
    record.fields = {"mmd-cached.name": None, "PRIORITY": "0"}
    assert structured_fields(record) == {}


def test_journal_message_is_the_text_unless_a_formatter_or_traceback_adds_to_it() -> None:
    handler = JournalHandler()
    record = logging.LogRecord("mmd", logging.INFO, __file__, 1, "%s=%d", ("a", 1), None)
    assert handler.journal_fields(record)["MESSAGE"] == "a=1"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("mmd", logging.ERROR, __file__, 1, "failed", None,
                                   sys.exc_info())
    message = handler.journal_fields(failed)["MESSAGE"]
    assert message.startswith("failed\nTraceback")
    assert "ValueError: boom" in message
    handler.setFormatter(logging.Formatter("<%(levelname)s> %(message)s"))
    assert handler.journal_fields(record)["MESSAGE"] == "<INFO> a=1"


def test_setup_logging_records_carry_no_caller_or_thread() -> None:
    script = (
        "import logging\n"
        "from mmd.adapters.journal import setup_logging\n"
        "setup_logging(verbose=False)\n"
        "record = logging.getLogger('x').makeRecord('x', 20, 'f', 1, 'm', None, None)\n"
        "print(record.threadName, record.processName, record.process)\n"
        "logging.getLogger('x').warning('w %s', 1, extra={'fields': {'MMD_EVENT': 'e'}})\n"
    )
    result = outside_systemd(script)
    assert result.stdout == "None None None\n"
    assert result.stderr == "WARNING x: w 1 MMD_EVENT=e\n"
