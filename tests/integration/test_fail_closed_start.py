"""milter-manager as users start it, on the sockets it must and must not own (issue 13).

- Not root and without XDG_RUNTIME_DIR, the default socket lives under
  /tmp/milter-manager-UID: a folder another local user made first (or a symbolic link there)
  must make the start fail, not receive the mail (defect 4).
- A socket systemd passed (here ``systemd-socket-activate``) is never removed at exit; the
  daemon's own is (defect 10).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_runner import ROOT, run_test_server
from tests.support.processes import reachable_dir

NOBODY = pwd.getpwnam("nobody")
TAKEN = Path(f"/tmp/milter-manager-{NOBODY.pw_uid}")


def start_as_nobody(config_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mmd.cli.manager", "-c", str(config_dir),
             "--no-detection", "--no-dbus"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=str(ROOT), user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[],
        )


def outcome(process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> int | None:
    """The exit status, or None if it got ready and served (then it is stopped here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode
        if "ready: " in log.read_text(errors="replace"):
            process.send_signal(signal.SIGTERM)
            process.wait(15)
            return None
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"neither ready nor exited:\n{log.read_text(errors='replace')}")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder user nobody can reach (pytest's tmp_path is under a 0700 folder)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="mmd-fail-closed-") as name:
        yield reachable_dir(Path(name))


@pytest.fixture
def taken_folder() -> Iterator[Path]:
    """/tmp/milter-manager-UID of user nobody, cleared before and after."""
    def clear() -> None:
        if TAKEN.is_symlink() or TAKEN.is_file():
            TAKEN.unlink()
        elif TAKEN.exists():
            shutil.rmtree(TAKEN)

    clear()
    yield TAKEN
    clear()


@pytest.mark.parametrize("how", ["folder of another user", "symbolic link"])
def test_default_socket_folder_taken_over_is_refused(
    scratch: Path, taken_folder: Path, how: str
) -> None:
    folder = scratch
    config_dir = reachable_dir(folder / "config")
    if how == "folder of another user":
        taken_folder.mkdir()
        taken_folder.chmod(0o1777)  # root's, but anyone may put the socket in it
        expected = f"{taken_folder} belongs to uid 0, not to this user"
    else:
        target = reachable_dir(folder / "attacker")
        target.chmod(0o1777)
        taken_folder.symlink_to(target)
        expected = f"{taken_folder} is a symbolic link"
    log = folder / "mmd.log"
    status = outcome(start_as_nobody(config_dir, log), log)
    text = log.read_text(errors="replace")
    assert status == 1, f"it served on a folder it does not own:\n{text}"
    assert expected in text
    assert list(taken_folder.iterdir()) == []


def test_default_socket_folder_is_made_private_and_cleaned(
    scratch: Path, taken_folder: Path
) -> None:
    folder = scratch
    log = folder / "mmd.log"
    process = start_as_nobody(reachable_dir(folder / "config"), log)
    sock = taken_folder / "milter-manager" / "milter-manager.sock"
    try:
        deadline = time.monotonic() + 20
        while "ready: " not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        info = os.lstat(taken_folder)
        assert (info.st_uid, info.st_mode & 0o777) == (NOBODY.pw_uid, 0o700)
        assert sock.is_socket()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    assert not sock.exists()


def test_socket_passed_by_systemd_is_not_removed(tmp_path: Path) -> None:
    folder = reachable_dir(tmp_path)
    config_dir = reachable_dir(folder / "config")
    sock = folder / "activated.sock"
    log = folder / "mmd.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    for name in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID", "LISTEN_FDS", "LISTEN_PID",
                 "LISTEN_FDNAMES"):
        env.pop(name, None)
    with open(log, "wb") as out:
        activator = subprocess.Popen(
            ["systemd-socket-activate", "-l", str(sock), "--fdname=milter",
             "-E", "PYTHONPATH", sys.executable, "-m", "mmd.cli.manager", "-c", str(config_dir),
             "--no-detection", "--no-dbus"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=str(ROOT),
        )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert activator.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # the first connection makes systemd-socket-activate exec the daemon in its place
        result = run_test_server("-s", f"unix:{sock}")
        assert result.status_line == "status: accept", (result, log.read_text())
        assert "serving socket-activated fd milter" in log.read_text()
    finally:
        activator.send_signal(signal.SIGTERM)
        assert activator.wait(15) == 0
    assert sock.is_socket(), "the daemon removed a socket systemd passed it"
    probe = socket.socket(socket.AF_UNIX)
    with pytest.raises(ConnectionRefusedError):
        probe.connect(str(sock))
    probe.close()
