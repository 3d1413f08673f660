"""README's first command, `make run`: the daemon on its default socket, usable by Postfix.

It runs the real Makefile target (install-deps --run, then the daemon in the foreground) and
connects to the socket as the postfix user, as smtpd would.
"""

from __future__ import annotations

import grp
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOCKET = Path("/run/milter-manager/milter-manager.sock")
CONNECT = ("import socket, sys; s = socket.socket(socket.AF_UNIX); "
           "s.connect(sys.argv[1]); s.close(); print('connected')")


def test_make_run_socket_is_usable_by_postfix() -> None:
    postfix = grp.getgrnam("postfix")  # CI installs Postfix: the group exists
    SOCKET.unlink(missing_ok=True)
    log = ROOT / "build" / "make-run-test.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as output:
        make = subprocess.Popen(["make", "run"], cwd=ROOT, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "MMD_EVENT=ready" not in log.read_text() and make.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert make.poll() is None, log.read_text()
        status = SOCKET.stat()
        assert stat.S_ISSOCK(status.st_mode)
        assert (status.st_uid, status.st_gid) == (0, postfix.gr_gid), log.read_text()
        assert stat.S_IMODE(status.st_mode) == 0o660
        connected = subprocess.run(["runuser", "-u", "postfix", "--", "/usr/bin/python3", "-c",
                                    CONNECT, str(SOCKET)], capture_output=True, text=True)
        assert connected.stdout == "connected\n", connected.stderr
        # and a user outside the group cannot
        refused = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c",
                                  CONNECT, str(SOCKET)], capture_output=True, text=True)
        assert "PermissionError" in refused.stderr
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
        SOCKET.unlink(missing_ok=True)
