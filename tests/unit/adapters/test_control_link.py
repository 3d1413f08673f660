"""The control link against real private dbus-daemons: the name is taken as soon as the bus
allows it, and the interface comes back after the bus is restarted, with one log line each way.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mmd.adapters.control_link import ControlLink, RetryPauses
from mmd.adapters.dbus_service import BUS_NAME
from tests.support.dbus import (
    FakeControl,
    LoopThread,
    PrivateBus,
    busctl,
    name_has_owner,
    start_bus,
    user_policy,
)

FAST = RetryPauses(first=0.05, longest=0.2)

@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


def owned(bus: PrivateBus) -> bool:
    return name_has_owner(bus.address)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmd.daemon"]


def test_the_name_is_taken_once_the_policy_allows_it(
    tmp_path: Path, loop: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    policies = tmp_path / "policy.d"
    policies.mkdir()
    bus = start_bus("system", extra=f"<includedir>{policies}</includedir>")
    link = ControlLink(FakeControl(), bus.address, FAST)
    try:
        with caplog.at_level(logging.INFO, logger="mmd.daemon"):
            loop.run(link.start())
            assert not link.connected
            time.sleep(0.5)  # several refused attempts
            assert not owned(bus)
            user = pwd.getpwuid(os.geteuid()).pw_name
            # the test's own user may own the name (the shipped policy: milter-manager only)
            (policies / "own.conf").write_text(user_policy(
                user, f'<allow own="{BUS_NAME}"/>', f'<allow send_destination="{BUS_NAME}"/>'))
            busctl(bus.address, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                   "org.freedesktop.DBus", "ReloadConfig")  # fmt: skip
            wait_until(lambda: owned(bus), "the name to be taken")
            wait_until(lambda: len(messages(caplog)) >= 2, "the line saying so")  # just after
            assert busctl(bus.address, "get-property", BUS_NAME, "/org/miltermanager/Manager1",
                          "org.miltermanager.Manager1", "State").stdout.strip() == 's "running"'
        logged = messages(caplog)
        assert len(logged) == 2, logged  # one warning, one line when it worked
        assert logged[0].startswith("D-Bus control interface not available yet: ")
        assert "not allowed to own" in logged[0]
        assert logged[1].startswith(f"D-Bus control interface is on the bus as {BUS_NAME} (after")
    finally:
        loop.run(link.close())
        bus.stop()


def test_control_comes_back_after_the_bus_restarts(
    tmp_path: Path, loop: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    bus = start_bus("session", directory=tmp_path / "bus")
    control = FakeControl()
    link = ControlLink(control, bus.address, FAST)
    try:
        with caplog.at_level(logging.INFO, logger="mmd.daemon"):
            loop.run(link.start())
            assert owned(bus)
            bus.stop(keep=True)
            time.sleep(0.5)  # the bus is away for a while: attempts fail quietly
            assert not link.connected
            bus = start_bus("session", directory=tmp_path / "bus")
            wait_until(lambda: owned(bus), "the name to be taken again")
            wait_until(lambda: len(messages(caplog)) >= 3, "the line saying so")  # just after
        logged = messages(caplog)
        assert len(logged) == 3, logged
        assert logged[0] == f"D-Bus control interface is on the bus as {BUS_NAME}"
        assert logged[1].startswith("D-Bus connection lost (")
        assert logged[2].startswith(f"D-Bus control interface is on the bus as {BUS_NAME} (after")
        # signals go out on the new connection: the link forwards to whichever is current
        monitor_reload = loop.run(control.reload())
        assert monitor_reload.startswith("reloaded: ")
    finally:
        loop.run(link.close())
        bus.stop()
    assert link.handle is None


def test_close_while_retrying_stops_the_attempts(tmp_path: Path, loop: LoopThread) -> None:
    link = ControlLink(FakeControl(), f"unix:path={tmp_path}/no-bus", FAST)
    loop.run(link.start())
    assert not link.connected
    loop.run(link.close())
    assert link.handle is None


def test_pauses_grow_to_a_cap() -> None:
    pauses = RetryPauses(first=0.25, longest=5.0)
    assert [pauses.after(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
