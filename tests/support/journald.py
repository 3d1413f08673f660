"""A real systemd-journald of our own, so tests (and bench/report.py) write and read a journal
without touching the host's.

journald runs in a private mount namespace (``unshare --mount``) with a tmpfs over /run (and
over /var/log/journal) and Storage=volatile; its journal folder is a bind mount of a folder we
give, so the journal files can be read from outside with ``journalctl -D``. Commands that
write to it enter the namespace with nsenter. Needs root (mount namespaces).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
JOURNALD = "/lib/systemd/systemd-journald"

SANDBOX = r"""
set -eu
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/log/journal /run/systemd/journald.conf.d
mount --bind "$JOURNAL_DIR" /run/log/journal
printf '%s\n' '[Journal]' Storage=volatile ReadKMsg=no ForwardToSyslog=no ForwardToWall=no \
  ForwardToConsole=no Audit=no RateLimitBurst=0 "$@" > /run/systemd/journald.conf.d/test.conf
exec "$JOURNALD"
"""


class PrivateJournald:
    """journald in a mount namespace of its own, writing its journal files to ``directory``.

    ``settings`` are more ``[Journal]`` lines (``RuntimeMaxUse=4G``). Stopped by its own PID.
    """

    def __init__(self, directory: Path, settings: Sequence[str] = ()) -> None:
        for tool in ("unshare", "nsenter", "journalctl"):
            assert shutil.which(tool), f"{tool} is required"
        assert os.access(JOURNALD, os.X_OK), f"{JOURNALD} (package systemd) is required"
        assert os.geteuid() == 0, "the journald sandbox needs root (mount namespaces)"
        self.directory = directory
        directory.mkdir(exist_ok=True)
        log_path = directory.parent / f"{directory.name}-journald.log"
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "sandbox",
             *settings],
            env=dict(os.environ, JOURNAL_DIR=str(directory), JOURNALD=JOURNALD),
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        socket = Path(f"/proc/{self.process.pid}/root/run/systemd/journal/socket")
        deadline = time.monotonic() + 10
        while not socket.exists():
            assert self.process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "journald did not start"
            time.sleep(0.02)

    def inside(self, *command: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run ``command`` in journald's namespace (its /run: the journal socket); its stdout."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.process.pid), "-m", *command],
            input=stdin, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def sync(self) -> None:
        """Everything sent so far is in the journal files."""
        self.inside("journalctl", "--sync")

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()
