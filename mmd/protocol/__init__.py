"""The milter wire protocol (versions 2 to 6), sans-IO: bytes in, messages out.

``messages`` holds the packets as small immutable values, ``codec`` turns bytes
into them (``Decoder``) and back (``encode``), ``constants`` holds libmilter's
numbers and letters.
"""

from mmd.protocol import messages
from mmd.protocol.codec import (
    Decoder,
    Direction,
    EncodeError,
    MalformedPacket,
    PacketTooLarge,
    ProtocolError,
    encode,
    encode_many,
)
from mmd.protocol.constants import (
    ALL_ACTIONS,
    ALL_STEPS,
    DEFAULT_MAX_PACKET_SIZE,
    MAX_BODY_CHUNK,
    MAX_VERSION,
    MIN_VERSION,
    Action,
    Command,
    Family,
    MacroStage,
    Reply,
    Step,
)

__all__ = [
    "ALL_ACTIONS",
    "ALL_STEPS",
    "DEFAULT_MAX_PACKET_SIZE",
    "MAX_BODY_CHUNK",
    "MAX_VERSION",
    "MIN_VERSION",
    "Action",
    "Command",
    "Decoder",
    "Direction",
    "EncodeError",
    "Family",
    "MacroStage",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "Reply",
    "Step",
    "encode",
    "encode_many",
    "messages",
]
