"""Headers children added reach the recorder (for the statistics report), cheaply filtered:
only the names the report counts, and never a deletion."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mmd.adapters.server import (
    Generation,
    MtaProtocol,
    ServerState,
    reported_header,
)
from mmd.adapters.session_records import ChildVerdictRecord, SessionRecord
from mmd.config.model import ManagerConfig
from mmd.daemon.records import Counters, JournalRecorder
from mmd.engine import ConditionSkipped, SessionSettings, ToMta
from mmd.engine.applicability import SessionFacts
from mmd.protocol import messages as m
from mmd.protocol.codec import encode
from tests.support.transport import RecordingTransport


class Recorder:
    def __init__(self) -> None:
        self.headers: list[tuple[int, str, str]] = []

    def session_started(self, session_id: int, active: int) -> None:
        pass

    def child_finished(self, record: ChildVerdictRecord) -> None:
        pass

    def condition_skipped(
        self, session_id: int, facts: SessionFacts, event: ConditionSkipped
    ) -> None:
        pass

    def session_finished(self, record: SessionRecord) -> None:
        pass

    def child_error(self, session_id: int, milter: str, reason: str) -> None:
        pass

    def mta_error(self, session_id: int, reason: str) -> None:
        pass

    def header_added(self, session_id: int, name: str, value: str) -> None:
        self.headers.append((session_id, name, value))


def test_reported_header_names() -> None:
    for name in ("X-Spam-Flag", "x-spam-status", "X-Virus-Status", "X-Greylist",
                 "Received-SPF", "Authentication-Results", "DKIM-Signature"):
        assert reported_header(name), name
    for name in ("Subject", "Received", "X-Spamd", "X-Greylisted", "X-Mailer"):
        assert not reported_header(name), name


def test_header_changes_to_the_mta_are_recorded() -> None:
    asyncio.run(header_changes_to_the_mta_are_recorded())  # a session arms its idle timer


async def header_changes_to_the_mta_are_recorded() -> None:
    recorder = Recorder()
    generation = Generation(ManagerConfig(), (), (), SessionSettings())
    state = ServerState(generation, recorder)
    protocol = MtaProtocol(state)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    replies: list[m.ReplyMessage] = [
        m.AddHeader("X-Spam-Flag", "YES"),
        m.AddHeader("Subject", "not counted"),
        m.InsertHeader(0, "Received-SPF", "pass (example.org)"),
        m.ChangeHeader(1, "X-Virus-Status", ""),  # a deletion
        m.ChangeHeader(1, "X-Virus-Status", "Infected (Eicar)"),
        m.Continue(),
    ]
    protocol._carry_out([ToMta(reply) for reply in replies])
    assert recorder.headers == [
        (1, "X-Spam-Flag", "YES"),
        (1, "Received-SPF", "pass (example.org)"),
        (1, "X-Virus-Status", "Infected (Eicar)"),
    ]
    # everything still goes to the MTA, in order (in one write)
    assert b"".join(transport.written) == b"".join(encode(reply) for reply in replies)


def test_journal_recorder_header_line_and_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mmd.session")
    JournalRecorder(Counters()).header_added(42, "X-Spam-Flag", "YES")
    (record,) = caplog.records
    assert record.getMessage() == "[session][header][add](42): X-Spam-Flag=YES"
    fields: Any = record.fields  # type: ignore[attr-defined]
    assert fields == {
        "MMD_EVENT": "header-add",
        "MMD_SESSION_ID": "42",
        "MMD_HEADER_NAME": "X-Spam-Flag",
        "MMD_HEADER_VALUE": "YES",
    }
