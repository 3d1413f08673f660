"""``milter-manager reload`` against the real daemon: over D-Bus when the daemon is on the bus,
by SIGHUP and the daemon's answer when it is not; it returns after the reload and fails when
the configuration is refused, on both ways.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.dbus import REPO, PrivateBus, start_bus
from tests.support.processes import stop_process

GOOD = '[[milter]]\nname = "opendkim"\nconnection_spec = "inet:18891@127.0.0.1"\n'
SECOND = GOOD + '\n[[milter]]\nname = "clamav-milter"\nconnection_spec = "inet:17357@127.0.0.1"\n'
BROKEN = GOOD + '\n[manager]\nfallback_status = "maybe"\n'


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    directory: Path
    env: dict[str, str]

    @property
    def log(self) -> str:
        return (self.directory / "daemon.log").read_text()

    def write(self, text: str) -> None:
        (self.directory / "etc" / "milter-manager.toml").write_text(text)

    def reload(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mmd.cli.manager", "reload", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


def start_daemon(directory: Path, bus_address: str, *extra: str) -> Daemon:
    (directory / "etc").mkdir()
    (directory / "etc" / "milter-manager.toml").write_text(GOOD)
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus_address, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mmd.cli.manager", "-s", f"unix:{directory / 'sock'}",
         "-c", str(directory / "etc"), "--no-detection", *extra],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=(directory / "daemon.log").open("ab"),
    )  # fmt: skip
    daemon = Daemon(process, directory, env)
    deadline = time.monotonic() + 15
    while "ready: " not in daemon.log:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"milter-manager did not start: {daemon.log}")
        time.sleep(0.05)
    return daemon


def stop(daemon: Daemon) -> None:
    stop_process(daemon.process, 30)


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    running = start_bus("session")
    yield running
    running.stop()


@pytest.fixture
def on_the_bus(tmp_path: Path, bus: PrivateBus) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path, bus.address)
    yield daemon
    stop(daemon)


@pytest.fixture
def without_bus(tmp_path: Path) -> Iterator[Daemon]:
    """No bus at the address at all: the daemon keeps trying, the client signals."""
    daemon = start_daemon(tmp_path, f"unix:path={tmp_path}/no-bus")
    yield daemon
    stop(daemon)


def test_over_dbus_it_returns_after_the_reload(on_the_bus: Daemon) -> None:
    on_the_bus.write(SECOND)
    result = on_the_bus.reload()  # no pid: D-Bus must do it
    assert result.returncode == 0, result.stderr
    assert result.stdout == "reloaded: 2 milters: opendkim, clamav-milter\n"
    assert result.stderr == ""
    assert "reloaded: 2 milters" in on_the_bus.log


def test_over_dbus_a_refused_configuration_fails(on_the_bus: Daemon) -> None:
    on_the_bus.write(BROKEN)
    result = on_the_bus.reload()
    assert result.returncode == 1
    assert result.stderr.startswith("milter-manager reload: reload refused, keeping the previous")
    assert "milter-manager.toml" in result.stderr


def test_without_dbus_it_signals_and_waits_for_the_answer(without_bus: Daemon) -> None:
    without_bus.write(SECOND)
    pid = str(without_bus.process.pid)
    result = without_bus.reload(f"--pid={pid}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "reloaded: 2 milters: opendkim, clamav-milter\n"
    assert f"sending SIGHUP to pid {pid}" in result.stderr
    # the daemon had logged the reload before the client returned
    assert "reloaded: 2 milters" in without_bus.log


def test_without_dbus_a_refused_configuration_fails(without_bus: Daemon) -> None:
    without_bus.write(BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "mmd.cli.manager", "reload"], cwd=REPO,
        env={**without_bus.env, "MAINPID": str(without_bus.process.pid)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip  # as systemd runs ExecReload: the pid in $MAINPID
    assert result.returncode == 1
    assert "reload refused, keeping the previous configuration: " in result.stderr
    assert "milter-manager.toml" in result.stderr
    assert without_bus.process.poll() is None  # still serving


def test_without_dbus_and_without_a_pid_it_says_so(without_bus: Daemon) -> None:
    result = without_bus.reload()
    assert result.returncode == 2
    assert "no pid to signal" in result.stderr
