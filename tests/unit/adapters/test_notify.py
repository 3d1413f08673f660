"""sd_notify messages, received on a real unix datagram socket standing in for systemd's."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmd.adapters import notify
from mmd.adapters.notify import Notifier, parse_notify_environment


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(5)
    yield path, receiver
    receiver.close()


def received(receiver: socket.socket) -> bytes:
    return receiver.recv(4096)


def nothing_waiting(receiver: socket.socket) -> bool:
    receiver.setblocking(False)
    try:
        receiver.recv(4096)
    except BlockingIOError:
        return True
    finally:
        receiver.settimeout(5)
    return False


def test_messages_are_exact_datagrams(systemd_socket: tuple[str, socket.socket]) -> None:
    path, receiver = systemd_socket
    env = {"NOTIFY_SOCKET": path, "HOME": "/"}
    notifier = Notifier.from_environment(env, pid=os.getpid())
    assert env == {"HOME": "/"}
    assert notifier.enabled

    notifier.ready("serving unix:/run/milter-manager/milter-manager.sock, 3 children")
    assert received(receiver) == (
        b"READY=1\nSTATUS=serving unix:/run/milter-manager/milter-manager.sock, 3 children"
    )
    notifier.ready()
    assert received(receiver) == b"READY=1"
    notifier.status("2 sessions\nin flight")
    assert received(receiver) == b"STATUS=2 sessions in flight"
    notifier.stopping()
    assert received(receiver) == b"STOPPING=1"
    notifier.watchdog()
    assert received(receiver) == b"WATCHDOG=1"
    assert nothing_waiting(receiver)


def test_reloading_carries_monotonic_time_in_the_same_datagram(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, receiver = systemd_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(receiver).decode().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert nothing_waiting(receiver)


def test_abstract_socket_address() -> None:
    name = f"mmd-test-notify-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    try:
        Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(receiver) == b"READY=1"
    finally:
        receiver.close()


def test_watchdog_interval_is_half_the_timeout(systemd_socket: tuple[str, socket.socket]) -> None:
    path, _ = systemd_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}
    assert Notifier.from_environment(env, pid=4242).watchdog_interval() == 15.0
    assert env == {}
    other = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environment(other, pid=4242).watchdog_interval() is None
    no_pid = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    assert Notifier.from_environment(no_pid, pid=4242).watchdog_interval() == 1.0


@pytest.mark.parametrize("usec", ["0", "-5", "soon", ""])
def test_bad_watchdog_values_mean_no_watchdog(usec: str) -> None:
    settings = parse_notify_environment({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": usec}, pid=1)
    assert settings.watchdog_usec is None


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    notifier.ready("x")
    notifier.reloading()


def test_send_errors_are_logged_at_debug(
    systemd_socket: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    path, receiver = systemd_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    receiver.close()
    os.unlink(path)
    with caplog.at_level(logging.DEBUG, logger="mmd.adapters.notify"):
        notifier.stopping()
    assert any(
        "STOPPING=1" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records
    )


def test_unreachable_socket_is_logged_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="mmd.adapters.notify"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "absent")})
    assert not notifier.enabled
    assert any("absent" in r.getMessage() for r in caplog.records)


def test_module_functions_clear_the_process_environment(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, receiver = systemd_socket
    monkeypatch.setattr(notify, "_default", None)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "8000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notify.ready("up")
    assert received(receiver) == b"READY=1\nSTATUS=up"
    assert notify.watchdog_interval() == 4.0
    for variable in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert variable not in os.environ
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET'))"],
        capture_output=True, text=True, check=True,
    )
    assert child.stdout.strip() == "None"
    notify.status("still up")
    assert received(receiver) == b"STATUS=still up"
