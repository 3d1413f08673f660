"""The MTA-side session of milter-test-server against a milter served in-process.

The peer here is a small asyncio server built on our codec: it lets each test
script the replies exactly (including replies a libmilter child would never
send, such as a change outside end-of-message). The libmilter peer is in
tests/integration/test_harness.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from mmd.adapters.mta_client import (
    ConnectError,
    ReplyText,
    SessionError,
    SessionInput,
    SessionResult,
    Timeouts,
    run_session,
)
from mmd.config.connection_spec import InetSpec, UnixSpec
from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, encode
from mmd.protocol.constants import ALL_ACTIONS, Family, Step

Replies = dict[type, list[list[m.Message]]]


def _input(**changes: object) -> SessionInput:
    data = SessionInput(
        connect_host="mx.example.net",
        connect_address=InetSpec("192.0.2.1", 50443),
        helo_fqdn="delian",
        envelope_from="<s@example.com>",
        recipients=["<a@example.org>", "<b@example.org>"],
        headers=[("Subject", "hi"), ("From", "<s@example.com>")],
        body_chunks=[b"one", b"two", b"three"],
        macros={"connect": [("j", "mx")], "end-of-message": [("i", "Q1")]},
    )
    for key, value in changes.items():
        setattr(data, key, value)
    return data


class FakeMilter:
    """Replies from a script: per command type, a list of reply batches (default continue)."""

    def __init__(self, steps: Step | None = None, replies: Replies | None = None,
                 silent: tuple[type, ...] = (), hang: type | None = None) -> None:
        self.steps = steps if steps is not None else Step(0)
        self.replies = replies or {}
        self.silent = silent
        self.hang = hang
        self.received: list[m.Message] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder(Direction.COMMANDS)
        while data := await reader.read(65536):
            decoder.receive_data(data)
            while (message := decoder.next_message()) is not None:
                self.received.append(message)
                if isinstance(message, m.Quit):
                    writer.close()
                    return
                if type(message) is self.hang:
                    await asyncio.sleep(1)
                for reply in self._answer(message):
                    writer.write(encode(reply))
                await writer.drain()
        writer.close()

    def _answer(self, message: m.Message) -> list[m.Message]:
        if isinstance(message, m.Negotiate):
            return [m.Negotiate(6, ALL_ACTIONS, self.steps)]
        if isinstance(message, m.Macro | m.Abort) or type(message) in self.silent:
            return []
        batches = self.replies.get(type(message))
        if batches:
            return batches.pop(0)
        return [m.Continue()]

    def sent(self, kind: type) -> list[m.Message]:
        return [message for message in self.received if isinstance(message, kind)]


def _run(tmp_path: Path, milter: FakeMilter, data: SessionInput | None = None,
         timeouts: Timeouts | None = None) -> SessionResult:
    path = tmp_path / "milter.sock"

    async def go() -> SessionResult:
        server = await asyncio.start_unix_server(milter.handle, str(path))
        async with server:
            return await run_session(UnixSpec(str(path)),
                                     data or _input(), timeouts or Timeouts(reading=2.0))

    return asyncio.run(go())


def test_a_whole_session_in_classic_order(tmp_path: Path) -> None:
    milter = FakeMilter()
    result = _run(tmp_path, milter)

    assert result.status == "pass"
    kinds = [type(message).__name__ for message in milter.received]
    assert kinds == ["Negotiate", "Macro", "Connect", "Helo", "Mail", "Rcpt", "Rcpt", "Data",
                     "Header", "Header", "EndOfHeaders", "Body", "Body", "Body", "Macro",
                     "EndOfMessage", "Quit"]
    connect = milter.sent(m.Connect)[0]
    assert connect == m.Connect("mx.example.net", Family.INET, 50443, "192.0.2.1")
    assert milter.sent(m.Macro)[0] == m.Macro(b"C", (("j", "mx"),))


def test_one_rejected_recipient_does_not_end_the_transaction(tmp_path: Path) -> None:
    milter = FakeMilter(replies={m.Rcpt: [[m.ReplyCode("550 5.1.1 unknown user")]]})
    result = _run(tmp_path, milter)

    assert result.status == "pass"
    assert result.rejected_recipients == ["<a@example.org>"]
    assert result.reply is None
    assert milter.sent(m.EndOfMessage)


def test_every_recipient_rejected_ends_with_that_reply(tmp_path: Path) -> None:
    milter = FakeMilter(replies={m.Rcpt: [[m.Reject()], [m.ReplyCode("550 5.1.1 nobody")]]})
    result = _run(tmp_path, milter)

    assert result.status == "reject"
    assert result.reply == ReplyText(550, "5.1.1", "nobody")
    assert not milter.sent(m.Data)
    assert [type(x) for x in milter.received[-2:]] == [m.Abort, m.Quit]


def test_temporary_failure_code_at_mail(tmp_path: Path) -> None:
    milter = FakeMilter(replies={m.Mail: [[m.ReplyCode("451 4.7.1 later")]]})
    result = _run(tmp_path, milter)

    assert result.status == "temporary-failure"
    assert result.reply == ReplyText(451, "4.7.1", "later")
    assert not milter.sent(m.Rcpt)


@pytest.mark.parametrize(("reply", "status"), [(m.Accept(), "accept"),
                                               (m.Discard(), "discard"),
                                               (m.Tempfail(), "temporary-failure")])
def test_final_verdict_at_connect(tmp_path: Path, reply: m.Message, status: str) -> None:
    milter = FakeMilter(replies={m.Connect: [[reply]]})
    result = _run(tmp_path, milter)

    assert result.status == status
    assert not milter.sent(m.Helo)


def test_step_flags_skip_events_and_replies(tmp_path: Path) -> None:
    milter = FakeMilter(steps=Step.NO_HELO | Step.NO_REPLY_MAIL | Step.NO_END_OF_HEADERS,
                        silent=(m.Mail,))
    result = _run(tmp_path, milter)

    assert result.status == "pass"
    assert not milter.sent(m.Helo)
    assert not milter.sent(m.EndOfHeaders)
    assert milter.sent(m.Mail)


def test_skip_during_body_goes_to_end_of_message(tmp_path: Path) -> None:
    milter = FakeMilter(replies={m.Body: [[m.Skip()]]})
    result = _run(tmp_path, milter)

    assert result.status == "pass"
    assert milter.sent(m.Body) == [m.Body(b"one")]
    assert milter.sent(m.EndOfMessage)


def test_changes_and_progress_at_end_of_message(tmp_path: Path) -> None:
    changes: list[m.Message] = [m.Progress(), m.AddHeader("X-A", "1"), m.Progress(),
                                m.Quarantine("why"), m.ChangeFrom("<n@example.com>"),
                                m.Accept()]
    milter = FakeMilter(replies={m.EndOfMessage: [changes]})
    result = _run(tmp_path, milter)

    assert result.status == "accept"
    assert result.progress_count == 2
    assert result.quarantine_reason == "why"
    assert result.changes == [m.AddHeader("X-A", "1"), m.Quarantine("why"),
                              m.ChangeFrom("<n@example.com>")]


def test_a_change_before_end_of_message_is_a_protocol_error(tmp_path: Path) -> None:
    milter = FakeMilter(replies={m.Helo: [[m.AddHeader("X", "1")]]})
    with pytest.raises(SessionError, match="outside end-of-message"):
        _run(tmp_path, milter)


def test_leading_space_header_values(tmp_path: Path) -> None:
    milter = FakeMilter(steps=Step.HEADER_LEADING_SPACE)
    _run(tmp_path, milter)

    assert milter.sent(m.Header)[0] == m.Header("Subject", " hi")


def test_reading_timeout(tmp_path: Path) -> None:
    milter = FakeMilter(hang=m.Helo)
    with pytest.raises(SessionError, match=r"^reading timeout$"):
        _run(tmp_path, milter, timeouts=Timeouts(reading=0.2))


def test_end_of_message_timeout_is_separate(tmp_path: Path) -> None:
    milter = FakeMilter(hang=m.EndOfMessage)
    with pytest.raises(SessionError, match=r"^end-of-message timeout$"):
        _run(tmp_path, milter, timeouts=Timeouts(reading=2.0, end_of_message=0.2))


def test_unreachable_milter(tmp_path: Path) -> None:
    spec = UnixSpec(str(tmp_path / "none.sock"))
    run: Callable[[], SessionResult] = lambda: asyncio.run(  # noqa: E731
        run_session(spec, _input(), Timeouts()))
    with pytest.raises(ConnectError):
        run()
