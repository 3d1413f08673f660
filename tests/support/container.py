"""A throwaway systemd container for system tests: real PID 1, D-Bus, journald, socket units.

The container's root is an overlay whose lower layer is the host's root filesystem and whose
upper layer is a tmpfs that exists only in a private mount namespace: the container sees every
installed package (and files the host writes later), and everything it writes vanishes with
it. systemd never runs as init on the host itself (its boot would wipe the host's /tmp and
remount the shared cgroup tree read-only).

Recipe (see docs/systemd.md, "Testing"):
``unshare -m`` -> ``mount --make-rprivate /`` -> tmpfs with upper/work/root ->
``mount -t overlay -o lowerdir=/,...`` -> ``exec systemd-nspawn --register=no --keep-unit
--link-journal=no --uuid=<fresh> -M NAME -b --console=pipe``. Commands run inside through
``nsenter -t <container PID 1> -a``.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SLOW_UNITS = (
    # Host services that have nothing to do with mail filtering but slow the boot down.
    "postgresql.service",
    "postgresql@.service",
    # Its SysV script waits for clamd, which cannot start without signature databases.
    "clamav-milter.service",
)

LAUNCHER = r"""
set -eu
base="$1"; name="$2"; machine_id="$3"; shift 3
mount --make-rprivate /
mount -t tmpfs -o mode=0755 mmd-container "$base"
mkdir "$base/upper" "$base/work" "$base/root"
# Masks in the upper layer's /etc: `systemctl unmask` inside undoes them if a test wants one.
mkdir -p "$base/upper/etc/systemd/system"
for unit in "$@"; do ln -s /dev/null "$base/upper/etc/systemd/system/$unit"; done
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
exec systemd-nspawn -D "$base/root" --register=no --keep-unit --link-journal=no \
  --uuid="$machine_id" -M "$name" -b --console=pipe
"""


class ContainerError(RuntimeError):
    """The container did not boot, or a command inside it failed."""


class SystemdContainer:
    """One booted container; use ``boot()`` then ``run()``/``write_file()``, then ``poweroff()``."""

    def __init__(
        self,
        name: str | None = None,
        state_dir: Path | None = None,
        masked: Sequence[str] = SLOW_UNITS,
    ) -> None:
        self.name = name or f"mmd-test-{uuid.uuid4().hex[:8]}"
        self.masked = tuple(masked)
        self.state_dir = state_dir or Path("/var/tmp") / self.name
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.boot_seconds: float | None = None
        self.system_state: str | None = None

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    # -- lifecycle -----------------------------------------------------------------------

    def boot(self, timeout: float = 90.0) -> None:
        for tool in ("unshare", "systemd-nspawn", "nsenter", "mount"):
            if shutil.which(tool) is None:
                raise ContainerError(f"{tool} is required (packages util-linux, systemd-container)")
        if os.geteuid() != 0:
            raise ContainerError("the system test container needs root")
        mountpoint = self.state_dir / "mnt"
        mountpoint.mkdir(parents=True, exist_ok=False)
        started = time.monotonic()
        with open(self.console_log, "wb") as console:
            self.nspawn = subprocess.Popen(
                ["unshare", "--mount", "bash", "-c", LAUNCHER, "launcher",
                 str(mountpoint), self.name, uuid.uuid4().hex, *self.masked],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
                preexec_fn=_halt_with_parent,
            )
        deadline = started + timeout
        try:
            self.leader = self._wait_for_leader(deadline)
            private = Path(f"/proc/{self.leader}/root/run/systemd/private")
            while not private.exists():
                self._check_alive()
                self._sleep_until(deadline, "/run/systemd/private")
            remaining = max(1.0, deadline - time.monotonic())
            state = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                             timeout=remaining)
            self.system_state = state.stdout.strip()
            if self.system_state not in ("running", "degraded"):
                raise ContainerError(f"system state {self.system_state!r}\n{self.console_tail()}")
        except BaseException:
            self.poweroff()
            raise
        self.boot_seconds = time.monotonic() - started

    def _check_alive(self) -> None:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise ContainerError(
                f"systemd-nspawn exited with {self.nspawn.returncode}\n{self.console_tail()}"
            )

    def _sleep_until(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise ContainerError(f"timed out waiting for {what}\n{self.console_tail()}")
        time.sleep(0.05)

    def _wait_for_leader(self, deadline: float) -> int:
        """The container's PID 1 as seen from the host: the systemd below our nspawn."""
        assert self.nspawn is not None
        while True:
            self._check_alive()
            for pid in _descendants(self.nspawn.pid):
                if _comm(pid) == "systemd":
                    return pid
            self._sleep_until(deadline, "the container's PID 1")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def poweroff(self, timeout: float = 30.0) -> None:
        """Clean halt (SIGTERM to nspawn); SIGKILL to PID 1 only if it will not go."""
        process = self.nspawn
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if self.leader is not None and _comm(self.leader) == "systemd":
                    os.kill(self.leader, signal.SIGKILL)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.nspawn = None
        self.leader = None
        mountpoint = self.state_dir / "mnt"
        if mountpoint.is_dir():
            mountpoint.rmdir()  # the tmpfs lived only in the namespace; the folder is empty

    # -- inside --------------------------------------------------------------------------

    def command(self, cmd: Sequence[str] | str, user: str | None = None) -> list[str]:
        """The host command line that runs ``cmd`` inside (a string runs through sh -c)."""
        if self.leader is None:
            raise ContainerError("the container is not running")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        return ["nsenter", "-t", str(self.leader), "-a",
                "env", "-i", f"PATH={CLEAN_PATH}", "LANG=C.UTF-8", "HOME=/root", *argv]

    def run(
        self,
        cmd: Sequence[str] | str,
        check: bool = True,
        user: str | None = None,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(cmd, user), input=input, capture_output=True, text=True,
            timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
            raise ContainerError(
                f"`{shown}` exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def popen(self, cmd: Sequence[str] | str, user: str | None = None) -> subprocess.Popen[str]:
        """Start a long-running command inside (a client held open during a stop, ...)."""
        return subprocess.Popen(
            self.command(cmd, user), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        quoted = shlex.quote(path)
        self.run(f"mkdir -p \"$(dirname {quoted})\" && cat > {quoted} && chmod {mode:o} {quoted}",
                 input=text)

    def read_file(self, path: str) -> str:
        return self.run(["cat", path]).stdout


def _halt_with_parent() -> None:
    """In the child before exec: if the test process dies, nspawn gets SIGTERM (clean halt)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(item) for item in text.split()]


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = _children(pid)
    while pending:
        child = pending.pop(0)
        found.append(child)
        pending.extend(_children(child))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
