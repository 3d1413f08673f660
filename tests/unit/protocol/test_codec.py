"""The milter codec: exact wire bytes, every malformed-input error, properties.

The byte literals below are written by hand from the libmilter definitions
(mfdef.h: SMFIC_*/SMFIR_* letters, 4-byte big-endian length counting the code
byte, NUL-terminated strings, network-order integers), so they check the
encoder against the protocol, not against itself.
"""

from __future__ import annotations

import itertools
import struct
import typing
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmd.protocol import (
    ALL_ACTIONS,
    ALL_STEPS,
    DEFAULT_MAX_PACKET_SIZE,
    Action,
    Decoder,
    Direction,
    EncodeError,
    Family,
    MacroStage,
    MalformedPacket,
    PacketTooLarge,
    ProtocolError,
    Step,
    encode,
    encode_many,
)
from mmd.protocol.messages import (
    Abort,
    Accept,
    AddHeader,
    AddRecipient,
    AddRecipientWithArgs,
    Body,
    ChangeFrom,
    ChangeHeader,
    CommandMessage,
    Connect,
    ConnectionFail,
    Continue,
    Data,
    DeleteRecipient,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    Macro,
    Mail,
    Message,
    Negotiate,
    Progress,
    Quarantine,
    Quit,
    QuitNewConnection,
    Rcpt,
    Reject,
    ReplaceBody,
    ReplyCode,
    ReplyMessage,
    SetSymbolList,
    Shutdown,
    Skip,
    Tempfail,
    Unknown,
)


def packet(code: bytes, data: bytes = b"") -> bytes:
    """A packet built the way mfdef.h describes it, independently of the encoder."""
    return (len(data) + 1).to_bytes(4, "big") + code + data


def decode_all(direction: Direction, stream: bytes) -> list[Message]:
    decoder = Decoder(direction)
    decoder.receive_data(stream)
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    assert decoder.pending_bytes == 0
    return messages


C, R = Direction.COMMANDS, Direction.REPLIES

# One entry per message type: (direction, message, exact wire bytes).
WIRE: list[tuple[Direction, Message, bytes]] = [
    # OPTNEG as Postfix sends it: version 6, all actions, all steps.
    (C, Negotiate(6, ALL_ACTIONS, ALL_STEPS),
     b"\x00\x00\x00\x0dO" b"\x00\x00\x00\x06" b"\x00\x00\x01\xff" b"\x00\x1f\xff\xff"),
    # A v6 answer with two per-stage macro lists, in stage order.
    (R, Negotiate(6, Action.ADD_HEADERS | Action.SET_SYMBOL_LIST, Step.NO_HELO | Step.SKIP,
                  {MacroStage.END_OF_MESSAGE: "i", MacroStage.MAIL: "{auth_type} {auth_authen}"}),
     b"\x00\x00\x00\x31O" b"\x00\x00\x00\x06" b"\x00\x00\x01\x01" b"\x00\x00\x04\x02"
     b"\x00\x00\x00\x02{auth_type} {auth_authen}\x00" b"\x00\x00\x00\x05i\x00"),
    (C, Macro(b"C", (("j", "mx.example.org"), ("{daemon_name}", "smtpd"))),
     packet(b"D", b"Cj\x00mx.example.org\x00{daemon_name}\x00smtpd\x00")),
    (C, Connect("client.example.net", Family.INET, 25, "192.0.2.7"),
     packet(b"C", b"client.example.net\x004\x00\x19192.0.2.7\x00")),
    (C, Helo("client.example.net"), packet(b"H", b"client.example.net\x00")),
    (C, Mail(("<a@example.net>", "SIZE=100", "BODY=8BITMIME")),
     packet(b"M", b"<a@example.net>\x00SIZE=100\x00BODY=8BITMIME\x00")),
    (C, Rcpt(("<b@example.org>",)), packet(b"R", b"<b@example.org>\x00")),
    (C, Data(), b"\x00\x00\x00\x01T"),
    (C, Header("Subject", " hi there"), packet(b"L", b"Subject\x00 hi there\x00")),
    (C, EndOfHeaders(), b"\x00\x00\x00\x01N"),
    (C, Body(b"line\r\n\x00\xff"), packet(b"B", b"line\r\n\x00\xff")),
    (C, EndOfMessage(), b"\x00\x00\x00\x01E"),
    (C, Abort(), b"\x00\x00\x00\x01A"),
    (C, Quit(), b"\x00\x00\x00\x01Q"),
    (C, QuitNewConnection(), b"\x00\x00\x00\x01K"),
    (C, Unknown("XFOO bar"), packet(b"U", b"XFOO bar\x00")),
    (R, Accept(), b"\x00\x00\x00\x01a"),
    (R, Continue(), b"\x00\x00\x00\x01c"),
    (R, Reject(), b"\x00\x00\x00\x01r"),
    (R, Tempfail(), b"\x00\x00\x00\x01t"),
    (R, Discard(), b"\x00\x00\x00\x01d"),
    (R, ConnectionFail(), b"\x00\x00\x00\x01f"),
    (R, Shutdown(), b"\x00\x00\x00\x014"),
    (R, Skip(), b"\x00\x00\x00\x01s"),
    (R, Progress(), b"\x00\x00\x00\x01p"),
    (R, ReplyCode("550 5.7.1 Blocked by SpamAssassin"),
     packet(b"y", b"550 5.7.1 Blocked by SpamAssassin\x00")),
    (R, Quarantine("suspicious"), packet(b"q", b"suspicious\x00")),
    (R, AddHeader("X-Spam-Flag", "YES"), packet(b"h", b"X-Spam-Flag\x00YES\x00")),
    (R, InsertHeader(0, "X-First", "1"),
     packet(b"i", b"\x00\x00\x00\x00X-First\x001\x00")),
    (R, ChangeHeader(2, "Subject", ""), packet(b"m", b"\x00\x00\x00\x02Subject\x00\x00")),
    (R, AddRecipient("<c@example.org>"), packet(b"+", b"<c@example.org>\x00")),
    (R, AddRecipientWithArgs("<c@example.org>", "NOTIFY=NEVER"),
     packet(b"2", b"<c@example.org>\x00NOTIFY=NEVER\x00")),
    (R, DeleteRecipient("<b@example.org>"), packet(b"-", b"<b@example.org>\x00")),
    (R, ChangeFrom("<new@example.org>", "SIZE=1"),
     packet(b"e", b"<new@example.org>\x00SIZE=1\x00")),
    (R, ReplaceBody(b"new body\r\n"), packet(b"b", b"new body\r\n")),
    (R, SetSymbolList(MacroStage.RCPT, "{rcpt_addr}"),
     packet(b"l", b"\x00\x00\x00\x03{rcpt_addr}\x00")),
]


@pytest.mark.parametrize(
    ("direction", "message", "wire"), WIRE, ids=[type(m).__name__ for _, m, _ in WIRE]
)
def test_each_message_type_has_exact_bytes_and_decodes_back(
    direction: Direction, message: Message, wire: bytes
) -> None:
    assert encode(message) == wire
    assert decode_all(direction, wire) == [message]


def test_the_table_covers_every_message_type() -> None:
    covered = {type(m) for _, m, _ in WIRE}
    assert covered == set(typing.get_args(Message))


def test_negotiate_is_decoded_in_both_directions() -> None:
    wire = encode(Negotiate(2, Action.ADD_HEADERS, Step(0)))
    assert decode_all(C, wire) == decode_all(R, wire) == [Negotiate(2, Action.ADD_HEADERS, Step(0))]


def test_other_families_and_the_unknown_family() -> None:
    assert encode(Connect("h", Family.INET6, 587, "2001:db8::1")) == packet(
        b"C", b"h\x006\x02\x4b2001:db8::1\x00"
    )
    assert encode(Connect("localhost", Family.UNIX, 0, "/run/smtp.sock")) == packet(
        b"C", b"localhost\x00L\x00\x00/run/smtp.sock\x00"
    )
    # 'U' carries neither port nor address (Postfix: SMFIA_UNKNOWN alone).
    assert encode(Connect("unknown", Family.UNKNOWN)) == packet(b"C", b"unknown\x00U")
    assert decode_all(C, packet(b"C", b"unknown\x00U")) == [Connect("unknown", Family.UNKNOWN)]


def test_macro_names_keep_their_braces_and_empty_values() -> None:
    wire = packet(b"D", b"M{auth_type}\x00\x00i\x004Xyz\x00{mail_addr}\x00a@b\x00")
    assert decode_all(C, wire) == [
        Macro(b"M", (("{auth_type}", ""), ("i", "4Xyz"), ("{mail_addr}", "a@b")))
    ]
    assert decode_all(C, packet(b"D", b"T")) == [Macro(b"T", ())]


def test_end_of_message_may_carry_a_last_body_chunk() -> None:
    assert encode(EndOfMessage(b"tail\r\n")) == packet(b"E", b"tail\r\n")
    assert decode_all(C, packet(b"E", b"tail\r\n")) == [EndOfMessage(b"tail\r\n")]


def test_optional_argument_strings_may_be_absent() -> None:
    """libmilter leaves the args out of CHGFROM/ADDRCPT_PAR when there are none."""
    assert encode(ChangeFrom("<a@b>")) == packet(b"e", b"<a@b>\x00")
    assert encode(AddRecipientWithArgs("<a@b>", "")) == packet(b"2", b"<a@b>\x00")
    assert decode_all(R, packet(b"e", b"<a@b>\x00") + packet(b"2", b"<a@b>\x00")) == [
        ChangeFrom("<a@b>", ""), AddRecipientWithArgs("<a@b>", "")
    ]
    assert decode_all(R, packet(b"e", b"<a@b>\x00\x00")) == [ChangeFrom("<a@b>", "")]


def test_non_utf8_bytes_round_trip_through_surrogateescape() -> None:
    wire = packet(b"L", b"X-Latin1\x00caf\xe9 \xff\xfe\x00")
    (header,) = decode_all(C, wire)
    assert header == Header("X-Latin1", "caf\udce9 \udcff\udcfe")
    assert encode(header) == wire


def test_unknown_macro_stage_in_an_optneg_answer_is_ignored_like_postfix_does() -> None:
    data = struct.pack(">III", 6, 0, 0) + b"\x00\x00\x00\x09x\x00" + b"\x00\x00\x00\x00j\x00"
    assert decode_all(R, packet(b"O", data)) == [
        Negotiate(6, Action(0), Step(0), {MacroStage.CONNECT: "j"})
    ]


def test_unknown_flag_bits_are_kept() -> None:
    wire = packet(b"O", struct.pack(">III", 6, 0xFFFFFFFF, 0x80000000))
    (message,) = decode_all(C, wire)
    assert isinstance(message, Negotiate)
    assert int(message.actions) == 0xFFFFFFFF
    assert int(message.steps) == 0x80000000
    assert encode(message) == wire


def test_encode_many_concatenates_packets() -> None:
    assert encode_many([Data(), Quit()]) == b"\x00\x00\x00\x01T\x00\x00\x00\x01Q"


def test_decoding_needs_the_whole_packet_and_keeps_the_rest() -> None:
    wire = encode(Helo("example.net")) + encode(Data())[:3]
    decoder = Decoder(C)
    decoder.receive_data(wire[:2])
    assert decoder.next_message() is None
    decoder.receive_data(wire[2:10])
    assert decoder.next_message() is None
    decoder.receive_data(wire[10:])
    assert decoder.next_message() == Helo("example.net")
    assert decoder.next_message() is None
    assert decoder.pending_bytes == 3
    decoder.receive_data(b"\x01T")
    assert decoder.next_message() == Data()
    assert decoder.pending_bytes == 0


def test_many_small_packets_one_byte_at_a_time() -> None:
    messages: list[Message] = [Continue()] * 2000
    messages += [AddHeader("X-A", "b")] * 500
    stream = encode_many(messages)
    decoder = Decoder(R)
    got: list[Message] = []
    for i in range(len(stream)):
        decoder.receive_data(stream[i : i + 1])
        while (message := decoder.next_message()) is not None:
            got.append(message)
    assert got == messages


# ---------------------------------------------------------------- malformed input

MALFORMED: list[tuple[Direction, bytes, bytes | None, str]] = [
    # (direction, stream, code named in the error, words of the error)
    (C, b"\x00\x00\x00\x00", None, "length is zero"),
    (C, packet(b"a"), b"a", "unknown command code"),
    (R, packet(b"C", b"h\x00U"), b"C", "unknown reply code"),
    (C, packet(b"\x07"), b"\x07", "unknown command code"),
    (C, packet(b"T", b"x"), b"T", "unexpected 1 bytes of data"),
    (C, packet(b"Q", b"xy"), b"Q", "unexpected 2 bytes of data"),
    (R, packet(b"c", b"\x00"), b"c", "unexpected 1 bytes of data"),
    (C, packet(b"O", b"\x00\x00\x00\x06\x00\x00"), b"O", "short OPTNEG: 6 bytes, need 12"),
    (R, packet(b"O", bytes(12) + b"\x00\x00"), b"O", "truncated macro stage number"),
    (R, packet(b"O", bytes(12) + b"\x00\x00\x00\x01j"), b"O",
     "missing NUL after the symbol list of macro stage 1"),
    (C, packet(b"D"), b"D", "missing command letter"),
    (C, packet(b"D", b"Cj\x00x"), b"D", "missing NUL"),
    (C, packet(b"D", b"Cj\x00x\x00k\x00"), b"D", "macro 'k' has no value"),
    (C, packet(b"C", b"host"), b"C", "missing NUL after hostname"),
    (C, packet(b"C", b"host\x00"), b"C", "missing address family"),
    (C, packet(b"C", b"host\x00X\x00\x19a\x00"), b"C", "bad address family 'X'"),
    (C, packet(b"C", b"host\x00U\x00\x19"), b"C", "unexpected 2 bytes after address family 'U'"),
    (C, packet(b"C", b"host\x004\x00"), b"C", "truncated port"),
    (C, packet(b"C", b"host\x004\x00\x19"), b"C", "no data, expected address"),
    (C, packet(b"C", b"host\x004\x00\x191.2.3.4"), b"C", "missing NUL at the end of address"),
    (C, packet(b"C", b"host\x006\x00\x19::1\x00x\x00"), b"C", "expected 1 NUL-terminated"),
    (C, packet(b"H"), b"H", "no data, expected HELO name"),
    (C, packet(b"H", b"name"), b"H", "missing NUL at the end of HELO name"),
    (C, packet(b"H", b"a\x00b\x00"), b"H", "expected 1 NUL-terminated strings (HELO name), got 2"),
    (C, packet(b"M"), b"M", "no data, expected sender"),
    (C, packet(b"R", b"<b@c>"), b"R", "missing NUL"),
    (C, packet(b"L", b"Subject\x00"), b"L", "expected 2 NUL-terminated strings"),
    (C, packet(b"L", b"a\x00b\x00c\x00"), b"L", "got 3"),
    (C, packet(b"U", b"XFOO"), b"U", "missing NUL"),
    (R, packet(b"y"), b"y", "no data, expected reply text"),
    (R, packet(b"y", b"550 no"), b"y", "missing NUL at the end of reply text"),
    (R, packet(b"q", b"why"), b"q", "missing NUL"),
    (R, packet(b"h", b"X-A\x00"), b"h", "expected 2"),
    (R, packet(b"i", b"\x00\x00\x00"), b"i", "truncated header index"),
    (R, packet(b"m", b"\x00\x00\x00\x01X\x00"), b"m", "expected 2"),
    (R, packet(b"+", b"<a@b>"), b"+", "missing NUL"),
    (R, packet(b"2", b"<a@b>\x00x\x00y\x00"), b"2", "expected 1 to 2"),
    (R, packet(b"-"), b"-", "no data"),
    (R, packet(b"e", b"<a@b>"), b"e", "missing NUL"),
    (R, packet(b"l", b"\x00\x00"), b"l", "truncated macro stage number"),
    (R, packet(b"l", b"\x00\x00\x00\x07j\x00"), b"l", "unknown macro stage 7"),
    (R, packet(b"l", b"\x00\x00\x00\x01j"), b"l", "missing NUL"),
]


@pytest.mark.parametrize(
    ("direction", "stream", "code", "words"),
    MALFORMED,
    ids=[f"{d.value}-{w}" for d, _, _, w in MALFORMED],
)
def test_malformed_packets_name_the_code_and_the_problem(
    direction: Direction, stream: bytes, code: bytes | None, words: str
) -> None:
    decoder = Decoder(direction)
    decoder.receive_data(stream)
    with pytest.raises(MalformedPacket) as caught:
        decoder.next_message()
    assert caught.value.code == code
    assert words in caught.value.problem
    assert words in str(caught.value)
    if code is not None and 0x20 < code[0] < 0x7F:
        assert f"packet '{code.decode()}'" in str(caught.value)


def test_after_an_error_the_decoder_stays_broken() -> None:
    decoder = Decoder(C)
    decoder.receive_data(packet(b"H", b"no-nul") + encode(Data()))
    with pytest.raises(MalformedPacket) as first:
        decoder.next_message()
    with pytest.raises(MalformedPacket) as second:
        decoder.next_message()
    assert second.value is first.value
    with pytest.raises(MalformedPacket) as third:
        decoder.receive_data(encode(Quit()))
    assert third.value is first.value


def test_errors_are_protocol_errors() -> None:
    assert issubclass(MalformedPacket, ProtocolError)
    assert issubclass(PacketTooLarge, ProtocolError)
    assert issubclass(EncodeError, ValueError)
    assert not issubclass(EncodeError, ProtocolError)


# ---------------------------------------------------------------- packet size


def test_max_packet_size_is_the_length_field_limit() -> None:
    limit = 100
    exactly = packet(b"B", bytes(limit - 1))
    decoder = Decoder(C, max_packet_size=limit)
    decoder.receive_data(exactly)
    assert decoder.next_message() == Body(bytes(limit - 1))

    decoder = Decoder(C, max_packet_size=limit)
    # Only the length prefix has arrived: the error does not wait for the data.
    decoder.receive_data((limit + 1).to_bytes(4, "big"))
    with pytest.raises(PacketTooLarge) as caught:
        decoder.next_message()
    assert (caught.value.size, caught.value.limit) == (limit + 1, limit)
    assert str(caught.value) == "milter packet of 101 bytes exceeds the limit of 100 bytes"
    with pytest.raises(PacketTooLarge):
        decoder.next_message()


def test_default_limit_and_garbage_input() -> None:
    decoder = Decoder(C)
    decoder.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(PacketTooLarge) as caught:
        decoder.next_message()
    assert caught.value.limit == DEFAULT_MAX_PACKET_SIZE
    assert caught.value.size == int.from_bytes(b"GET ", "big")


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Decoder(C, max_packet_size=0)


# ---------------------------------------------------------------- encode errors

ENCODE_ERRORS: list[tuple[Message, str]] = [
    (Header("X\0Y", "v"), "NUL"),
    (Helo("a\0b"), "NUL"),
    (Macro(b"C", (("j", "a\0"),)), "NUL"),
    (Macro(b"CD", ()), "one byte"),
    (Macro(b"", ()), "one byte"),
    (Mail(()), "sender"),
    (Rcpt(()), "recipient"),
    (Connect("h", Family.INET, 70000, "1.2.3.4"), "cannot encode"),
    (InsertHeader(-1, "X", "v"), "cannot encode"),
    (ChangeHeader(2**32, "X", "v"), "cannot encode"),
    (Negotiate(2**32, Action(0), Step(0)), "cannot encode"),
    (Negotiate(6, Action(0), Step(0), {MacroStage.HELO: "a\0b"}), "NUL"),
    (ReplyCode("550 \ud800"), "cannot encode"),  # a lone surrogate not from surrogateescape
]


@pytest.mark.parametrize(("message", "words"), ENCODE_ERRORS, ids=[w for _, w in ENCODE_ERRORS])
def test_encode_refuses_what_the_wire_cannot_carry(message: Message, words: str) -> None:
    with pytest.raises(EncodeError, match=words):
        encode(message)


def test_encode_refuses_a_non_message() -> None:
    with pytest.raises(EncodeError, match="not a milter message"):
        encode("hello")  # type: ignore[arg-type]


# ---------------------------------------------------------------- properties

# Text that survives the wire: any bytes but NUL, decoded as the codec does.
text = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"").decode("utf-8", "surrogateescape")),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=20),
)
uint32 = st.integers(0, 2**32 - 1)
chunk = st.binary(max_size=200)
stages = st.sampled_from(MacroStage)


def bare(kind: type[Message]) -> st.SearchStrategy[Message]:
    return st.builds(kind)


def connects() -> st.SearchStrategy[Connect]:
    unknown = st.builds(Connect, text, st.just(Family.UNKNOWN))
    known = st.builds(
        Connect, text, st.sampled_from([Family.UNIX, Family.INET, Family.INET6]),
        st.integers(0, 65535), text,
    )
    return st.one_of(unknown, known)


STRATEGIES: dict[type, st.SearchStrategy[typing.Any]] = {
    Negotiate: st.builds(
        Negotiate, uint32, uint32.map(Action), uint32.map(Step),
        st.dictionaries(stages, text, max_size=7),
    ),
    Macro: st.builds(Macro, st.binary(min_size=1, max_size=1),
                     st.lists(st.tuples(text, text), max_size=6).map(tuple)),
    Connect: connects(),
    Helo: st.builds(Helo, text),
    Mail: st.builds(Mail, st.lists(text, min_size=1, max_size=4).map(tuple)),
    Rcpt: st.builds(Rcpt, st.lists(text, min_size=1, max_size=4).map(tuple)),
    Data: bare(Data),
    Header: st.builds(Header, text, text),
    EndOfHeaders: bare(EndOfHeaders),
    Body: st.builds(Body, chunk),
    EndOfMessage: st.builds(EndOfMessage, chunk),
    Abort: bare(Abort),
    Quit: bare(Quit),
    QuitNewConnection: bare(QuitNewConnection),
    Unknown: st.builds(Unknown, text),
    Accept: bare(Accept),
    Continue: bare(Continue),
    Reject: bare(Reject),
    Tempfail: bare(Tempfail),
    Discard: bare(Discard),
    ConnectionFail: bare(ConnectionFail),
    Shutdown: bare(Shutdown),
    Skip: bare(Skip),
    Progress: bare(Progress),
    ReplyCode: st.builds(ReplyCode, text),
    Quarantine: st.builds(Quarantine, text),
    AddHeader: st.builds(AddHeader, text, text),
    InsertHeader: st.builds(InsertHeader, uint32, text, text),
    ChangeHeader: st.builds(ChangeHeader, uint32, text, text),
    AddRecipient: st.builds(AddRecipient, text),
    AddRecipientWithArgs: st.builds(AddRecipientWithArgs, text, text),
    DeleteRecipient: st.builds(DeleteRecipient, text),
    ChangeFrom: st.builds(ChangeFrom, text, text),
    ReplaceBody: st.builds(ReplaceBody, chunk),
    SetSymbolList: st.builds(SetSymbolList, stages, text),
}

commands: st.SearchStrategy[Message] = st.one_of(
    [STRATEGIES[t] for t in typing.get_args(CommandMessage)]
)
replies: st.SearchStrategy[Message] = st.one_of(
    [STRATEGIES[t] for t in typing.get_args(ReplyMessage)]
)


def test_there_is_a_strategy_for_every_message_type() -> None:
    assert set(STRATEGIES) == set(typing.get_args(Message))


@given(commands)
def test_every_command_round_trips(message: Message) -> None:
    wire = encode(message)
    assert decode_all(C, wire) == [message]
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4


@given(replies)
def test_every_reply_round_trips(message: Message) -> None:
    wire = encode(message)
    assert decode_all(R, wire) == [message]
    assert int.from_bytes(wire[:4], "big") == len(wire) - 4


def split_points(data: st.DataObject, size: int) -> list[int]:
    cuts = data.draw(st.lists(st.integers(0, size), max_size=30))
    return sorted(set(cuts))


def stream_property(
    direction: Direction, strategy: st.SearchStrategy[Message], fed: bool = False
) -> Callable[[st.DataObject], None]:
    """``fed``: each piece through ``Decoder.feed`` (the adapters' way), else through
    ``receive_data`` and ``next_message``."""

    def check(data: st.DataObject) -> None:
        messages = data.draw(st.lists(strategy, max_size=12))
        stream = encode_many(messages)
        cuts = [0, *split_points(data, len(stream)), len(stream)]
        decoder = Decoder(direction)
        got: list[Message] = []
        for start, end in itertools.pairwise(cuts):
            if fed:
                got += decoder.feed(stream[start:end])
                continue
            decoder.receive_data(stream[start:end])
            while (message := decoder.next_message()) is not None:
                got.append(message)
        assert got == messages
        assert decoder.pending_bytes == 0

    return check


@given(st.data())
def test_any_split_of_a_command_stream_decodes_the_same(data: st.DataObject) -> None:
    stream_property(C, commands)(data)


@given(st.data())
def test_any_split_of_a_reply_stream_decodes_the_same(data: st.DataObject) -> None:
    stream_property(R, replies)(data)


@given(st.data())
def test_any_split_of_a_command_stream_fed_decodes_the_same(data: st.DataObject) -> None:
    stream_property(C, commands, fed=True)(data)


@given(st.data())
def test_any_split_of_a_reply_stream_fed_decodes_the_same(data: st.DataObject) -> None:
    stream_property(R, replies, fed=True)(data)


def test_a_bare_packet_after_a_partial_one_is_not_taken_on_its_own() -> None:
    decoder = Decoder(R)
    assert decoder.feed(b"\0\0\0\x06y") == []  # a reply code packet, 5 bytes to come
    with pytest.raises(MalformedPacket, match="reply text"):  # its data, not a continue
        decoder.feed(b"\0\0\0\1c")
    assert Decoder(R).feed(b"\0\0\0\1c") == [Continue()]
    with pytest.raises(MalformedPacket, match="unknown command"):  # no such bare command
        Decoder(C).feed(b"\0\0\0\1c")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_messages_none_or_a_protocol_error(stream: bytes) -> None:
    """Garbage never escapes as anything but ProtocolError (no IndexError, struct.error...)."""
    for direction in Direction:
        decoder = Decoder(direction, max_packet_size=1000)
        decoder.receive_data(stream)
        try:
            while decoder.next_message() is not None:
                pass
        except ProtocolError:
            pass


def test_macro_pairs_seen_before_are_shared_not_made_again() -> None:
    first = decode_all(C, encode(Macro(b"C", (("{daemon_name}", "smtpd"), ("_", "a [192.0.2.1]")))))
    again = decode_all(C, encode(Macro(b"C", (("{daemon_name}", "smtpd"), ("_", "b [192.0.2.2]")))))
    assert isinstance(first[0], Macro) and isinstance(again[0], Macro)
    assert again[0].macros == (("{daemon_name}", "smtpd"), ("_", "b [192.0.2.2]"))
    assert again[0].macros[0] is first[0].macros[0]  # the same value: the same pair
    assert again[0].macros[1][0] is first[0].macros[1][0]  # a new value: the same name
    long = "x" * 1000  # not kept: a long value would stay in memory
    one, two = (decode_all(C, encode(Macro(b"M", (("{mail_addr}", long),)))) for _ in range(2))
    assert one == two
    assert isinstance(one[0], Macro) and isinstance(two[0], Macro)
    assert one[0].macros[0] is not two[0].macros[0]


def test_decoders_at_rest_share_no_bytes() -> None:
    from mmd.protocol import codec

    first, second = Decoder(R), Decoder(R)
    wire = encode(ReplaceBody(b"x" * 100))
    assert first.feed(wire[:50]) == []  # half a packet: it has a buffer of its own now
    assert second.pending_bytes == 0 and not codec._NO_BYTES
    assert first.feed(wire[50:]) == [ReplaceBody(b"x" * 100)]
    assert first.pending_bytes == 0 and not codec._NO_BYTES
    first.receive_data(wire[:10])
    assert first.pending_bytes == 10 and second.pending_bytes == 0
