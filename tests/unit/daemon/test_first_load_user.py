"""Started as root with ``-u``, the first load reads files with the user's rights.

Reloads run after the switch to the user; if the first load ran as root, a milter file only
root may read would be detected at start and dropped at the first reload.
"""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

from mmd.daemon.generation import Options
from mmd.daemon.service import Daemon
from mmd.detection.model import DetectedMilter


def test_first_load_reads_as_the_target_user() -> None:
    assert os.geteuid() == 0, "this test switches credentials: it needs root"
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        Path(scratch).chmod(0o755)
        _check_first_load(Path(scratch))


def _check_first_load(scratch: Path) -> None:
    secret = scratch / "root-only.conf"
    secret.write_text("Socket local:/run/x.sock\n")
    secret.chmod(0o600)
    seen: list[tuple[int, int, bool]] = []

    def detector() -> tuple[list[DetectedMilter], list[str]]:
        seen.append((os.geteuid(), os.getegid(), os.access(secret, os.R_OK, effective_ids=True)))
        return [], []

    nobody = pwd.getpwnam("nobody")
    groups_before = os.getgroups()
    daemon = Daemon(Options(config_dir=scratch / "none", detector=detector, user="nobody"))
    daemon.first_load()
    assert seen == [(nobody.pw_uid, nobody.pw_gid, False)]
    # and back to root afterwards: the socket is still to be opened
    assert (os.geteuid(), os.getegid()) == (0, 0)
    assert os.getgroups() == groups_before


def test_first_load_without_user_stays_root(tmp_path: Path) -> None:
    seen: list[int] = []

    def detector() -> tuple[list[DetectedMilter], list[str]]:
        seen.append(os.geteuid())
        return [], []

    Daemon(Options(config_dir=tmp_path / "none", detector=detector)).first_load()
    assert seen == [os.geteuid()]
