"""The daemon started with an old init script's options: it starts, the socket gets the group
--socket-group-name names, and one warning says what systemd does instead of the rest."""

from __future__ import annotations

import grp
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_runner import run_test_server
from tests.support.mmd_daemon import MmdDaemons

CLASSIC = ["--daemon", "--pid-file=/run/milter-manager/milter-manager.pid",
           "--socket-group-name", "mail", "--log-level=all",
           "--log-path", "/var/log/milter-manager.log"]


@pytest.fixture
def daemons(integration_dir: Path) -> Iterator[MmdDaemons]:
    started = MmdDaemons(integration_dir / "mmd-classic")
    yield started
    assert all(code == 0 for _, code in started.stop_all())


def test_classic_options_start_the_daemon(daemons: MmdDaemons) -> None:
    assert os.geteuid() == 0, "changing the socket's group needs root"
    daemon = daemons.start(extra_args=CLASSIC)
    socket = Path(daemon.spec.removeprefix("unix:"))
    assert grp.getgrgid(socket.stat().st_gid).gr_name == "mail"
    warnings = daemon.log_lines("ignored options of the classic milter-manager")
    assert len(warnings) == 1, daemon.log()
    assert "--daemon: systemd runs milter-manager" in warnings[0]
    assert "--pid-file: systemd knows the main PID" in warnings[0]
    assert "--log-path: messages go to the journal" in warnings[0]
    run = run_test_server("-s", daemon.spec)
    assert run.status_line == "status: accept", run
    daemon.wait_for_log("[session][end]")
    assert daemon.log_lines("DEBUG"), "--log-level=all is --verbose"
