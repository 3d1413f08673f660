"""journalctl's export format, as the report reads it (the real journalctl is exercised in
tests/integration/test_report_journal.py)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from mmd.adapters.journal_reader import JournalQuery, JournalReadError, command, parse_export


def binary(name: bytes, value: bytes) -> bytes:
    return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"


def test_text_and_binary_fields() -> None:
    stream = io.BytesIO(
        b"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP=1800000000000000\nMMD_EVENT=header-add\n"
        + binary(b"MMD_HEADER_VALUE", b"No, score=0.3\n\ttests=NONE=x\xff")
        + b"MMD_HEADER_NAME=X-Spam-Status\n\n"
        b"__CURSOR=s=1;i=2\nMMD_EVENT=session-end\nMMD_REASON=a=b\n\n"
        b"__CURSOR=s=1;i=3\nMMD_EVENT=session-end\n"  # no blank line at the very end
    )
    entries = list(parse_export(stream))
    assert entries == [
        {"__CURSOR": "s=1;i=1", "__REALTIME_TIMESTAMP": "1800000000000000",
         "MMD_EVENT": "header-add", "MMD_HEADER_VALUE": "No, score=0.3\n\ttests=NONE=x\ufffd",
         "MMD_HEADER_NAME": "X-Spam-Status"},
        {"__CURSOR": "s=1;i=2", "MMD_EVENT": "session-end", "MMD_REASON": "a=b"},
        {"__CURSOR": "s=1;i=3", "MMD_EVENT": "session-end"},
    ]


def test_cut_binary_field() -> None:
    stream = io.BytesIO(b"MMD_EVENT=x\nMMD_HEADER_VALUE\n" + struct.pack("<Q", 10) + b"abc")
    with pytest.raises(JournalReadError):
        list(parse_export(stream))


def test_command() -> None:
    query = JournalQuery(after_cursor="s=1;i=2", since="yesterday", directory=Path("/j"),
                         events=("session-end", "header-add"), fields=("MMD_EVENT", "_PID"))
    assert command(query) == [
        "journalctl", "--output=export", "--no-pager", "--directory=/j",
        "--after-cursor=s=1;i=2", "--output-fields=MMD_EVENT,_PID",
        "SYSLOG_IDENTIFIER=milter-manager", "MMD_EVENT=session-end", "MMD_EVENT=header-add",
    ]
    first = command(JournalQuery(since="yesterday"))
    assert "--since=yesterday" in first and not any("cursor" in a for a in first)
