"""The real daemon (milter-manager) behind org.miltermanager.Manager1, driven by busctl.

Checks the documented runtime behaviour end to end: a SetMilterEnabled override
is kept across reloads and forgotten at restart; a rejected reload is a typed
error; the daemon refuses mutating calls from non-admins itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmd.adapters.dbus_service import (
    BUS_NAME,
    ERROR_ACCESS_DENIED,
    ERROR_INVALID_CONFIGURATION,
    INTERFACE_NAME,
    OBJECT_PATH,
)
from tests.support.dbus import REPO, PrivateBus, busctl, dbus_send, name_has_owner, start_bus
from tests.support.processes import stop_process

CONFIG = """\
[[milter]]
name = "opendkim"
connection_spec = "inet:18891@127.0.0.1"

[[milter]]
name = "spamass-milter"
connection_spec = "unix:/nonexistent/spamass.sock"
"""


class RunningDaemon:
    def __init__(self, bus: PrivateBus, directory: Path) -> None:
        self.bus = bus
        self.directory = directory
        self.config_dir = directory / "etc"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mmd.cli.manager", "-s", f"unix:{self.directory / 'sock'}",
             "-c", str(self.config_dir), "--no-detection"],
            cwd=REPO,
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus.address,
                 "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "daemon.log").open("ab"),
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not owned(self.bus):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("milter-manager did not take the bus name: "
                                   + (self.directory / "daemon.log").read_text())  # fmt: skip
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, 30)
        self.process = None
        deadline = time.monotonic() + 5
        while owned(self.bus) and time.monotonic() < deadline:
            time.sleep(0.05)


def owned(bus: PrivateBus) -> bool:
    return name_has_owner(bus.address)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    bus = start_bus("session")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "milter-manager.toml").write_text(CONFIG)
    running = RunningDaemon(bus, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        bus.stop()


def call(daemon: RunningDaemon, member: str, *args: str) -> Any:
    result = busctl(daemon.bus.address, "--json=short", "call", BUS_NAME, OBJECT_PATH,
                    INTERFACE_NAME, member, *args)  # fmt: skip
    return json.loads(result.stdout)["data"] if result.stdout.strip() else None


def enabled(daemon: RunningDaemon, name: str) -> bool:
    value: bool = call(daemon, "GetMilter", "s", name)[0][2]
    return value


def test_list_milters_from_the_real_daemon(daemon: RunningDaemon) -> None:
    [milters] = call(daemon, "ListMilters")
    assert [(m[0], m[1], m[2], m[3]) for m in milters] == [
        ("opendkim", "inet:18891@127.0.0.1", True, "configured"),
        ("spamass-milter", "unix:/nonexistent/spamass.sock", True, "configured"),
    ]


def test_an_override_is_kept_across_reloads_and_forgotten_at_restart(
    daemon: RunningDaemon,
) -> None:
    assert call(daemon, "SetMilterEnabled", "sb", "opendkim", "false") is None
    assert enabled(daemon, "opendkim") is False
    call(daemon, "Reload")
    assert enabled(daemon, "opendkim") is False
    assert enabled(daemon, "spamass-milter") is True
    daemon.stop()
    daemon.start()
    assert enabled(daemon, "opendkim") is True


def test_a_rejected_reload_is_a_typed_error_and_keeps_the_configuration(
    daemon: RunningDaemon,
) -> None:
    (daemon.config_dir / "milter-manager.toml").write_text(
        CONFIG + '\n[manager]\nfallback_status = "maybe"\n'
    )
    result = dbus_send(daemon.bus.address, f"{INTERFACE_NAME}.Reload")
    assert result.stderr.startswith(f"Error {ERROR_INVALID_CONFIGURATION}:"), result.stderr
    assert "milter-manager.toml" in result.stderr
    assert len(call(daemon, "ListMilters")[0]) == 2


def test_the_daemon_itself_refuses_reload_from_nobody(daemon: RunningDaemon) -> None:
    result = dbus_send(daemon.bus.address, f"{INTERFACE_NAME}.Reload", user="nobody")
    assert result.stderr.startswith(f"Error {ERROR_ACCESS_DENIED}:"), result.stderr


def test_properties_of_the_real_daemon(daemon: RunningDaemon) -> None:
    result = busctl(daemon.bus.address, "--json=short", "get-property", BUS_NAME, OBJECT_PATH,
                    INTERFACE_NAME, "State", "ConfigurationFiles")  # fmt: skip
    state, files = (json.loads(line)["data"] for line in result.stdout.splitlines())
    assert state == "running"
    assert files == [str(daemon.config_dir / "milter-manager.toml")]
