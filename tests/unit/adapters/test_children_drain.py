"""ChildLink.when_drained: the engine's Drain waits for the child's socket, and never
runs in the same loop pass (other sessions get their turn between two windows)."""

from __future__ import annotations

import asyncio

from mmd.adapters.children import Callbacks, ChildLink
from mmd.config.model import MilterConfig
from tests.support.transport import RecordingTransport


def link() -> ChildLink:
    child = ChildLink(3, MilterConfig(name="child", connection_spec="unix:/nowhere"),
                      Callbacks(lambda index, reply: None, lambda index, reason: None), 65536)
    child.connection_made(RecordingTransport())
    return child


async def drains() -> None:
    drained: list[int] = []
    child = link()
    child.when_drained(drained.append)
    assert drained == []  # not in the same pass
    await asyncio.sleep(0)
    assert drained == [3]

    child.pause_writing()  # the child does not read
    child.when_drained(drained.append)
    await asyncio.sleep(0.01)
    assert drained == [3]
    child.resume_writing()
    await asyncio.sleep(0)
    assert drained == [3, 3]

    child.pause_writing()
    child.when_drained(drained.append)
    child.close()  # the session closed it meanwhile: nothing more
    child.resume_writing()
    await asyncio.sleep(0.01)
    assert drained == [3, 3]


def test_when_drained_waits_for_the_socket_and_for_the_next_loop_pass() -> None:
    asyncio.run(drains())
