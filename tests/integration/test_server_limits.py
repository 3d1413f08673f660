"""The MTA side under limits: max_connections makes extra connections wait, not fail."""

from __future__ import annotations

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
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS

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
