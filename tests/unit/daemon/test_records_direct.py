"""The per-session entries skip ``logging`` only when the journal is their one listener, and
then send what the logging path would have sent (the real journal: tests/integration/
test_report_journal.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mmd.adapters import journal
from mmd.adapters.session_records import ChildVerdictRecord, SessionRecord
from mmd.daemon import records
from mmd.daemon.records import Counters, JournalRecorder

VERDICT = ChildVerdictRecord(7, "spamass", "end-of-message", "reject", 0.25, "score 12",
                             "Q7", "192.0.2.1", "mx.example")
END = SessionRecord(7, "end-of-message", "reject", 1.5, True, "Q7", "192.0.2.1", "mx.example")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, str]]]:
    """What reaches cysystemd's send (a fake here: the real one writes to the host)."""
    entries: list[dict[str, str]] = []
    monkeypatch.setattr("mmd.adapters.journal._journal.send",
                        lambda **fields: entries.append(fields))
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield entries
    finally:
        root.handlers = handlers
        root.setLevel(level)
        journal._installed = None


def _journal_alone(use_journal: bool = True) -> logging.Handler:
    """As the daemon runs: the journal handler is the root's only one (pytest adds its own)."""
    handler = journal.setup_logging(verbose=False, use_journal=use_journal)
    logging.getLogger().handlers = [handler]
    return handler


def _write_all() -> None:
    recorder = JournalRecorder(Counters())
    recorder.child_finished(VERDICT)
    recorder.header_added(7, "X-Spam-Flag", "YES")
    recorder.session_finished(END)


def test_direct_entries_equal_the_logging_path(
    sent: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _journal_alone()
    assert journal.sole_journal(records.log, logging.INFO) is handler
    _write_all()
    direct = list(sent)
    sent.clear()
    monkeypatch.setattr(records, "sole_journal", lambda logger, level: None)
    _write_all()
    assert len(direct) == 4
    assert direct == sent


def test_another_listener_takes_the_logging_path(sent: list[dict[str, str]]) -> None:
    _journal_alone()
    other = logging.Handler()
    logging.getLogger("mmd").addHandler(other)
    try:
        assert journal.sole_journal(records.log, logging.INFO) is None
    finally:
        logging.getLogger("mmd").removeHandler(other)
    _journal_alone(use_journal=False)
    assert journal.sole_journal(records.log, logging.INFO) is None
    assert journal.sole_journal(records.log, logging.DEBUG) is None
