"""Encode milter messages to bytes and decode byte streams into messages.

Wire format: a 4-byte big-endian length, then a 1-byte code, then data;
the length counts the code and the data.

API (h11 style, no I/O):

    decoder = Decoder(Direction.COMMANDS, max_packet_size=...)
    decoder.receive_data(chunk)          # any split of the stream
    while (message := decoder.next_message()) is not None: ...
    encode(message) -> bytes

``next_message`` raises ``MalformedPacket`` (a subclass of ``ProtocolError``)
that names the packet code and what was wrong; after an error the decoder
stays broken (every further call raises the same error).
"""

from __future__ import annotations

import enum

from mmd.protocol.messages import Message


class ProtocolError(Exception):
    """The peer sent bytes that are not the milter protocol."""


class MalformedPacket(ProtocolError):
    pass


class PacketTooLarge(ProtocolError):
    pass


class Direction(enum.Enum):
    COMMANDS = "commands"  # bytes from the MTA (we are the milter side)
    REPLIES = "replies"  # bytes from a milter (we are the MTA side)


class Decoder:
    def __init__(self, direction: Direction, max_packet_size: int = 2 * 1024 * 1024) -> None:
        raise NotImplementedError

    def receive_data(self, data: bytes) -> None:
        raise NotImplementedError

    def next_message(self) -> Message | None:
        raise NotImplementedError


def encode(message: Message) -> bytes:
    raise NotImplementedError
