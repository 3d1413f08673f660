"""Mutated milter streams for the fuzz tests (codec and running daemon), seeded and bounded.

A stream is a few valid packets of one direction with one mutation applied: a
byte flipped, the stream cut short, random bytes put in, a length prefix
rewritten, a packet code replaced, a slice repeated. Most mutations break the
protocol somewhere; some give odd but valid packets, which the receiver must
take as well.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

from mmd.protocol.codec import Decoder, Direction, ProtocolError

Mutation = Callable[[random.Random, bytearray], None]


def _flip(rng: random.Random, data: bytearray) -> None:
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _cut(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data)) :]


def _insert(rng: random.Random, data: bytearray) -> None:
    at = rng.randrange(len(data) + 1)
    data[at:at] = rng.randbytes(rng.randint(1, 16))


def _length(rng: random.Random, data: bytearray) -> None:
    # the first packet's prefix: off by a little, zero, or anything at all
    (length,) = struct.unpack_from(">I", data)
    choice = rng.choice([0, 1, length - 1, length + 1, length * 2, rng.getrandbits(32)])
    struct.pack_into(">I", data, 0, max(0, min(choice, 0xFFFFFFFF)))


def _code(rng: random.Random, data: bytearray) -> None:
    if len(data) > 4:
        data[4] = rng.randrange(256)


def _repeat(rng: random.Random, data: bytearray) -> None:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 64))
    data[end:end] = data[start:end] * rng.randint(1, 4)


MUTATIONS: tuple[Mutation, ...] = (_flip, _cut, _insert, _length, _code, _repeat)


def mutated_stream(rng: random.Random, packets: Sequence[bytes], most: int = 4) -> bytes:
    """A few of ``packets`` in a row with one mutation somewhere."""
    data = bytearray(b"".join(rng.choice(packets) for _ in range(rng.randint(1, most))))
    rng.choice(MUTATIONS)(rng, data)
    return bytes(data)


def codec_error(direction: Direction, stream: bytes, limit: int) -> ProtocolError | None:
    """What our own decoder says about ``stream``: the error a receiver must report."""
    decoder = Decoder(direction, limit)
    decoder.receive_data(stream)
    try:
        while decoder.next_message() is not None:
            pass
    except ProtocolError as error:
        return error
    return None
