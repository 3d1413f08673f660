"""--from-file: the daemon's text log lines as entries, read on from a saved position."""

from __future__ import annotations

import logging
from pathlib import Path

from mmd.adapters.journal import FieldsFormatter
from mmd.adapters.report_files import file_cursor, read_new_lines
from mmd.report.aggregate import EVENTS
from mmd.report.text_log import entry, fields, timestamp

from .entries import T0


def formatted(message: str, **extra: str) -> str:
    """A line exactly as the daemon's stderr handler writes it."""
    record = logging.LogRecord("mmd.session", logging.INFO, __file__, 1, message, None, None)
    record.fields = extra
    return FieldsFormatter().format(record)


def test_the_daemons_own_lines_parse_back() -> None:
    line = formatted("[session][header][add](3): X-Spam-Status=No, score=0.1",
                     MMD_EVENT="header-add", MMD_SESSION_ID="3",
                     MMD_HEADER_NAME="X-Spam-Status",
                     MMD_HEADER_VALUE='No, score=0.1\n\ttests="A=B"', MMD_QUEUE_ID="")
    assert fields(line) == {"MMD_EVENT": "header-add", "MMD_SESSION_ID": "3",
                            "MMD_HEADER_NAME": "X-Spam-Status",
                            "MMD_HEADER_VALUE": 'No, score=0.1\n\ttests="A=B"',
                            "MMD_QUEUE_ID": ""}


def test_timestamps() -> None:
    assert timestamp("2027-01-15T08:00:00+0000 INFO x") == T0
    assert timestamp("2027-01-15T08:00:00.250000+00:00 INFO x") == T0 + 0.25
    assert timestamp("2027-01-15T09:00:00.250000123+01:00 INFO x") == T0 + 0.25
    assert timestamp("2027-01-15 08:00:00 INFO x") == T0  # no zone: UTC
    assert timestamp("INFO mmd.session: no time") is None


def test_entries_only_for_the_reports_events() -> None:
    end = formatted("[session][end][data][accept][0.5](1)", MMD_EVENT="session-end",
                    MMD_STATUS="accept", MMD_ELAPSED="0.500000")
    got = entry(f"2027-01-15T08:00:00+00:00 {end}", 0.0, EVENTS)
    assert got == {"MMD_EVENT": "session-end", "MMD_STATUS": "accept",
                   "MMD_ELAPSED": "0.500000", "__REALTIME_TIMESTAMP": str(T0 * 1_000_000)}
    unstamped = entry(end, T0 + 7, EVENTS)
    assert unstamped is not None
    assert unstamped["__REALTIME_TIMESTAMP"] == str((T0 + 7) * 1_000_000)
    ready = formatted("ready", MMD_EVENT="ready")
    assert entry(ready, 0.0, EVENTS) is None
    assert entry("a line of someone else", 0.0, EVENTS) is None


def test_reading_on_from_the_saved_position(tmp_path: Path) -> None:
    log = tmp_path / "mmd.log"
    log.write_text("one\ntwo\nthree without newline")
    lines = list(read_new_lines(log, None))
    assert [text for text, _ in lines] == ["one\n", "two\n"]  # a half-written line waits
    cursor = file_cursor(log, lines[-1][1])
    with log.open("a") as stream:
        stream.write(" yet\nfour\n")
    assert [text for text, _ in read_new_lines(log, cursor)] == ["three without newline yet\n",
                                                                 "four\n"]
    # rotated (a new file under the name) or truncated: from the start
    log.unlink()
    log.write_text("new\n")
    assert [text for text, _ in read_new_lines(log, cursor)] == ["new\n"]
