"""A running daemon fed mutated MTA sessions (issue 13: keep it from coming back).

Every connection sends one whole session (negotiate .. end-of-message, QUIT) as
Postfix would, with one of its packets mutated (tests/support/fuzz.py), then
half-closes and reads until mmd closes. Seeded and bounded in count and time.
Afterwards: mmd still runs and serves a normal session, logged no traceback, logged
each protocol error our own decoder finds in the streams (the same words), and its
open files and resident memory are back to what they were before.
"""

from __future__ import annotations

import random
import socket
import time
from collections import Counter

from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, ProtocolError, encode
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, DEFAULT_MAX_PACKET_SIZE, Family
from tests.integration.conftest import MmdDaemonFactory, ScriptedMilterFactory
from tests.support.cli_runner import run_test_server
from tests.support.fuzz import mutated_stream
from tests.support.mmd_daemon import MmdDaemon
from tests.support.process_stats import open_files, rss_mb

CONNECTIONS = 3000
TIME_LIMIT = 60.0  # seconds for the whole run, whatever the machine's load
SESSION: list[m.CommandMessage] = [
    m.Negotiate(6, ALL_ACTIONS, ALL_STEPS),
    m.Macro(b"C", (("j", "mx.example.org"), ("{daemon_name}", "smtpd"))),
    m.Connect("client.example.net", Family.INET, 40000, "192.0.2.9"),
    m.Helo("client.example.net"),
    m.Mail(("<sender@example.net>",)),
    m.Rcpt(("<receiver@example.org>",)),
    m.Data(),
    m.Header("Subject", "fuzz"),
    m.EndOfHeaders(),
    m.Body(b"a body line\r\n" * 20),
    m.EndOfMessage(),
    m.Quit(),
]
PACKETS = [encode(command) for command in SESSION]
PREFIX = "protocol error from MTA: "


def mutated_session(rng: random.Random) -> bytes:
    at = rng.randrange(len(PACKETS))
    return b"".join([*PACKETS[:at], mutated_stream(rng, [PACKETS[at]], most=1), *PACKETS[at + 1:]])


def play(daemon: MmdDaemon, stream: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(daemon.socket_path))
        try:
            client.sendall(stream)
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass  # mmd closed first: a protocol error or QUIT


def violation(stream: bytes) -> str | None:
    """The protocol error mmd must log for ``stream``: the codec's words for a packet it
    cannot decode, or just the prefix for what the session engine refuses (a command
    before OPTNEG, a second OPTNEG, version 0 or 1); None if the stream breaks no rule
    before QUIT."""
    decoder = Decoder(Direction.COMMANDS, DEFAULT_MAX_PACKET_SIZE)
    decoder.receive_data(stream)
    negotiated = False
    while True:
        try:
            message = decoder.next_message()
        except ProtocolError as error:
            return f"{PREFIX}{error}"
        if message is None or isinstance(message, m.Quit):
            return None
        if isinstance(message, m.Negotiate):
            if negotiated or message.version < 2:
                return PREFIX
            negotiated = True
        elif not negotiated and not isinstance(message, m.Macro):
            return PREFIX


def settle(daemon: MmdDaemon, sessions: int) -> None:
    """Wait until ``sessions`` sessions ended and their sockets are gone."""
    daemon.wait_for_log("[session][end]", count=sessions, timeout=30)
    time.sleep(0.3)


def test_a_running_daemon_takes_mutated_sessions(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter(eom={"add_header": [["X-Fuzzed", "yes"]]})
    daemon = mmd_daemon(milters=[{"name": "child", "connection_spec": spec,
                                  "reading_timeout": 2, "end_of_message_timeout": 2}])
    for _ in range(20):  # warm-up: modules, caches and the allocator's arenas in place
        play(daemon, b"".join(PACKETS))
    settle(daemon, 20)
    files, memory = open_files(daemon.pid), rss_mb(daemon.pid)

    rng = random.Random("mmd-daemon-fuzz")
    expected: Counter[str] = Counter()
    played = 0
    deadline = time.monotonic() + TIME_LIMIT
    while played < CONNECTIONS and time.monotonic() < deadline:
        stream = mutated_session(rng)
        reason = violation(stream)
        if reason is not None:
            expected[reason] += 1
        play(daemon, stream)
        played += 1
    assert played >= 100, f"only {played} sessions in {TIME_LIMIT:g} s"
    settle(daemon, 20 + played)

    assert daemon.process.poll() is None, "mmd died"
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]
    logged = [line for line in log.splitlines() if PREFIX in line]
    # a line for every violating session, the codec's own words where it found the
    # error, and one line at most per connection (mmd closes it at the first violation;
    # bytes after a QUIT that waits for the children may still be read and refused)
    assert len(logged) >= sum(expected.values()), (len(logged), expected)
    sessions = [line.split("[session][error](", 1)[1].split(")", 1)[0] for line in logged]
    assert len(set(sessions)) == len(sessions), "more than one line for a session"
    for reason, count in expected.items():
        if reason != PREFIX:
            assert sum(reason in line for line in logged) >= count, (reason, count)
    assert sum(expected.values()) > played // 4, expected
    # nothing left behind: every socket closed, every spool file gone, memory back
    deadline = time.monotonic() + 10
    while open_files(daemon.pid) != files and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_files(daemon.pid) == files
    assert rss_mb(daemon.pid) - memory < 8, (memory, rss_mb(daemon.pid))
    run = run_test_server("-s", daemon.spec, "--output-message")
    assert run.status_line == "status: pass", run
    assert "+ X-Fuzzed: yes" in run.stdout.splitlines(), run
