"""A private bus and an event loop thread, shared by the D-Bus adapter tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dbus import LoopThread, PrivateBus, start_bus


@pytest.fixture(scope="module")
def bus() -> Iterator[PrivateBus]:
    running = start_bus("session")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()
