"""The daemon's text log (stderr without journald), written by its own recorder and formatter,
for the report's ``--from-file`` tests."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from mmd.adapters.journal import FieldsFormatter
from mmd.adapters.session_records import ChildVerdictRecord, SessionRecord
from mmd.daemon.records import Counters, JournalRecorder


class _Stamped(logging.Formatter):
    """The daemon's stderr format led by an ISO 8601 time, as docs/report.md's awk line does."""

    def __init__(self) -> None:
        super().__init__()
        self.fields = FieldsFormatter()
        self.when = 0.0

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(self.when, UTC).isoformat()
        return f"{stamp} {self.fields.format(record)}"


def write_log(path: Path, times: list[float]) -> None:
    """One session per time: a child's verdict, an added header, the session's end."""
    handler = logging.FileHandler(path)
    formatter = _Stamped()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        recorder = JournalRecorder(Counters())
        for number, when in enumerate(times, 1):
            formatter.when = when
            recorder.child_finished(ChildVerdictRecord(
                number, "spamass", "end-of-message", "accept", 0.25, "", f"Q{number}",
                "192.0.2.1", "mx.example"))
            recorder.header_added(number, "X-Spam-Status", "No, score=0.1")
            recorder.session_finished(SessionRecord(
                number, "end-of-message", "accept", 1.5, False, f"Q{number}", "192.0.2.1",
                "mx.example"))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
