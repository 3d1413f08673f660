"""ChildLink's read timer follows the engine's ChildConversation: a reply is due exactly
while the conversation says so, and signs of life at end-of-message restart the clock."""

from __future__ import annotations

import asyncio

from mmd.adapters.children import Callbacks, ChildLink
from mmd.config.model import MilterConfig
from mmd.engine.conversation import ChildConversation, ChildSettings
from mmd.engine.stages import Stage
from mmd.protocol import messages as m
from mmd.protocol.codec import encode
from tests.support.transport import RecordingTransport


def linked(conversation: ChildConversation, failures: list[str],
           replies: list[m.ReplyMessage]) -> ChildLink:
    config = MilterConfig(name="child", connection_spec="unix:/nowhere",
                          reading_timeout=0.05, end_of_message_timeout=0.15)
    link = ChildLink(0, config, Callbacks(lambda index, reply: replies.append(reply),
                                          lambda index, reason: failures.append(reason)),
                     65536, conversation)
    link.connection_made(RecordingTransport())
    return link


async def owed_reply_times_out() -> list[str]:
    conversation = ChildConversation(0, ChildSettings("child"))
    failures: list[str] = []
    link = linked(conversation, failures, [])
    conversation.awaiting = Stage.HELO  # what the engine does when it sends HELO
    link.send(b"packet", True, Stage.HELO)
    await asyncio.sleep(0.15)
    return failures


async def answered_reply_does_not() -> list[str]:
    conversation = ChildConversation(0, ChildSettings("child"))
    failures: list[str] = []
    link = linked(conversation, failures, [])
    conversation.awaiting = Stage.HELO
    link.send(b"packet", True, Stage.HELO)
    conversation.awaiting = None  # the engine took the child's answer
    await asyncio.sleep(0.15)
    link.close()
    return failures


async def progress_restarts_the_clock() -> tuple[list[str], int]:
    conversation = ChildConversation(0, ChildSettings("child"))
    failures: list[str] = []
    replies: list[m.ReplyMessage] = []
    link = linked(conversation, failures, replies)
    conversation.awaiting = Stage.END_OF_MESSAGE
    link.send(b"packet", True, Stage.END_OF_MESSAGE)
    for _ in range(3):  # 0.3 s in all, twice the timeout, with a sign of life every 0.1 s
        await asyncio.sleep(0.1)
        link.data_received(encode(m.Progress()))
    assert failures == []
    await asyncio.sleep(0.3)
    return failures, len(replies)


def test_a_reply_the_conversation_owes_times_out() -> None:
    assert asyncio.run(owed_reply_times_out()) == ["timeout: no reply at helo within 0.05 s"]


def test_a_reply_the_engine_took_arms_nothing() -> None:
    assert asyncio.run(answered_reply_does_not()) == []


def test_progress_at_end_of_message_restarts_the_clock() -> None:
    failures, replies = asyncio.run(progress_restarts_the_clock())
    assert replies == 3
    assert failures == ["timeout: no reply at end-of-message within 0.15 s"]
