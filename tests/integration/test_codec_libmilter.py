"""The codec against real libmilter: a python3-milter child on a unix socket.

We play the MTA side: every command is encoded by our codec, every reply is
decoded by it, so both directions meet an implementation we did not write.
The child is started with Debian's /usr/bin/python3 (the only interpreter
that has python3-milter); if it cannot start, the test fails with its stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmd.protocol.codec import Decoder, Direction, encode_many
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Action, Family, MacroStage, Step
from mmd.protocol.messages import (
    Accept,
    AddHeader,
    AddRecipient,
    AddRecipientWithArgs,
    Body,
    ChangeFrom,
    ChangeHeader,
    Connect,
    Continue,
    Data,
    DeleteRecipient,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    Macro,
    Mail,
    Message,
    Negotiate,
    Progress,
    Quarantine,
    Quit,
    Rcpt,
    ReplaceBody,
    ReplyCode,
    Unknown,
)

pytestmark = pytest.mark.integration

CHILD = Path(__file__).resolve().parents[1] / "support" / "children" / "libmilter_child.py"
DEBIAN_PYTHON = "/usr/bin/python3"


@pytest.fixture
def child_socket() -> Iterator[str]:
    """Start the child, wait for its socket, stop it (by its own PID) afterwards."""
    workdir = tempfile.mkdtemp(prefix="mmd-codec-")  # short path: sun_path is 108 bytes
    path = os.path.join(workdir, "child.sock")
    proc = subprocess.Popen(
        [DEBIAN_PYTHON, str(CHILD), path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    started = False
    try:
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(path):
                started = True
                break
            time.sleep(0.02)
        if started:
            yield path
    finally:
        # SIGKILL to the child we started: libmilter's graceful stop waits
        # for its 5 s listener timeout, and there is nothing to flush.
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    if not started:
        pytest.fail(f"libmilter child did not start (exit {proc.returncode}): {err.decode()}")
    assert b"Traceback" not in err, f"the child raised: {err.decode()}"


class Mta:
    """Just enough of an MTA side: send packets, collect decoded replies."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.decoder = Decoder(Direction.REPLIES)

    def send(self, *messages: Message) -> None:
        self.sock.sendall(encode_many(messages))

    def replies(self, count: int) -> list[Message]:
        got: list[Message] = []
        while len(got) < count:
            message = self.decoder.next_message()
            if message is not None:
                got.append(message)
                continue
            chunk = self.sock.recv(65536)
            assert chunk, f"child closed the connection after {got}"
            self.decoder.receive_data(chunk)
        return got

    def until_closed(self) -> list[Message]:
        """Everything the child still sends until it closes the connection."""
        got: list[Message] = []
        while chunk := self.sock.recv(65536):
            self.decoder.receive_data(chunk)
            while (message := self.decoder.next_message()) is not None:
                got.append(message)
        return got


def test_a_whole_session_with_libmilter(child_socket: str) -> None:
    mta = Mta(child_socket)
    try:
        mta.send(Negotiate(6, ALL_ACTIONS, ALL_STEPS))
        (answer,) = mta.replies(1)
        assert isinstance(answer, Negotiate)
        assert answer.version == 6
        assert answer.actions == ALL_ACTIONS  # python3-milter keeps every offered action
        # Every callback is overridden, so the child wants every event and reply...
        assert not answer.steps & (Step.NO_CONNECT | Step.NO_HELO | Step.NO_MAIL
                                   | Step.NO_RCPT | Step.NO_HEADERS | Step.NO_BODY)
        assert not answer.steps & Step.NO_REPLY_HEADER
        # ...and its @symlist on envfrom arrives as a v6 per-stage macro list.
        assert answer.symbol_lists == {MacroStage.MAIL: "{auth_type} i"}

        # Macros get no reply; they travel in one write with their command.
        mta.send(
            Macro(b"C", (("j", "mx.example.org"), ("{daemon_name}", "smtpd"))),
            Connect("client.example.net", Family.INET, 52344, "198.51.100.7"),
        )
        assert mta.replies(1) == [Continue()]
        mta.send(Helo("client.example.net"))
        assert mta.replies(1) == [Continue()]
        mta.send(
            Macro(b"M", (("{auth_type}", "PLAIN"), ("i", "4Xyz1234"))),
            Mail(("<a@example.net>", "SIZE=4096")),
        )
        assert mta.replies(1) == [Continue()]
        mta.send(Rcpt(("<b@example.org>",)))
        assert mta.replies(1) == [Continue()]
        mta.send(Rcpt(("<reject@example.org>", "NOTIFY=NEVER")))
        assert mta.replies(1) == [ReplyCode("550 5.7.1 Rejected by the test child")]
        mta.send(Unknown("XFOO bar"))
        assert mta.replies(1) == [Continue()]
        mta.send(Data())
        assert mta.replies(1) == [Continue()]
        mta.send(Header("From", "<a@example.net>"))
        assert mta.replies(1) == [Continue()]
        mta.send(Header("Subject", "hello"))
        assert mta.replies(1) == [Continue()]
        mta.send(EndOfHeaders())
        assert mta.replies(1) == [Continue()]
        body = b"line one\r\n" * 1000  # 10000 bytes in one BODY packet
        mta.send(Body(body))
        assert mta.replies(1) == [Continue()]
        mta.send(Macro(b"E", (("i", "4Xyz1234"),)), EndOfMessage())
        seen, *changes = mta.replies(11)
        # What libmilter decoded from our commands, as the child reports it:
        assert isinstance(seen, AddHeader) and seen.name == "X-Seen"
        assert json.loads(seen.value) == [
            ["connect", "client.example.net", socket.AF_INET, ["198.51.100.7", 52344],
             "mx.example.org", "smtpd"],
            ["helo", "client.example.net"],
            ["mail", "<a@example.net>", "SIZE=4096", "PLAIN", "4Xyz1234"],
            ["rcpt", "<b@example.org>"],
            ["rcpt", "<reject@example.org>", "NOTIFY=NEVER"],
            ["unknown", "XFOO bar"],
            ["header", "From", "<a@example.net>"],
            ["header", "Subject", "hello"],
            ["body", len(body)],
        ]
        assert changes == [
            InsertHeader(0, "X-First", "inserted"),
            ChangeHeader(1, "Subject", "changed subject"),
            AddRecipient("<added@example.org>"),
            AddRecipientWithArgs("<added-par@example.org>", "NOTIFY=NEVER"),
            DeleteRecipient("<b@example.org>"),
            ChangeFrom("<new-sender@example.org>", "SIZE=100"),
            ReplaceBody(b"replaced body\r\n"),
            Quarantine("held by the test child"),
            Progress(),
            Accept(),
        ]
        mta.send(Quit())
        assert mta.until_closed() == []
        assert mta.decoder.pending_bytes == 0
    finally:
        mta.sock.close()


def test_ipv6_connect_and_a_chunk_in_end_of_message(child_socket: str) -> None:
    """An IPv6 CONNECT and a body chunk carried by EOB itself reach libmilter intact.

    (QUIT_NC is not exercised here: libmilter 8.17 with python3-milter 1.0.5
    answers nothing after it, neither a CONNECT nor a new OPTNEG.)
    """
    mta = Mta(child_socket)
    try:
        mta.send(Negotiate(6, ALL_ACTIONS, Step(0)))
        assert isinstance(mta.replies(1)[0], Negotiate)
        mta.send(Connect("[2001:db8::7]", Family.INET6, 587, "2001:db8::7"))
        assert mta.replies(1) == [Continue()]
        mta.send(Helo("v6.example"))
        assert mta.replies(1) == [Continue()]
        mta.send(Mail(("<>",)))
        assert mta.replies(1) == [Continue()]
        mta.send(Rcpt(("<c@example.org>",)))
        assert mta.replies(1) == [Continue()]
        mta.send(EndOfHeaders())
        assert mta.replies(1) == [Continue()]
        mta.send(EndOfMessage(b"last chunk\r\n"))
        seen, *_changes, verdict = mta.replies(11)
        assert isinstance(seen, AddHeader)
        assert json.loads(seen.value)[0][:4] == [
            "connect", "[2001:db8::7]", socket.AF_INET6, ["2001:db8::7", 587, 0, 0]
        ]
        assert json.loads(seen.value)[-1] == ["body", len(b"last chunk\r\n")]
        assert verdict == Accept()
        mta.send(Quit())
        assert mta.until_closed() == []
    finally:
        mta.sock.close()


def test_libmilter_answers_an_old_protocol_version(child_socket: str) -> None:
    """A version 2 MTA (no v6 steps offered) still gets an OPTNEG our decoder reads."""
    mta = Mta(child_socket)
    try:
        mta.send(Negotiate(2, Action.ADD_HEADERS | Action.CHANGE_HEADERS, Step(0)))
        (answer,) = mta.replies(1)
        assert isinstance(answer, Negotiate)
        assert answer.version == 2
        assert answer.actions & ~(Action.ADD_HEADERS | Action.CHANGE_HEADERS) == 0
        mta.send(Connect("localhost", Family.UNIX, 0, "/run/x.sock"))
        assert mta.replies(1) == [Continue()]
        mta.send(Quit())
        assert mta.until_closed() == []
    finally:
        mta.sock.close()
