"""Issue 2 acceptance, faults: a child that cannot be reached, dies, hangs or talks
nonsense, and an MTA that goes away mid-message.

Each fault must give the failing child's ``fallback_status`` (accept, reject and
temporary-failure are all tried) while the healthy child goes on, log
``[milter][error]`` with the reason, and leave the daemon serving: every test
runs a second session after the fault and expects the same outcome.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mmd.protocol import messages as m
from mmd.protocol.codec import encode
from tests.integration.conftest import MmdDaemonFactory, ScriptedMilterFactory
from tests.integration.test_server_limits import (
    OFFER,
    mta,
    negotiated,
    read_reply,
    start_message,
)
from tests.support.cli_runner import run_test_server
from tests.support.mmd_daemon import MmdDaemon
from tests.support.process_stats import rss_mb

FALLBACKS = {
    # fallback_status -> milter-test-server's status line (the healthy child adds a header)
    "accept": "status: pass",
    "reject": "status: reject",
    "temporary-failure": "status: temporary-failure",
}


Answer = Callable[[bytes], "bytes | list[bytes | float] | None"]


class FakeChild:
    """A raw socket peer that answers every command with ``answer(packet_code)`` bytes.

    Only for faults a real milter library cannot be made to commit (garbage,
    oversize packets); it serves every connection until closed.
    """

    def __init__(self, path: Path, answer: Answer) -> None:
        self.path = path
        self.answer = answer
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        path.chmod(0o666)
        self._server.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def spec(self) -> str:
        return f"unix:{self.path}"

    def _serve(self) -> None:
        while True:
            try:
                peer, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(peer,), daemon=True).start()

    def _talk(self, peer: socket.socket) -> None:
        with peer:
            try:
                while True:
                    head = _read_exact(peer, 5)
                    if head is None:
                        return
                    size, code = struct.unpack(">Ic", head)
                    if _read_exact(peer, size - 1) is None:
                        return
                    reply = self.answer(code)
                    if isinstance(reply, bytes):
                        peer.sendall(reply)
                    elif reply is not None:  # a script: bytes to send, seconds to wait
                        for step in reply:
                            if isinstance(step, bytes):
                                peer.sendall(step)
                            else:
                                time.sleep(step)
            except OSError:
                return

    def close(self) -> None:
        self._server.close()


def _read_exact(peer: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def packet(code: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + code + data


# a plain OPTNEG answer: version 6, no actions, no steps
NEGOTIATE_REPLY = packet(b"O", struct.pack(">III", 6, 0, 0))
CONTINUE_REPLY = packet(b"c")
# the same, allowed to add headers (SMFIF_ADDHDRS)
NEGOTIATE_ADD_HEADERS = packet(b"O", struct.pack(">III", 6, 1, 0))


@pytest.fixture
def fake_children(integration_dir: Path) -> Iterator[Callable[..., FakeChild]]:
    made: list[FakeChild] = []
    folder = integration_dir / "fake"
    folder.mkdir(exist_ok=True)

    def make(name: str, answer: Answer) -> FakeChild:
        path = folder / f"{name}-{len(made)}.sock"
        path.unlink(missing_ok=True)
        child = FakeChild(path, answer)
        made.append(child)
        return child

    yield make
    for child in made:
        child.close()


def healthy(scripted_milter: ScriptedMilterFactory) -> dict[str, Any]:
    spec, _ = scripted_milter(eom={"add_header": [["X-Healthy", "yes"]]})
    return {"name": "healthy", "connection_spec": spec}


def two_sessions_give(daemon: MmdDaemon, status_line: str, reason: str,
                      fallback: str, second_reason: str | None = None) -> None:
    """The fault's verdict, twice (the daemon serves on), and its reason in the log."""
    for session in (1, 2):
        if session == 2 and second_reason is not None:
            reason = second_reason
        run = run_test_server("-s", daemon.spec, "--output-message")
        assert run.exit_code == 0, run
        assert run.status_line == status_line, (session, run, daemon.log())
        if status_line == "status: pass":
            assert "+ X-Healthy: yes" in run.stdout.splitlines(), run
        log = daemon.wait_for_log("[session][end]", count=session)
        errors = [line for line in log.splitlines()
                  if f"[milter][error]({session}): faulty: " in line]
        assert errors, log
        assert reason in errors[0], errors[0]
        # the failing child's statistics line carries its fallback and the reason
        verdicts = [line for line in log.splitlines()
                    if f"]({session}): faulty (" in line and "MMD_EVENT=milter-verdict" in line]
        assert len(verdicts) == 1, log
        assert f"][{fallback}][" in verdicts[0], verdicts[0]
        assert reason in verdicts[0], verdicts[0]


# ------------------------------------------------------------ cannot connect


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_refusing_connections(
    fallback: str, integration_dir: Path, scripted_milter: ScriptedMilterFactory,
    mmd_daemon: MmdDaemonFactory,
) -> None:
    # a socket file nobody listens on: connect() is refused
    dead = integration_dir / f"dead-{fallback}.sock"
    dead.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as leftover:
        leftover.bind(str(dead))
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": f"unix:{dead}", "fallback_status": fallback},
    ])

    two_sessions_give(daemon, FALLBACKS[fallback],
                      f"cannot connect to unix:{dead}: Connection refused", fallback)


def test_every_child_unreachable_gives_the_managers_fallback(
    integration_dir: Path, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon = mmd_daemon(
        milters=[{"name": "faulty", "connection_spec": f"unix:{integration_dir}/nobody.sock"}],
        manager={"fallback_status": "reject"},
    )

    two_sessions_give(daemon, "status: reject", "No such file or directory", "accept")


# ------------------------------------------------------------ the child dies


@pytest.mark.parametrize("stage", ["envfrom", "eom"])
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_closing_mid_session(
    fallback: str, stage: str, scripted_milter: ScriptedMilterFactory,
    mmd_daemon: MmdDaemonFactory,
) -> None:
    spec, recorder = scripted_milter(**{stage: {"crash": True}})
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": spec, "fallback_status": fallback},
    ])

    # the crash takes the whole child process down: the next session finds no listener
    two_sessions_give(daemon, FALLBACKS[fallback], "connection closed by the child",
                      fallback, second_reason=f"cannot connect to {spec}: Connection refused")
    assert recorder.names().count(stage) == 1


# ------------------------------------------------------------ the child hangs


@pytest.mark.parametrize(("stage", "logged"), [("envfrom", "envelope-from"),
                                               ("eom", "end-of-message")])
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_hanging_past_its_timeout(
    fallback: str, stage: str, logged: str, scripted_milter: ScriptedMilterFactory,
    mmd_daemon: MmdDaemonFactory,
) -> None:
    spec, _ = scripted_milter(**{stage: {"sleep": 4}})
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": spec, "fallback_status": fallback,
         "reading_timeout": 1, "end_of_message_timeout": 1},
    ])

    two_sessions_give(daemon, FALLBACKS[fallback], f"timeout: no reply at {logged} within 1 s",
                      fallback)


# ------------------------------------------------------------ the child talks nonsense


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_sending_garbage(
    fallback: str, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
    fake_children: Callable[..., FakeChild],
) -> None:
    # answers OPTNEG with a packet whose code is no milter reply
    fake = fake_children("garbage", lambda code: packet(b"Z", b"nonsense"))
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": fake.spec, "fallback_status": fallback},
    ])

    two_sessions_give(daemon, FALLBACKS[fallback], "protocol error: ", fallback)
    assert fake.connections == 2


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_sending_an_oversize_packet(
    fallback: str, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
    fake_children: Callable[..., FakeChild],
) -> None:
    # a well-behaved negotiation, then a length prefix of 2 GiB at connect
    def answer(code: bytes) -> bytes | None:
        if code == b"O":
            return NEGOTIATE_REPLY
        if code == b"C":
            return struct.pack(">I", 0x7FFFFFFF) + b"c" + b"x" * 64
        return None if code in (b"D", b"A", b"Q") else CONTINUE_REPLY

    fake = fake_children("oversize", answer)
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": fake.spec, "fallback_status": fallback},
    ])

    two_sessions_give(daemon, FALLBACKS[fallback],
                      "protocol error: milter packet of 2147483647 bytes exceeds the limit",
                      fallback)


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_changing_the_message_outside_end_of_message(
    fallback: str, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
    fake_children: Callable[..., FakeChild],
) -> None:
    # an add-header at envelope-from is a protocol error by that child
    def answer(code: bytes) -> bytes | None:
        if code == b"O":
            return NEGOTIATE_ADD_HEADERS
        if code == b"M":
            return packet(b"h", b"X-Early\0too early\0") + CONTINUE_REPLY
        return None if code in (b"D", b"A", b"Q") else CONTINUE_REPLY

    fake = fake_children("early", answer)
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": fake.spec, "fallback_status": fallback},
    ])

    two_sessions_give(daemon, FALLBACKS[fallback], "sent AddHeader at envelope-from", fallback)


def progress_then_accept(seconds: float) -> Answer:
    """A child that works ``seconds`` at end-of-message, saying so every 0.4 s."""
    def answer(code: bytes) -> bytes | list[bytes | float] | None:
        if code == b"O":
            return NEGOTIATE_ADD_HEADERS
        if code == b"E":
            script: list[bytes | float] = []
            for _ in range(int(seconds / 0.4)):
                script += [0.4, packet(b"p")]
            return [*script, packet(b"h", b"X-Slow\0done\0"), CONTINUE_REPLY]
        return None if code in (b"D", b"A", b"Q") else CONTINUE_REPLY
    return answer


def test_progress_keeps_a_slow_child_past_its_end_of_message_timeout(
    mmd_daemon: MmdDaemonFactory, fake_children: Callable[..., FakeChild],
) -> None:
    fake = fake_children("progress", progress_then_accept(2.0))
    daemon = mmd_daemon(milters=[
        {"name": "slow", "connection_spec": fake.spec, "fallback_status": "reject",
         "end_of_message_timeout": 1},
    ])

    run = run_test_server("-s", daemon.spec, "--output-message")

    assert run.status_line == "status: pass", (run, daemon.log())
    assert "+ X-Slow: done" in run.stdout.splitlines()
    assert not daemon.log_lines("[milter][error]"), daemon.log()


# a child that asks for no reply at any stage but end-of-message (SMFIP_NR_*) and
# answers only there: mmd must not wait for replies it said it would not get
NO_REPLY_STEPS = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000 | 0x80


def silent_until_end_of_message(code: bytes) -> bytes | None:
    if code == b"O":
        return packet(b"O", struct.pack(">III", 6, 1, NO_REPLY_STEPS))
    if code == b"E":
        return packet(b"h", b"X-Silent\0was here\0") + CONTINUE_REPLY
    return None


@pytest.mark.parametrize("with_talker", [False, True])
def test_child_asking_for_no_replies(
    with_talker: bool, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
    fake_children: Callable[..., FakeChild],
) -> None:
    fake = fake_children("silent", silent_until_end_of_message)
    milters = [{"name": "silent", "connection_spec": fake.spec, "reading_timeout": 1}]
    if with_talker:
        milters.append(healthy(scripted_milter))
    daemon = mmd_daemon(milters=milters)

    run = run_test_server("-s", daemon.spec, "--output-message", "-h", "Subject: hush")

    assert run.exit_code == 0, run
    assert run.status_line == "status: pass", run
    lines = run.stdout.splitlines()
    assert "+ X-Silent: was here" in lines, (run, daemon.log())
    assert ("+ X-Healthy: yes" in lines) == with_talker
    assert not daemon.log_lines("[milter][error]"), daemon.log()


# ------------------------------------------------------------ the MTA goes away


def mta_packets() -> bytes:
    """negotiate .. body, as Postfix would send them, without end-of-message."""
    from mmd.protocol import messages as m
    from mmd.protocol.codec import encode
    from mmd.protocol.constants import Action, Family, Step

    commands: list[Any] = [
        m.Negotiate(6, Action(0x1FF), Step(0x1FFFFF)),
        m.Connect("mx.example.net", Family.INET, 25, "192.0.2.7"),
        m.Helo("mx.example.net"),
        m.Mail(("<sender@example.com>",)),
        m.Rcpt(("<receiver@example.org>",)),
        m.Data(),
        m.Header("Subject", "cut short"),
        m.EndOfHeaders(),
        m.Body(b"half a message\r\n"),
    ]
    return b"".join(encode(command) for command in commands)


def disconnect_mid_message(daemon: MmdDaemon) -> None:
    """Send negotiate..body, read the replies up to the body's, then close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mta:
        mta.settimeout(10)
        mta.connect(str(daemon.socket_path))
        mta.sendall(mta_packets())
        # negotiate, then connect, helo, mail, rcpt, data; header, end-of-header and body
        # are not answered: mmd asks an MTA that offers every step not to wait for them
        for _ in range(6):
            head = _read_exact(mta, 4)
            assert head is not None, "mmd closed the MTA connection"
            assert _read_exact(mta, struct.unpack(">I", head)[0]) is not None


def test_mta_disconnecting_mid_message(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, recorder = scripted_milter(eom={"add_header": [["X-Healthy", "yes"]]})
    daemon = mmd_daemon(milters=[{"name": "healthy", "connection_spec": spec}])

    disconnect_mid_message(daemon)
    log = daemon.wait_for_log("[session][end]")

    assert "[session][disconnected]" in log
    ends = [line for line in log.splitlines() if "[session][end]" in line]
    assert "[session][end][body][temporary-failure]" in ends[0], ends
    recorder.wait_for("close")
    names = recorder.names()
    # message stages are replayed only at end-of-message, which never came
    assert names[-2:] == ["abort", "close"], names
    assert "header" not in names and "eom" not in names
    # the daemon serves the next MTA connection
    run = run_test_server("-s", daemon.spec, "--output-message")
    assert run.status_line == "status: pass", run
    assert "+ X-Healthy: yes" in run.stdout.splitlines()


def test_mta_disconnect_fallback_is_configurable(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter()
    daemon = mmd_daemon(milters=[{"name": "healthy", "connection_spec": spec}],
                        manager={"fallback_status_at_disconnect": "discard"})

    disconnect_mid_message(daemon)
    log = daemon.wait_for_log("[session][end]")

    ends = [line for line in log.splitlines() if "[session][end]" in line]
    assert "[session][end][body][discard]" in ends[0], ends


# ------------------------------------------------------------ issue 13: changes never declared

# what a child that negotiated no actions at all sends at end-of-message
UNDECLARED_CHANGES = (
    packet(b"h", b"X-Sneaky\0added\0")
    + packet(b"e", b"<thief@example.net>\0")
    + packet(b"+", b"<thief@example.net>\0")
    + packet(b"-", b"<receiver@example.org>\0")
    + packet(b"b", b"another body\r\n")
    + packet(b"q", b"held by the sneaky child\0")
)


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_child_making_changes_it_never_declared(
    fallback: str, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
    fake_children: Callable[..., FakeChild],
) -> None:
    def answer(code: bytes) -> bytes | None:
        if code == b"O":
            return NEGOTIATE_REPLY  # no actions
        if code == b"E":
            return UNDECLARED_CHANGES + CONTINUE_REPLY
        return None if code in (b"D", b"A", b"Q") else CONTINUE_REPLY

    fake = fake_children("sneaky", answer)
    daemon = mmd_daemon(milters=[
        healthy(scripted_milter),
        {"name": "faulty", "connection_spec": fake.spec, "fallback_status": fallback},
    ])

    two_sessions_give(daemon, FALLBACKS[fallback],
                      "protocol violation: sent AddHeader without the add-header action "
                      "negotiated", fallback)
    run = run_test_server("-s", daemon.spec, "--output-message")
    for trace in ("X-Sneaky", "thief", "another body", "quarantine", "held by"):
        assert trace not in run.stdout, run.stdout
    assert "- RCPT TO" not in run.stdout, run.stdout


# ------------------------------------------------------------ issue 13: cut off mid-message


def test_child_cut_off_at_end_of_message_is_recorded_as_failed(
    mmd_daemon: MmdDaemonFactory, fake_children: Callable[..., FakeChild],
) -> None:
    def answer(code: bytes) -> bytes | list[bytes | float] | None:
        if code == b"O":
            return NEGOTIATE_ADD_HEADERS
        if code == b"E":
            return [packet(b"h", b"X-Half\0done\0"), 3.0, CONTINUE_REPLY]
        return None if code in (b"D", b"A", b"Q") else CONTINUE_REPLY

    fake = fake_children("slow", answer)
    daemon = mmd_daemon(milters=[{"name": "slow", "connection_spec": fake.spec}])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mta:
        mta.settimeout(10)
        mta.connect(str(daemon.socket_path))
        mta.sendall(mta_packets() + encode(m.EndOfMessage()))
        for _ in range(6):  # negotiate .. data
            head = _read_exact(mta, 4)
            assert head is not None
            assert _read_exact(mta, struct.unpack(">I", head)[0]) is not None
        time.sleep(0.5)  # the child got end-of-message and works on it
    log = daemon.wait_for_log("[session][end]")

    verdicts = [line for line in log.splitlines() if "MMD_EVENT=milter-verdict" in line]
    assert len(verdicts) == 1, log
    assert "[end-of-message][accept]" in verdicts[0], verdicts[0]
    assert "cut off at end-of-message: the MTA left" in verdicts[0]
    assert daemon.log_lines("[milter][error]"), log


# ------------------------------------------------------------ issue 13: a big body, a slow child


def test_a_big_body_for_a_child_that_reads_slowly_is_not_held_in_memory(
    mmd_daemon: MmdDaemonFactory, fake_children: Callable[..., FakeChild]
) -> None:
    stalled = threading.Event()

    def answer(code: bytes) -> bytes | list[bytes | float] | None:
        if code == b"O":  # no reply wanted before end-of-message (libmilter's SMFIP_NR_*)
            return packet(b"O", struct.pack(">III", 6, 0, NO_REPLY_STEPS))
        if code == b"B" and not stalled.is_set():
            stalled.set()
            return [4.0]  # busy with the first chunk: reads nothing for 4 s
        return CONTINUE_REPLY if code == b"E" else None

    fake = fake_children("slow-reader", answer)
    daemon = mmd_daemon(milters=[{"name": "slow", "connection_spec": fake.spec,
                                  "writing_timeout": 30}])
    with mta(daemon) as client:
        decoder = start_message(client, b"")
        before = rss_mb(daemon.pid)
        body = encode(m.Body(b"x" * 65535))
        for _ in range(40 * 1024 * 1024 // 65535):  # 40 MB, spooled to disk by mmd
            client.sendall(body)
        client.sendall(encode(m.EndOfMessage()))
        assert stalled.wait(10)
        time.sleep(1.5)  # mmd would now hold whatever the child does not take
        growth = rss_mb(daemon.pid) - before
        # other sessions are served meanwhile
        with mta(daemon) as other:
            other.sendall(OFFER)
            assert negotiated(other, 5)
        assert read_reply(client, decoder) == m.Continue()
    assert growth < 16, f"a 40 MB body for a slow child grew mmd by {growth:.0f} MB"
