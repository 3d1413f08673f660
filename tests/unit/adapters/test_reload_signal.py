"""SIGHUP with an answer: the client takes the daemon's answer, and only that."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from mmd.adapters import reload_signal
from mmd.adapters.reload_signal import AnswerListener, WaitFailed, decode, encode

# A stand-in daemon: answers each SIGHUP as mmd.daemon.service does, after ``delay`` seconds.
DAEMON = """
import signal, sys, time
from mmd.adapters.reload_signal import confirm
def on_hup(signum, frame):
    signalled = time.monotonic_ns()
    time.sleep(float(sys.argv[1]))
    confirm(sys.argv[2] == "ok", signalled, "reloaded: 1 milters: opendkim"
            if sys.argv[2] == "ok" else "reload refused: milter-manager.toml:3: bad")
signal.signal(signal.SIGHUP, on_hup)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def start_daemon(delay: float, outcome: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", DAEMON, str(delay), outcome],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


@pytest.fixture
def daemon() -> Iterator[subprocess.Popen[str]]:
    process = start_daemon(0.3, "ok")
    yield process
    process.kill()
    process.wait()


def test_the_answer_comes_after_the_reload(daemon: subprocess.Popen[str]) -> None:
    listener = AnswerListener(daemon.pid)
    try:
        started = time.monotonic()
        answer = listener.signal_and_wait(10)
    finally:
        listener.close()
    assert time.monotonic() - started >= 0.3  # waited for the reload, not for the signal
    assert answer.success and answer.message == "reloaded: 1 milters: opendkim"


def test_a_refusal_is_an_answer_too() -> None:
    process = start_daemon(0, "refused")
    try:
        listener = AnswerListener(process.pid)
        try:
            answer = listener.signal_and_wait(10)
        finally:
            listener.close()
    finally:
        process.kill()
        process.wait()
    assert not answer.success
    assert answer.message == "reload refused: milter-manager.toml:3: bad"


def test_answers_from_others_and_from_older_reloads_are_ignored(
    daemon: subprocess.Popen[str],
) -> None:
    listener = AnswerListener(daemon.pid)
    try:
        # another process (this one) claims success for the daemon: not its pid
        reload_signal.confirm(True, time.monotonic_ns() + 10**12, "forged", pid=daemon.pid)
        answer = listener.signal_and_wait(10)
        assert answer.message == "reloaded: 1 milters: opendkim"
        # an answer from a reload that began before this signal does not count
        os.kill(daemon.pid, 1)
        time.sleep(0.05)
        later = listener.signal_and_wait(10)
        assert later.success
    finally:
        listener.close()


def test_a_daemon_that_ends_gives_no_answer() -> None:
    # SIGHUP's default action ends a process that set no handler
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    time.sleep(0.2)
    reaper = threading.Timer(0.3, process.wait)  # a zombie still has its pid: reap it
    listener = AnswerListener(process.pid)
    try:
        reaper.start()
        with pytest.raises(WaitFailed, match="ended before it answered"):
            listener.signal_and_wait(10)
    finally:
        listener.close()
        reaper.join()
        process.kill()
        process.wait()


def test_no_answer_in_time() -> None:
    process = start_daemon(5, "ok")
    try:
        listener = AnswerListener(process.pid)
        try:
            with pytest.raises(WaitFailed, match=r"within 0\.5 s"):
                listener.signal_and_wait(0.5)
        finally:
            listener.close()
    finally:
        process.kill()
        process.wait()


def test_the_datagram_format() -> None:
    data = encode(False, 1234, "reload refused: x")
    assert data == b"refused 1234\nreload refused: x"
    answer = decode(data)
    assert answer is not None and (answer.success, answer.signalled_ns) == (False, 1234)
    assert decode(b"hello") is None
    assert decode(b"reloaded abc\nx") is None
