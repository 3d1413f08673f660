"""Reload by signal, with an answer: the way ``milter-manager reload`` takes when D-Bus is down.

SIGHUP alone says nothing back, so ``systemctl reload`` would return before the new
configuration is in use, and never learn that it was refused. The client binds an abstract
datagram socket named after the daemon's pid, then sends SIGHUP; after each reload that a
SIGHUP asked for, the daemon sends one datagram to that name: the outcome, the monotonic
time the signal arrived, and the message it logged. The client takes only an answer whose
sender the kernel vouches for (SCM_CREDENTIALS: the daemon's pid) and whose reload began
after its own signal, so an older reload still running cannot answer for the new one.
Nobody listening is normal (a plain ``kill -HUP``): the daemon ignores send errors.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass

# ucred: pid, uid, gid
_UCRED = struct.Struct("3i")
_LIMIT = 4096


def address(pid: int) -> bytes:
    """The abstract socket name the answer for daemon ``pid`` goes to."""
    return f"\0milter-manager/reload/{pid}".encode()


def encode(success: bool, signalled_ns: int, message: str) -> bytes:
    head = f"{'reloaded' if success else 'refused'} {signalled_ns}\n".encode()
    return (head + message.encode("utf-8", errors="replace"))[:_LIMIT]


@dataclass(frozen=True)
class Answer:
    success: bool
    signalled_ns: int
    message: str


def decode(data: bytes) -> Answer | None:
    head, _, body = data.partition(b"\n")
    words = head.split()
    if len(words) != 2 or words[0] not in (b"reloaded", b"refused") or not words[1].isdigit():
        return None
    return Answer(words[0] == b"reloaded", int(words[1]), body.decode("utf-8", errors="replace"))


def confirm(success: bool, signalled_ns: int, message: str, pid: int | None = None) -> None:
    """The daemon's side: tell a waiting client, if any, how the reload it asked for went."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # nobody waits, or the client gave up
            sock.sendto(encode(success, signalled_ns, message), address(pid or os.getpid()))


class WaitFailed(RuntimeError):
    """No answer: the daemon is gone, or did not answer in time."""


class AnswerListener:
    """The client's side: bind first, then signal, then wait."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.bind(address(pid))
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def signal_and_wait(self, timeout: float) -> Answer:
        signalled_ns = time.monotonic_ns()
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitFailed(f"no answer from pid {self.pid} within {timeout:g} s")
            readable, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if not readable:
                if not _alive(self.pid):
                    raise WaitFailed(f"pid {self.pid} ended before it answered")
                continue
            answer = self._receive()
            if answer is not None and answer.signalled_ns >= signalled_ns:
                return answer

    def _receive(self) -> Answer | None:
        data, ancillary, _, _ = self.sock.recvmsg(_LIMIT, socket.CMSG_SPACE(_UCRED.size))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _, _ = _UCRED.unpack(payload[: _UCRED.size])
                if pid == self.pid:
                    return decode(data)
        return None  # not from the daemon: ignore it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
