"""Encode milter messages to bytes and decode byte streams into messages.

Theory of operation
-------------------
Wire format: a 4-byte big-endian length, then a 1-byte code, then data;
the length counts the code and the data. This module knows the layout of
every packet of protocol versions 2 to 6 and nothing else: which packet
may follow which is the session engine's business, not the codec's.

API (h11 style, no I/O)::

    decoder = Decoder(Direction.COMMANDS, max_packet_size=...)
    decoder.receive_data(chunk)          # any split of the stream
    while (message := decoder.next_message()) is not None: ...
    encode(message) -> bytes

Two kinds of error, as in h11: ``ProtocolError`` (and its subclasses
``MalformedPacket`` and ``PacketTooLarge``) means the *peer* sent bytes that
are not the milter protocol; ``EncodeError`` means *we* asked to encode a
message the wire cannot carry (a NUL inside a text field, a port above
65535...). ``next_message`` names the packet code and what was wrong; after
an error the decoder stays broken (every further call raises the same error),
because a milter stream has no way to resynchronise.

This is the hot path of the manager (every packet of every session with
every child), hence: one ``bytearray`` with a read offset (consumed bytes are
dropped in bulk, never one packet at a time), ``struct`` unpacking in place,
dispatch dicts keyed by the code byte, one UTF-8 decode per packet (the NUL
separator cannot occur inside a UTF-8 sequence, so decoding first and
splitting on ``"\\0"`` afterwards gives the same strings), and shared instances
for the packets without data.

Leniency follows Postfix where Postfix is lenient on purpose: an OPTNEG
answer's symbol list for a stage number this protocol does not know is
ignored (Postfix: "ignoring unknown macro type"), and the optional argument
string of CHGFROM and ADDRCPT_PAR may be absent. Everything else that does
not match the layout exactly is a ``MalformedPacket``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, NoReturn

from mmd.protocol.constants import (
    DEFAULT_MAX_PACKET_SIZE,
    Action,
    Command,
    Family,
    MacroStage,
    Reply,
    Step,
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
    SetSymbolList,
    Shutdown,
    Skip,
    Tempfail,
    Unknown,
)

__all__ = [
    "Decoder",
    "Direction",
    "EncodeError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "encode",
    "encode_many",
]

_TEXT: Final = "utf-8"
_ERRORS: Final = "surrogateescape"
_UINT32: Final = struct.Struct(">I")
_OPTNEG: Final = struct.Struct(">III")
_HEAD: Final = struct.Struct(">Ic")
_PORT: Final = struct.Struct(">H")


# ---------------------------------------------------------------- errors


def _show_code(code: int) -> str:
    """A code byte as a reader wants it in a log line: 'X' or 0x07."""
    return f"'{chr(code)}'" if 0x20 < code < 0x7F else f"0x{code:02x}"


class ProtocolError(Exception):
    """The peer sent bytes that are not the milter protocol."""


class MalformedPacket(ProtocolError):
    """A packet whose layout is wrong; ``code`` is its code byte (None if unknown)."""

    def __init__(self, code: bytes | None, problem: str) -> None:
        self.code = code
        self.problem = problem
        where = "packet" if code is None else f"packet {_show_code(code[0])}"
        super().__init__(f"malformed milter {where}: {problem}")


class PacketTooLarge(ProtocolError):
    """A length prefix above the configured limit (the peer is broken or not a milter)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"milter packet of {size} bytes exceeds the limit of {limit} bytes")


class EncodeError(ValueError):
    """We asked to encode a message the wire cannot carry (our bug, not the peer's)."""


class _Bad(Exception):
    """Raised by a packet parser; the decoder adds the code byte."""


class Direction(enum.Enum):
    """Which way a decoder reads: the letters mean different packets each way."""

    COMMANDS = "commands"  # bytes from the MTA (we are the milter side)
    REPLIES = "replies"  # bytes from a milter (we are the MTA side)


# ---------------------------------------------------------------- parsers
#
# Each parser takes the data after the code byte (a fresh bytearray copy that
# it may keep) and returns a message or raises _Bad.


def _text(data: bytearray) -> str:
    return data.decode(_TEXT, _ERRORS)


def _strings(data: bytearray, least: int, most: int, what: str) -> list[str]:
    """Split NUL-terminated strings; ``what`` names them for the error."""
    if not data:
        if least == 0:
            return []
        raise _Bad(f"no data, expected {what}")
    if data[-1] != 0:
        raise _Bad(f"missing NUL at the end of {what}")
    parts = _text(data)[:-1].split("\0")
    count = len(parts)
    if count < least or count > most:
        wanted = str(least) if least == most else f"{least} to {most}"
        raise _Bad(f"expected {wanted} NUL-terminated strings ({what}), got {count}")
    return parts


def _no_data(data: bytearray) -> NoReturn:
    raise _Bad(f"unexpected {len(data)} bytes of data")


def _parse_negotiate(data: bytearray) -> Negotiate:
    size = len(data)
    if size < _OPTNEG.size:
        raise _Bad(f"short OPTNEG: {size} bytes, need {_OPTNEG.size}")
    version, actions, steps = _OPTNEG.unpack_from(data)
    if size == _OPTNEG.size:  # no symbol lists (every OPTNEG but a few children's answers)
        return Negotiate(version, Action(actions), Step(steps), _NO_LISTS)
    lists: dict[MacroStage, str] = {}
    pos = _OPTNEG.size
    while pos < size:
        if size - pos < 4:
            raise _Bad(f"truncated macro stage number at offset {pos}")
        (stage,) = _UINT32.unpack_from(data, pos)
        pos += 4
        nul = data.find(0, pos)
        if nul < 0:
            raise _Bad(f"missing NUL after the symbol list of macro stage {stage}")
        if stage in _STAGES:
            lists[_STAGES[stage]] = data[pos:nul].decode(_TEXT, _ERRORS)
        pos = nul + 1
    return Negotiate(version, Action(actions), Step(steps), lists)


# Macro names come again in every session (j, {daemon_name}, {client_addr}, ...), and many
# values too: {daemon_name}, v, {tls_version}, {cipher}, {mail_mailer} are the same on a
# server for nearly every session. Each name keeps the (name, value) pair seen last, and a
# pair equal to it is that very object, not a new one per session (a thousand idle
# sessions held eight names, values and pairs each). What comes from the network is
# bounded: names past _NAMES_KEPT and values longer than _VALUE_KEPT are not kept.
_LAST_PAIRS: dict[str, tuple[str, str]] = {}
_NAMES_KEPT = 512
_VALUE_KEPT = 128


def _macro_pairs(parts: list[str]) -> tuple[tuple[str, str], ...]:
    last = _LAST_PAIRS
    pairs = []
    for i in range(0, len(parts), 2):
        name = parts[i]
        value = parts[i + 1]
        pair = last.get(name)
        if pair is None:
            pair = (name, value)
            if len(last) < _NAMES_KEPT and len(value) <= _VALUE_KEPT:
                last[name] = pair
        elif pair[1] != value:
            pair = (pair[0], value)  # the name kept, a new value
            if len(value) <= _VALUE_KEPT:
                last[name] = pair
        pairs.append(pair)
    return tuple(pairs)


def _parse_macro(data: bytearray) -> Macro:
    if not data:
        raise _Bad("missing command letter")
    command = _COMMAND_LETTERS.get(data[0]) or bytes(data[:1])
    parts = _strings(data[1:], 0, 1 << 62, "macro names and values")
    if len(parts) % 2:
        raise _Bad(f"macro {parts[-1]!r} has no value")
    return Macro(command, _macro_pairs(parts), _HEAD.pack(len(data) + 1, b"D") + data)


def _parse_connect(data: bytearray) -> Connect:
    nul = data.find(0)
    if nul < 0:
        raise _Bad("missing NUL after hostname")
    hostname = data[:nul].decode(_TEXT, _ERRORS)
    if nul + 1 >= len(data):
        raise _Bad("missing address family")
    family = _FAMILIES.get(data[nul + 1])
    if family is None:
        raise _Bad(f"bad address family {_show_code(data[nul + 1])}")
    rest = data[nul + 2 :]
    if family is Family.UNKNOWN:
        if rest:
            raise _Bad(f"unexpected {len(rest)} bytes after address family 'U'")
        return Connect(hostname, family)
    if len(rest) < 2:
        raise _Bad("truncated port")
    (port,) = _PORT.unpack_from(rest)
    (address,) = _strings(rest[2:], 1, 1, "address")
    return Connect(hostname, family, port, address)


def _parse_helo(data: bytearray) -> Helo:
    return Helo(*_strings(data, 1, 1, "HELO name"))


def _parse_mail(data: bytearray) -> Mail:
    return Mail(tuple(_strings(data, 1, 1 << 62, "sender and ESMTP arguments")))


def _parse_rcpt(data: bytearray) -> Rcpt:
    return Rcpt(tuple(_strings(data, 1, 1 << 62, "recipient and ESMTP arguments")))


def _parse_header(data: bytearray) -> Header:
    name, value = _strings(data, 2, 2, "header name and value")
    return Header(name, value)


def _parse_body(data: bytearray) -> Body:
    return Body(bytes(data))


def _parse_end_of_message(data: bytearray) -> EndOfMessage:
    return EndOfMessage(bytes(data))


def _parse_unknown(data: bytearray) -> Unknown:
    return Unknown(*_strings(data, 1, 1, "SMTP command"))


def _parse_reply_code(data: bytearray) -> ReplyCode:
    return ReplyCode(*_strings(data, 1, 1, "reply text"))


def _parse_quarantine(data: bytearray) -> Quarantine:
    return Quarantine(*_strings(data, 1, 1, "quarantine reason"))


def _parse_add_header(data: bytearray) -> AddHeader:
    name, value = _strings(data, 2, 2, "header name and value")
    return AddHeader(name, value)


def _indexed_header(data: bytearray) -> tuple[int, str, str]:
    if len(data) < 4:
        raise _Bad("truncated header index")
    (index,) = _UINT32.unpack_from(data)
    name, value = _strings(data[4:], 2, 2, "header name and value")
    return index, name, value


def _parse_insert_header(data: bytearray) -> InsertHeader:
    return InsertHeader(*_indexed_header(data))


def _parse_change_header(data: bytearray) -> ChangeHeader:
    return ChangeHeader(*_indexed_header(data))


def _parse_add_recipient(data: bytearray) -> AddRecipient:
    return AddRecipient(*_strings(data, 1, 1, "recipient"))


def _parse_add_recipient_with_args(data: bytearray) -> AddRecipientWithArgs:
    parts = _strings(data, 1, 2, "recipient and ESMTP arguments")
    return AddRecipientWithArgs(parts[0], parts[1] if len(parts) == 2 else "")


def _parse_delete_recipient(data: bytearray) -> DeleteRecipient:
    return DeleteRecipient(*_strings(data, 1, 1, "recipient"))


def _parse_change_from(data: bytearray) -> ChangeFrom:
    return ChangeFrom(*_strings(data, 1, 2, "sender and ESMTP arguments"))


def _parse_replace_body(data: bytearray) -> ReplaceBody:
    return ReplaceBody(bytes(data))


def _parse_set_symbol_list(data: bytearray) -> SetSymbolList:
    if len(data) < 4:
        raise _Bad("truncated macro stage number")
    (number,) = _UINT32.unpack_from(data)
    stage = _STAGES.get(number)
    if stage is None:
        raise _Bad(f"unknown macro stage {number}")
    (symbols,) = _strings(data[4:], 1, 1, "symbol list")
    return SetSymbolList(stage, symbols)


_Parser = Callable[[bytearray], Message]

_STAGES: Final[dict[int, MacroStage]] = {int(s): s for s in MacroStage}
# an OPTNEG without symbol lists: one shared, read-only empty mapping
_NO_LISTS: Final[Mapping[MacroStage, str]] = MappingProxyType({})
# a macro's command letter as one bytes object per letter, not one per packet
_COMMAND_LETTERS: Final[dict[int, bytes]] = {code: bytes((code,)) for code in range(128)}
_FAMILIES: Final[dict[int, Family]] = {f.value[0]: f for f in Family}

# a decoder's buffer while nothing waits in it: shared, never written (receive_data)
_NO_BYTES: Final = bytearray()

# Packets without data: one shared instance each.
_BARE_COMMANDS: Final[dict[int, Message]] = {
    Command.DATA[0]: Data(),
    Command.END_OF_HEADERS[0]: EndOfHeaders(),
    Command.ABORT[0]: Abort(),
    Command.QUIT[0]: Quit(),
    Command.QUIT_NEW_CONNECTION[0]: QuitNewConnection(),
}
_BARE_REPLIES: Final[dict[int, Message]] = {
    Reply.ACCEPT[0]: Accept(),
    Reply.CONTINUE[0]: Continue(),
    Reply.REJECT[0]: Reject(),
    Reply.TEMPFAIL[0]: Tempfail(),
    Reply.DISCARD[0]: Discard(),
    Reply.SKIP[0]: Skip(),
    Reply.PROGRESS[0]: Progress(),
    Reply.CONNECTION_FAIL[0]: ConnectionFail(),
    Reply.SHUTDOWN[0]: Shutdown(),
}
# the same as whole packets (length 1, the code): Decoder.feed's lookup
_BARE_COMMAND_PACKETS: Final[dict[bytes, Message]] = {
    b"\0\0\0\1" + bytes((code,)): message for code, message in _BARE_COMMANDS.items()
}
_BARE_REPLY_PACKETS: Final[dict[bytes, Message]] = {
    b"\0\0\0\1" + bytes((code,)): message for code, message in _BARE_REPLIES.items()
}

_COMMAND_PARSERS: Final[dict[int, _Parser]] = {
    Command.NEGOTIATE[0]: _parse_negotiate,
    Command.MACRO[0]: _parse_macro,
    Command.CONNECT[0]: _parse_connect,
    Command.HELO[0]: _parse_helo,
    Command.MAIL[0]: _parse_mail,
    Command.RCPT[0]: _parse_rcpt,
    Command.HEADER[0]: _parse_header,
    Command.BODY[0]: _parse_body,
    Command.END_OF_MESSAGE[0]: _parse_end_of_message,
    Command.UNKNOWN[0]: _parse_unknown,
    **{code: _no_data for code in _BARE_COMMANDS},
}
_REPLY_PARSERS: Final[dict[int, _Parser]] = {
    Reply.NEGOTIATE[0]: _parse_negotiate,
    Reply.REPLY_CODE[0]: _parse_reply_code,
    Reply.QUARANTINE[0]: _parse_quarantine,
    Reply.ADD_HEADER[0]: _parse_add_header,
    Reply.INSERT_HEADER[0]: _parse_insert_header,
    Reply.CHANGE_HEADER[0]: _parse_change_header,
    Reply.ADD_RECIPIENT[0]: _parse_add_recipient,
    Reply.ADD_RECIPIENT_WITH_ARGS[0]: _parse_add_recipient_with_args,
    Reply.DELETE_RECIPIENT[0]: _parse_delete_recipient,
    Reply.CHANGE_FROM[0]: _parse_change_from,
    Reply.REPLACE_BODY[0]: _parse_replace_body,
    Reply.SET_SYMBOL_LIST[0]: _parse_set_symbol_list,
    **{code: _no_data for code in _BARE_REPLIES},
}


# ---------------------------------------------------------------- decoder


class Decoder:
    """Turns the byte stream of one connection into messages, one at a time."""

    __slots__ = (
        "_bare",
        "_bare_packets",
        "_buf",
        "_error",
        "_kind",
        "_limit",
        "_parsers",
        "_pos",
        "direction",
    )

    def __init__(
        self, direction: Direction, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    ) -> None:
        if max_packet_size < 1:
            raise ValueError(f"max_packet_size must be at least 1, got {max_packet_size}")
        self.direction = direction
        self._limit = max_packet_size
        self._buf = _NO_BYTES  # a bytearray of its own once bytes wait in it
        self._pos = 0
        self._error: ProtocolError | None = None
        if direction is Direction.COMMANDS:
            self._parsers, self._bare, self._kind = _COMMAND_PARSERS, _BARE_COMMANDS, "command"
            self._bare_packets = _BARE_COMMAND_PACKETS
        else:
            self._parsers, self._bare, self._kind = _REPLY_PARSERS, _BARE_REPLIES, "reply"
            self._bare_packets = _BARE_REPLY_PACKETS

    @property
    def max_packet_size(self) -> int:
        """The largest packet it takes (a decoder for the same peer takes the same)."""
        return self._limit

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet returned as a message (non-zero at EOF = truncated)."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the socket, as they came; ``next_message`` takes them apart."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        if buf is _NO_BYTES:
            self._buf = bytearray(data)
            return
        if self._pos:
            # Drop what was consumed in one go; deleting from the front of a
            # bytearray only moves its start, so this stays linear overall.
            del buf[: self._pos]
            self._pos = 0
        buf += data

    def feed(self, data: bytes) -> list[Message]:
        """``receive_data`` and ``messages`` in one call (the adapters' form). A lone
        packet without data (continue, accept, end-of-header, ...) on an empty buffer is
        looked up as it is, without going through the buffer: most of the replies in a
        session come so, one per read."""
        if len(data) == 5 and not self._buf and type(data) is bytes and self._error is None:
            bare = self._bare_packets.get(data)
            if bare is not None:
                return [bare]
        self.receive_data(data)
        return self._decode(-1)

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed."""
        found = self._decode(1)
        return found[0] if found else None

    def messages(self) -> list[Message]:
        """Every complete message received so far, at once (the hot path's form: no call
        per message, and none that finds nothing).

        A stream that breaks the protocol after good messages gives those first; the
        next call raises the error, as ``next_message`` would.
        """
        return self._decode(-1)

    def _decode(self, most: int) -> list[Message]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        size = len(buf)
        found: list[Message] = []
        while most and size - pos >= 4:
            (length,) = _UINT32.unpack_from(buf, pos)
            if length > self._limit or length == 0:
                # Checked as soon as the prefix is in, so garbage fails fast.
                return self._failed(
                    found,
                    PacketTooLarge(length, self._limit)
                    if length
                    else MalformedPacket(None, "length is zero (no code byte)"),
                )
            end = pos + 4 + length
            if size < end:
                break
            code = buf[pos + 4]
            self._pos = end
            most -= 1
            if length == 1:
                bare = self._bare.get(code)
                if bare is not None:
                    found.append(bare)
                    pos = end
                    continue
            parser = self._parsers.get(code)
            if parser is None:
                return self._failed(
                    found, MalformedPacket(bytes((code,)), f"unknown {self._kind} code")
                )
            try:
                found.append(parser(buf[pos + 5 : end]))
            except _Bad as exc:
                return self._failed(found, MalformedPacket(bytes((code,)), str(exc)))
            pos = end
        if pos == size and size:
            # all taken: let the buffer go now rather than at the next read (an idle
            # connection would hold its last packets, and an empty bytearray each)
            self._buf = _NO_BYTES
            self._pos = 0
        return found

    @property
    def error(self) -> ProtocolError | None:
        """What broke the stream: raised by the next call (None while it is sound)."""
        return self._error

    def _failed(self, found: list[Message], error: ProtocolError) -> list[Message]:
        """The good messages before a broken one first; the error at once if there are none."""
        self._error = error
        if not found:
            raise error
        return found


# ---------------------------------------------------------------- encoder
#
# Each encoder returns the whole packet. Text fields go through _field, which
# refuses a NUL (it would end the field early and shift every later one).


def _field(value: str, what: str) -> bytes:
    if "\0" in value:
        raise EncodeError(f"{what} contains a NUL character: {value!r}")
    return value.encode(_TEXT, _ERRORS)


def _packet(code: bytes, payload: bytes) -> bytes:
    return _HEAD.pack(len(payload) + 1, code) + payload


def _encode_negotiate(m: Negotiate) -> bytes:
    parts = [_OPTNEG.pack(m.version, int(m.actions), int(m.steps))]
    for stage in sorted(m.symbol_lists):
        parts.append(_UINT32.pack(int(stage)))
        parts.append(_field(m.symbol_lists[stage], "symbol list") + b"\0")
    return _packet(b"O", b"".join(parts))


def _encode_macro(m: Macro) -> bytes:
    if m.wire:
        return m.wire
    if len(m.command) != 1:
        raise EncodeError(f"macro command must be one byte, got {m.command!r}")
    parts = [m.command]
    for name, value in m.macros:
        parts.append(_field(name, "macro name") + b"\0")
        parts.append(_field(value, "macro value") + b"\0")
    return _packet(b"D", b"".join(parts))


def _encode_connect(m: Connect) -> bytes:
    # Family 'U' carries neither port nor address: those fields are not sent.
    head = _field(m.hostname, "hostname") + b"\0" + m.family.value
    if m.family is Family.UNKNOWN:
        return _packet(b"C", head)
    return _packet(b"C", head + _PORT.pack(m.port) + _field(m.address, "address") + b"\0")


def _joined(code: bytes, values: Iterable[str], what: str) -> bytes:
    return _packet(code, b"".join(_field(v, what) + b"\0" for v in values))


def _encode_mail(m: Mail) -> bytes:
    if not m.args:
        raise EncodeError("MAIL needs at least the sender")
    return _joined(b"M", m.args, "MAIL argument")


def _encode_rcpt(m: Rcpt) -> bytes:
    if not m.args:
        raise EncodeError("RCPT needs at least the recipient")
    return _joined(b"R", m.args, "RCPT argument")


def _one(code: bytes, value: str, what: str) -> bytes:
    return _packet(code, _field(value, what) + b"\0")


def _two(code: bytes, first: str, second: str, what: str) -> bytes:
    return _packet(code, _field(first, what) + b"\0" + _field(second, what) + b"\0")


def _optional_second(code: bytes, first: str, second: str, what: str) -> bytes:
    # libmilter leaves the argument string out when there is none; Postfix reads both forms.
    if not second:
        return _one(code, first, what)
    return _two(code, first, second, what)


def _indexed(code: bytes, index: int, name: str, value: str) -> bytes:
    return _packet(
        code,
        _UINT32.pack(index) + _field(name, "header name") + b"\0"
        + _field(value, "header value") + b"\0",
    )


def _encode_set_symbol_list(m: SetSymbolList) -> bytes:
    return _packet(b"l", _UINT32.pack(int(m.stage)) + _field(m.symbols, "symbol list") + b"\0")


def _bare(code: bytes) -> Callable[[Any], bytes]:
    packet = _packet(code, b"")
    return lambda _m: packet


_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    Negotiate: _encode_negotiate,
    Macro: _encode_macro,
    Connect: _encode_connect,
    Helo: lambda m: _one(b"H", m.name, "HELO name"),
    Mail: _encode_mail,
    Rcpt: _encode_rcpt,
    Data: _bare(b"T"),
    Header: lambda m: _two(b"L", m.name, m.value, "header"),
    EndOfHeaders: _bare(b"N"),
    Body: lambda m: _packet(b"B", bytes(m.chunk)),
    EndOfMessage: lambda m: _packet(b"E", bytes(m.chunk)),
    Abort: _bare(b"A"),
    Quit: _bare(b"Q"),
    QuitNewConnection: _bare(b"K"),
    Unknown: lambda m: _one(b"U", m.command, "SMTP command"),
    Accept: _bare(b"a"),
    Continue: _bare(b"c"),
    Reject: _bare(b"r"),
    Tempfail: _bare(b"t"),
    Discard: _bare(b"d"),
    ConnectionFail: _bare(b"f"),
    Shutdown: _bare(b"4"),
    Skip: _bare(b"s"),
    Progress: _bare(b"p"),
    ReplyCode: lambda m: _one(b"y", m.text, "reply text"),
    Quarantine: lambda m: _one(b"q", m.reason, "quarantine reason"),
    AddHeader: lambda m: _two(b"h", m.name, m.value, "header"),
    InsertHeader: lambda m: _indexed(b"i", m.index, m.name, m.value),
    ChangeHeader: lambda m: _indexed(b"m", m.index, m.name, m.value),
    AddRecipient: lambda m: _one(b"+", m.recipient, "recipient"),
    AddRecipientWithArgs: lambda m: _optional_second(b"2", m.recipient, m.args, "recipient"),
    DeleteRecipient: lambda m: _one(b"-", m.recipient, "recipient"),
    ChangeFrom: lambda m: _optional_second(b"e", m.sender, m.args, "sender"),
    ReplaceBody: lambda m: _packet(b"b", bytes(m.chunk)),
    SetSymbolList: _encode_set_symbol_list,
}


def encode(message: Message) -> bytes:
    """The whole packet (length prefix included) for one message."""
    try:
        encoder = _ENCODERS[type(message)]
    except KeyError:
        raise EncodeError(f"not a milter message: {message!r}") from None
    try:
        return encoder(message)
    except (struct.error, UnicodeEncodeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {message!r}: {exc}") from exc


def encode_many(messages: Iterable[Message]) -> bytes:
    """Several packets in one buffer, so that they go out in one write (e.g. MACRO + CONNECT)."""
    return b"".join(map(encode, messages))
