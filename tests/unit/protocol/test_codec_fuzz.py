"""The codec under mutated input, both directions (issue 13: keep it from coming back).

Seeded and bounded: the same 20,000 streams per direction on every run, in well
under a second each. For every stream: the decoder gives messages or a ProtocolError and nothing
else, however the bytes are split; whatever it decodes encodes again and decodes
to the same message; a stream of the other direction is refused the same way.
"""

from __future__ import annotations

import random

import pytest

from mmd.protocol.codec import Decoder, Direction, EncodeError, ProtocolError, encode
from mmd.protocol.messages import Message
from tests.support.fuzz import mutated_stream
from tests.unit.protocol.test_codec import WIRE

STREAMS = 20000
LIMITS = (64, 1024, 2 * 1024 * 1024)  # small limits reach PacketTooLarge often


def decode(direction: Direction, stream: bytes, limit: int,
           rng: random.Random | None = None) -> tuple[list[Message], str]:
    """Messages and the error text (empty: none); fed in random pieces if ``rng``."""
    decoder = Decoder(direction, limit)
    messages: list[Message] = []
    pieces = [stream]
    if rng is not None:
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream), 3)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    try:
        for piece in pieces:
            decoder.receive_data(piece)
            while (message := decoder.next_message()) is not None:
                messages.append(message)
    except ProtocolError as error:
        return messages, str(error)
    return messages, ""


@pytest.mark.parametrize("direction", [Direction.COMMANDS, Direction.REPLIES],
                         ids=["commands", "replies"])
def test_mutated_streams_give_messages_or_a_protocol_error(direction: Direction) -> None:
    rng = random.Random(f"mmd-codec-{direction.name}")
    own = [wire for d, _, wire in WIRE if d is direction]
    other = [wire for d, _, wire in WIRE if d is not direction]
    errors = 0
    for number in range(STREAMS):
        packets = own if number % 5 else other  # one stream in five is the wrong way round
        stream = mutated_stream(rng, packets)
        limit = rng.choice(LIMITS)
        whole = decode(direction, stream, limit)
        assert decode(direction, stream, limit, rng) == whole, stream
        messages, error = whole
        errors += bool(error)
        for message in messages:
            try:
                again = encode(message)
            except EncodeError:
                continue  # decodable but not encodable (e.g. a NUL-free field made odd)
            assert decode(direction, again, len(again))[0] == [message], (stream, message)
    # the mutations must reach the error paths, and not only them
    assert STREAMS // 4 < errors < STREAMS, errors
