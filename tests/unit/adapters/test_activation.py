"""Socket activation: the variable parsing, and a real hand-over by systemd-socket-activate."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmd.adapters.activation import (
    ActivatedSocket,
    ActivationError,
    PassedFd,
    parse_listen_environment,
    pick_socket,
    take_activated_sockets,
)

ROOT = Path(__file__).resolve().parents[3]


def test_no_variables_means_not_activated() -> None:
    assert parse_listen_environment({}, pid=100) == []


def test_variables_for_another_process_are_ignored() -> None:
    env = {"LISTEN_PID": "99", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "milter"}
    assert parse_listen_environment(env, pid=100) == []


def test_several_named_fds() -> None:
    env = {"LISTEN_PID": "100", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "milter:control:"}
    assert parse_listen_environment(env, pid=100) == [
        PassedFd(3, "milter"),
        PassedFd(4, "control"),
        PassedFd(5, "unknown"),
    ]


def test_missing_names_default_to_unknown() -> None:
    env = {"LISTEN_PID": "7", "LISTEN_FDS": "2"}
    assert parse_listen_environment(env, pid=7) == [PassedFd(3, "unknown"), PassedFd(4, "unknown")]


def test_zero_fds() -> None:
    env = {"LISTEN_PID": "7", "LISTEN_FDS": "0", "LISTEN_FDNAMES": ""}
    assert parse_listen_environment(env, pid=7) == []


@pytest.mark.parametrize(
    "env",
    [
        {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "7", "LISTEN_FDS": "one"},
        {"LISTEN_PID": "7", "LISTEN_FDS": "-1"},
        {"LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "milter"},
    ],
)
def test_inconsistent_variables_are_errors(env: dict[str, str]) -> None:
    with pytest.raises(ActivationError):
        parse_listen_environment(env, pid=7)


def test_variables_are_removed_even_when_not_for_us() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "milter", "PATH": "/bin"}
    assert take_activated_sockets(env, pid=2) == []
    assert env == {"PATH": "/bin"}


def test_variables_are_removed_when_inconsistent() -> None:
    env = {"LISTEN_PID": "2", "LISTEN_FDS": "nope"}
    with pytest.raises(ActivationError):
        take_activated_sockets(env, pid=2)
    assert env == {}


def test_pick_socket_by_name_or_the_only_one() -> None:
    a, b = socket.socketpair()
    try:
        first = ActivatedSocket("control", a)
        second = ActivatedSocket("milter", b)
        assert pick_socket([first, second], "milter") is second
        assert pick_socket([first], "milter") is first
        assert pick_socket([first, second], "other") is None
        assert pick_socket([], "milter") is None
    finally:
        a.close()
        b.close()


PROBE = r"""
import os, socket, subprocess, sys
from mmd.adapters.activation import take_activated_sockets
activated = take_activated_sockets()
leaked = sorted(k for k in os.environ if k.startswith("LISTEN_"))
child = subprocess.run(
    [sys.executable, "-c",
     "import os; print(sorted(k for k in os.environ if k.startswith('LISTEN_')), end=' ');"
     "fd = '/proc/self/fd/3'; print(os.readlink(fd) if os.path.exists(fd) else 'closed')"],
    capture_output=True, text=True, check=True, close_fds=False,
).stdout.strip()
(item,) = activated
conn, _ = item.sock.accept()
conn.sendall(f"{item.name}|{item.sock.family.name}|{item.sock.type.name}|{leaked}|{child}".encode())
conn.close()
"""


def test_real_socket_activation(tmp_path: Path) -> None:
    tool = shutil.which("systemd-socket-activate")
    assert tool is not None, "systemd-socket-activate (package systemd) is required"
    path = tmp_path / "milter.sock"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [tool, "-l", str(path), "--fdname=milter", "-E", "PYTHONPATH",
         sys.executable, "-c", PROBE],
        env=env, stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            if path.exists():
                break
            process.poll()
            assert process.returncode is None, process.stderr.read() if process.stderr else ""
            subprocess.run(["sleep", "0.02"], check=True)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(20)
        client.connect(str(path))
        reply = b""
        while chunk := client.recv(4096):
            reply += chunk
        client.close()
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # name from --fdname, a unix stream socket, nothing left in our environment, and a child
    # neither sees the variables nor inherits the listening fd 3.
    name, family, kind, leaked, child = reply.decode().split("|")
    assert (name, family, kind, leaked) == ("milter", "AF_UNIX", "SOCK_STREAM", "[]")
    child_variables, _, child_fd3 = child.partition(" ")
    assert child_variables == "[]"
    assert not child_fd3.startswith("socket:"), child_fd3


def test_a_passed_fd_that_is_no_socket_is_an_error() -> None:
    """fd 3 is /dev/null here: a setup error must be reported, not served."""
    script = (
        "import os\n"
        "from mmd.adapters.activation import ActivationError, take_activated_sockets\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='milter')\n"
        "try:\n"
        "    take_activated_sockets()\n"
        "except ActivationError as error:\n"
        "    print('error:', error, 'LISTEN_FDS' in os.environ)\n"
    )
    result = subprocess.run(
        ["sh", "-c", 'exec 3</dev/null; exec "$0" -c "$1"', sys.executable, script],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, check=True,
    )
    assert result.stdout.startswith("error: passed fd 3 (milter) is not a usable socket")
    assert result.stdout.strip().endswith("False")
