"""Start real daemons for tests by hand, wait until they listen, stop them by PID.

Every process started here is remembered by PID and stopped by that PID only
(never by name): the host may run its own copies of the same programs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class DaemonError(RuntimeError):
    """A daemon did not come up; the message carries its log."""


def read_tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return f"(no log at {path})"


def unix_socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def free_tcp_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tcp_port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Daemon:
    """One started process, its output in ``log``; stopped by its own PID."""

    def __init__(self, name: str, argv: Sequence[str], log: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env=env, cwd=cwd,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str,
                   extra_log: Path | None = None) -> None:
        """Poll ``ready`` until true; fail loudly if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not self.alive():
                raise DaemonError(self._story(f"exited with {self.process.returncode} "
                                              f"before {what}", extra_log))
            time.sleep(0.05)
        raise DaemonError(self._story(f"not {what} after {timeout} s", extra_log))

    def wait_for_unix_socket(self, path: Path, timeout: float = 30.0,
                             extra_log: Path | None = None) -> None:
        self.wait_until(lambda: path.exists() and unix_socket_accepts(path), timeout,
                        f"listening on {path}", extra_log)

    def _story(self, what: str, extra_log: Path | None) -> str:
        text = f"{self.name} ({' '.join(self.argv)}) {what}\n--- {self.log}:\n{read_tail(self.log)}"
        if extra_log is not None:
            text += f"\n--- {extra_log}:\n{read_tail(extra_log)}"
        return text

    def terminate(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
        stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM to a child we started, then SIGKILL if it is still there after ``timeout``."""
    if process.poll() is None:
        process.terminate()
    reap(process, timeout)


def reap(process: subprocess.Popen[Any], timeout: float) -> None:
    """Wait for a child that was asked to end (a signal, its stdin closed); SIGKILL it if it is
    still there after ``timeout``."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def kill_pid_file(path: Path, timeout: float = 10.0) -> None:
    """Stop a daemon that forked away from us, by the PID it wrote."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    stop_pid(pid, timeout)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM to a process we started that is not our child (it forked), then SIGKILL if it
    is still there after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_ended(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pid_ended(pid: int) -> bool:
    """Gone, or a zombie: it has ended and only waits for its reaper, which is not us (a
    container's PID 1 may take a second or more to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def reachable_dir(path: Path) -> Path:
    """Make a directory that other users (postfix, clamav, debian-spamd) can traverse."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path
