"""The MTA side's own flow control: an MTA that does not read its answers is not read
either, and nothing is read (or kept) after QUIT."""

from __future__ import annotations

import asyncio

from mmd.adapters.server import Generation, MtaProtocol, ServerState
from mmd.config.model import ManagerConfig
from mmd.engine import SessionSettings
from mmd.protocol import messages as m
from mmd.protocol.codec import encode
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS
from tests.support.transport import RecordingTransport
from tests.unit.adapters.test_server_headers import Recorder


class ReadingTransport(RecordingTransport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closed = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def connected() -> tuple[MtaProtocol, ReadingTransport]:
    generation = Generation(ManagerConfig(), (), (), SessionSettings())
    protocol = MtaProtocol(ServerState(generation, Recorder()))
    transport = ReadingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def not_reading_answers() -> None:
    protocol, transport = connected()
    protocol.data_received(encode(m.Negotiate(6, ALL_ACTIONS, ALL_STEPS)))
    protocol.pause_writing()  # what we wrote sits unread
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading


async def after_quit() -> None:
    protocol, transport = connected()
    protocol.data_received(encode(m.Negotiate(6, ALL_ACTIONS, ALL_STEPS)))
    protocol.data_received(encode(m.Quit()) + b"\0\0\0\x05Bmore")
    assert transport.closed
    written = len(transport.written)
    kept = protocol._decoder.pending_bytes  # the rest of the read that carried QUIT
    protocol.data_received(encode(m.Helo("after quit")) * 1000)
    assert len(transport.written) == written
    assert protocol._decoder.pending_bytes == kept


def test_an_mta_that_does_not_read_its_answers_is_not_read() -> None:
    asyncio.run(not_reading_answers())


def test_after_quit_the_connection_is_closed_and_input_ignored() -> None:
    asyncio.run(after_quit())
