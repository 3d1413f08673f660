"""The MTA side under limits: max_connections makes extra connections wait, not fail;
an MTA that breaks the protocol, never reads, never stops or goes silent is bounded
(issue 13); the body's temporary file is released and a full temporary disk answered."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, encode
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Family, Step
from tests.integration.conftest import MmdDaemonFactory, ScriptedMilterFactory
from tests.support.mmd_daemon import MmdDaemon
from tests.support.process_stats import rss_mb

OFFER = encode(m.Negotiate(6, ALL_ACTIONS, ALL_STEPS))


@pytest.fixture
def limited_daemon() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mmd-limit-", dir="/var/tmp"))
    sock = folder / "mmd.sock"
    (folder / "milter-manager.toml").write_text(
        f'[manager]\nconnection_spec = "unix:{sock}"\nmax_connections = 1\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mmd.cli.manager", "-c", str(folder), "--no-detection", "--no-dbus"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "daemon did not create its socket"
            time.sleep(0.05)
        yield sock
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
        for path in folder.iterdir():
            path.unlink()
        os.rmdir(folder)


def negotiated(client: socket.socket, timeout: float) -> bool:
    client.settimeout(timeout)
    decoder = Decoder(Direction.REPLIES)
    try:
        while (reply := decoder.next_message()) is None:
            data = client.recv(4096)
            if not data:
                return False
            decoder.receive_data(data)
    except TimeoutError:
        return False
    return isinstance(reply, m.Negotiate)


def test_connection_over_the_limit_waits_for_a_free_slot(limited_daemon: Path) -> None:
    first = socket.socket(socket.AF_UNIX)
    first.connect(str(limited_daemon))
    first.sendall(OFFER)
    assert negotiated(first, 5)
    second = socket.socket(socket.AF_UNIX)
    second.connect(str(limited_daemon))
    second.sendall(OFFER)
    assert not negotiated(second, 0.5), "the second session was served over the limit"
    first.close()
    assert negotiated(second, 5), "the waiting session was not served after a slot freed"
    second.close()


# ---------------------------------------------------------------- issue 13: the MTA side


def mta(daemon: MmdDaemon) -> socket.socket:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(str(daemon.socket_path))
    return client


def closed_by_mmd(client: socket.socket, within: float) -> bool:
    """True if mmd closes the connection within ``within`` seconds (replies are read)."""
    client.settimeout(within)
    try:
        while client.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def send_for(client: socket.socket, packet: bytes, total: int, seconds: float) -> int:
    """Send ``packet`` again and again (up to ``total`` bytes, ``seconds``); bytes sent."""
    client.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + seconds
    data = packet * max(1, 65536 // len(packet))
    while sent < total and time.monotonic() < deadline:
        try:
            sent += client.send(data)
        except TimeoutError:
            continue  # mmd does not read: its buffers and ours are full
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def test_a_second_option_negotiation_is_refused_at_once(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter()
    daemon = mmd_daemon(milters=[{"name": "child", "connection_spec": spec}])
    with mta(daemon) as client:
        client.sendall(OFFER)
        assert negotiated(client, 5)
        client.sendall(OFFER)
        assert closed_by_mmd(client, 2), "a second OPTNEG was not refused"
    daemon.wait_for_log("protocol error from MTA: a second option negotiation (OPTNEG)")
    assert "[milter][error]" not in daemon.log()


@pytest.mark.parametrize("version", [0, 1])
def test_an_offer_of_protocol_version_0_or_1_is_refused(
    version: int, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, recorder = scripted_milter()
    daemon = mmd_daemon(milters=[{"name": "child", "connection_spec": spec}])
    with mta(daemon) as client:
        client.sendall(encode(m.Negotiate(version, ALL_ACTIONS, ALL_STEPS)))
        assert closed_by_mmd(client, 2), f"a version {version} offer was served"
    daemon.wait_for_log(f"option negotiation offers protocol version {version}")
    assert "negotiate" not in recorder.names()


def test_input_after_quit_is_neither_read_nor_kept(mmd_daemon: MmdDaemonFactory) -> None:
    daemon = mmd_daemon()
    with mta(daemon) as client:
        client.sendall(OFFER)
        assert negotiated(client, 5)
        before = rss_mb(daemon.pid)
        client.sendall(encode(m.Quit()))
        sent = send_for(client, encode(m.Body(b"x" * 65000)), 96 * 1024 * 1024, 5)
        assert closed_by_mmd(client, 2), "the connection stayed open after QUIT"
    daemon.wait_for_log("[session][end]")
    growth = rss_mb(daemon.pid) - before
    assert growth < 16, f"{sent / 2**20:.0f} MB after QUIT grew mmd by {growth:.0f} MB"


def test_an_mta_pipelining_while_a_child_works_is_read_no_further(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter(helo={"sleep": 4})
    daemon = mmd_daemon(milters=[{"name": "slow", "connection_spec": spec,
                                  "reading_timeout": 20}])
    with mta(daemon) as client:
        client.sendall(OFFER)
        assert negotiated(client, 5)
        client.sendall(encode(m.Connect("mx.example.net", Family.INET, 25, "192.0.2.7")))
        before = rss_mb(daemon.pid)
        # the first HELO keeps the child busy; the rest pile up behind it
        sent = send_for(client, encode(m.Helo("h" * 4000)), 96 * 1024 * 1024, 3)
        growth = rss_mb(daemon.pid) - before
    assert sent < 32 * 1024 * 1024, f"mmd read {sent / 2**20:.0f} MB of pipelined commands"
    assert growth < 16, f"pipelined commands grew mmd by {growth:.0f} MB"


def test_a_silent_mta_connection_is_closed_after_mta_idle_timeout(
    mmd_daemon: MmdDaemonFactory,
) -> None:
    daemon = mmd_daemon(manager={"mta_idle_timeout": 1})
    with mta(daemon) as client:
        client.sendall(OFFER)
        assert negotiated(client, 5)
        started = time.monotonic()
        assert closed_by_mmd(client, 8), "an idle MTA connection was kept"
        assert time.monotonic() - started >= 0.9
    log = daemon.wait_for_log("[session][end]")
    assert "the MTA sent nothing for 1 s (mta_idle_timeout)" in log


# an envelope and headers, each with the step flag that says the MTA waits for no reply
MESSAGE_START: list[tuple[m.CommandMessage, Step]] = [
    (m.Connect("mx.example.net", Family.INET, 25, "192.0.2.7"), Step.NO_REPLY_CONNECT),
    (m.Helo("mx.example.net"), Step.NO_REPLY_HELO),
    (m.Mail(("<sender@example.com>",)), Step.NO_REPLY_MAIL),
    (m.Rcpt(("<receiver@example.org>",)), Step.NO_REPLY_RCPT),
    (m.Data(), Step.NO_REPLY_DATA),
    (m.Header("Subject", "big"), Step.NO_REPLY_HEADER),
    (m.EndOfHeaders(), Step.NO_REPLY_END_OF_HEADERS),
]


def start_message(client: socket.socket, body: bytes) -> Decoder:
    """negotiate .. body, reading the replies mmd said it sends; returns the decoder."""
    client.sendall(OFFER)
    decoder = Decoder(Direction.REPLIES)
    answer = read_reply(client, decoder)
    assert isinstance(answer, m.Negotiate), answer
    for command, no_reply in MESSAGE_START:
        client.sendall(encode(command))
        if not answer.steps & no_reply:
            read_reply(client, decoder)
    for start in range(0, len(body), 65535):
        client.sendall(encode(m.Body(body[start:start + 65535])))
    return decoder


def read_reply(client: socket.socket, decoder: Decoder) -> m.Message:
    while (reply := decoder.next_message()) is None:
        data = client.recv(65536)
        assert data, "mmd closed the connection"
        decoder.receive_data(data)
    return reply


def spool_files(pid: int) -> list[str]:
    """Temporary files mmd holds open (a spooled body is created and unlinked at once)."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.endswith("(deleted)"):
                targets.append(target)
    return targets


def test_the_spool_file_is_released_when_the_mta_leaves_mid_message(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter()
    daemon = mmd_daemon(milters=[{"name": "child", "connection_spec": spec}],
                        manager={"body_memory_limit": 1000})
    with mta(daemon) as client:
        start_message(client, b"x" * 300_000)
        deadline = time.monotonic() + 5
        while not spool_files(daemon.pid):
            assert time.monotonic() < deadline, "the body was never spooled"
            time.sleep(0.02)
    daemon.wait_for_log("[session][end]")
    assert spool_files(daemon.pid) == []


@pytest.fixture
def full_tmpdir(integration_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 64 KiB tmpfs as the daemon's TMPDIR: a full temporary disk, for real."""
    folder = Path(tempfile.mkdtemp(prefix="full-tmp-", dir=integration_dir))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=1777", "mmd-full-tmp",
                    str(folder)], check=True)
    monkeypatch.setenv("TMPDIR", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
        folder.rmdir()


def test_a_full_temporary_disk_is_logged_and_answered_with_tempfail(
    full_tmpdir: Path, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter()
    daemon = mmd_daemon(milters=[{"name": "child", "connection_spec": spec}],
                        manager={"body_memory_limit": 1000})
    with mta(daemon) as client:
        decoder = start_message(client, b"x" * 300_000)
        client.sendall(encode(m.EndOfMessage()))
        assert read_reply(client, decoder) == m.Tempfail()
        client.sendall(encode(m.Quit()))
        assert closed_by_mmd(client, 5)
    log = daemon.wait_for_log("[session][end]")
    assert "cannot keep the message body: [Errno 28] No space left on device" in log
    assert "[session][disconnected]" not in log
    ends = [line for line in log.splitlines() if "[session][end]" in line]
    assert "[temporary-failure]" in ends[0], ends
    assert daemon.process.poll() is None
