"""The MTA side of one milter session over asyncio, as a test tool needs it.

It plays Postfix toward a single milter: negotiate, then connect .. end-of-message
with the macros an MTA sends, honouring the milter's step flags (events it does
not want, replies it will not send). It collects the verdict and the changes;
applying the changes to a message is the caller's business, so this module
stays small and the output tool stays pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, ProtocolError, encode
from mmd.protocol.constants import (
    ALL_ACTIONS,
    ALL_STEPS,
    DEFAULT_MAX_PACKET_SIZE,
    MAX_BODY_CHUNK,
    Command,
    Family,
    Step,
)

# ---------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A parsed ``unix:PATH`` / ``inet:PORT@HOST`` / ``inet6:PORT@HOST`` spec."""

    family: Family
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.family is Family.UNIX:
            return f"unix:{self.path}"
        kind = "inet" if self.family is Family.INET else "inet6"
        return f"{kind}:{self.port}@{self.host}"


class SpecError(ValueError):
    """A connection spec that cannot be parsed."""


def parse_connection_spec(spec: str) -> ConnectionSpec:
    """Parse the classic spec syntax; a bare absolute path means ``unix:PATH``."""
    if spec.startswith("/"):
        spec = "unix:" + spec
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise SpecError(f"invalid connection spec: <{spec}>")
    kind = kind.lower()
    if kind in ("unix", "local"):
        return ConnectionSpec(Family.UNIX, path=rest)
    if kind not in ("inet", "inet6"):
        raise SpecError(f"invalid connection spec type: <{kind}>: <{spec}>")
    port_text, _, host = rest.partition("@")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SpecError(f"invalid port number: <{port_text}>: <{spec}>")
    host = host.removeprefix("[").removesuffix("]")
    family = Family.INET if kind == "inet" else Family.INET6
    if not host:
        host = "127.0.0.1" if family is Family.INET else "::1"
    return ConnectionSpec(family, host=host, port=int(port_text))


# ---------------------------------------------------------------- session input/output


STAGE_COMMANDS: dict[str, Command] = {
    "connect": Command.CONNECT,
    "helo": Command.HELO,
    "envelope-from": Command.MAIL,
    "envelope-recipient": Command.RCPT,
    "unknown": Command.UNKNOWN,
    "data": Command.DATA,
    "end-of-header": Command.END_OF_HEADERS,
    "end-of-message": Command.END_OF_MESSAGE,
}


@dataclass(slots=True)
class SessionInput:
    """Everything the MTA side tells the milter during one session."""

    connect_host: str
    connect_address: ConnectionSpec
    helo_fqdn: str
    envelope_from: str
    recipients: Sequence[str]
    headers: Sequence[tuple[str, str]]
    body_chunks: Sequence[bytes]
    # stage name (keys of STAGE_COMMANDS) -> macros sent before that stage's command
    macros: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # recipient -> macros sent before that recipient's RCPT (after the stage's own)
    recipient_macros: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    unknown_command: str | None = None
    negotiate_version: int = 6


@dataclass(frozen=True, slots=True)
class Timeouts:
    connection: float = 300.0
    reading: float = 10.0
    writing: float = 10.0
    end_of_message: float = 300.0


@dataclass(frozen=True, slots=True)
class ReplyText:
    """A SMFIR_REPLYCODE split like the classic tool prints it."""

    code: int
    extended_code: str | None
    message: str | None


_EXTENDED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def split_reply_code(text: str) -> ReplyText:
    """``550 5.7.1 Blocked`` -> (550, ``5.7.1``, ``Blocked``)."""
    code_text, rest = text[:3], text[4:]
    code = int(code_text) if code_text.isdigit() else 0
    first, _, remainder = rest.partition(" ")
    if _EXTENDED_CODE.fullmatch(first):
        return ReplyText(code, first, remainder or None)
    return ReplyText(code, None, rest or None)


@dataclass(slots=True)
class SessionResult:
    """What the milter decided. ``status`` uses the tool's names."""

    status: str = "pass"
    reply: ReplyText | None = None
    quarantine_reason: str | None = None
    changes: list[m.Modification] = field(default_factory=list)
    rejected_recipients: list[str] = field(default_factory=list)
    negotiated: m.Negotiate | None = None
    progress_count: int = 0
    elapsed: float = 0.0
    error: str | None = None


class ConnectError(OSError):
    """The milter could not be reached."""


class SessionError(Exception):
    """The session broke off: timeout, closed connection or protocol error."""


_FINAL = {
    m.Accept: "accept",
    m.Reject: "reject",
    m.Tempfail: "temporary-failure",
    m.Discard: "discard",
    m.ConnectionFail: "temporary-failure",
    m.Shutdown: "temporary-failure",
}


# ---------------------------------------------------------------- connection

Trace = Callable[[str, m.Message], None]


class MilterConnection:
    """One connection to a milter: packets out, replies in, with timeouts."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeouts: Timeouts,
        trace: Trace | None = None,
    ) -> None:
        self._trace = trace
        self._reader = reader
        self._writer = writer
        self._timeouts = timeouts
        self._decoder = Decoder(Direction.REPLIES, DEFAULT_MAX_PACKET_SIZE)

    @classmethod
    async def open(
        cls, spec: ConnectionSpec, timeouts: Timeouts, trace: Trace | None = None
    ) -> MilterConnection:
        try:
            if spec.family is Family.UNIX:
                coro = asyncio.open_unix_connection(spec.path)
            else:
                coro = asyncio.open_connection(spec.host, spec.port)
            reader, writer = await asyncio.wait_for(coro, timeouts.connection)
        except TimeoutError as error:
            raise ConnectError("connection timeout") from error
        except OSError as error:
            raise ConnectError(error.strerror or str(error)) from error
        return cls(reader, writer, timeouts, trace)

    async def send(self, *messages: m.CommandMessage) -> None:
        if self._trace is not None:
            for message in messages:
                self._trace("send", message)
        self._writer.write(b"".join(encode(message) for message in messages))
        try:
            await asyncio.wait_for(self._writer.drain(), self._timeouts.writing)
        except TimeoutError as error:
            raise SessionError("writing timeout") from error
        except OSError as error:
            raise SessionError(f"failed to write: {error}") from error

    async def receive(self, timeout: float, what: str = "reading") -> m.Message:
        while True:
            try:
                message = self._decoder.next_message()
            except ProtocolError as error:
                raise SessionError(f"protocol error: {error}") from error
            if message is not None:
                if self._trace is not None:
                    self._trace("receive", message)
                return message
            try:
                data = await asyncio.wait_for(self._reader.read(65536), timeout)
            except TimeoutError as error:
                raise SessionError(f"{what} timeout") from error
            except OSError as error:
                raise SessionError(f"failed to read: {error}") from error
            if not data:
                raise SessionError("the milter closed the connection")
            self._decoder.receive_data(data)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


# ---------------------------------------------------------------- session


class _Stop(Exception):
    """The session ended early with a final verdict."""


class MtaSession:
    """Drives one session; the milter's step flags decide what is sent and awaited."""

    def __init__(self, connection: MilterConnection, data: SessionInput, timeouts: Timeouts):
        self._connection = connection
        self._data = data
        self._timeouts = timeouts
        self._steps = Step(0)
        self._version = data.negotiate_version
        self.result = SessionResult()
        self._skip_body = False
        self._recipient = ""

    async def run(self) -> SessionResult:
        started = time.monotonic()
        try:
            await self._negotiate()
            await self._envelope()
            await self._message()
            await self._say_goodbye(m.Quit())
        except _Stop:
            await self._say_goodbye(m.Abort(), m.Quit())
        finally:
            self.result.elapsed = time.monotonic() - started
        return self.result

    async def _say_goodbye(self, *messages: m.CommandMessage) -> None:
        # the verdict is known: a milter that already hung up changes nothing
        with contextlib.suppress(SessionError):
            await self._connection.send(*messages)

    async def _negotiate(self) -> None:
        offer = m.Negotiate(self._data.negotiate_version, ALL_ACTIONS, ALL_STEPS)
        await self._connection.send(offer)
        reply = await self._connection.receive(self._timeouts.reading)
        if not isinstance(reply, m.Negotiate):
            raise SessionError(f"expected a negotiate reply, got {type(reply).__name__}")
        self.result.negotiated = reply
        self._steps = reply.steps
        self._version = min(self._version, reply.version)

    def _macros(self, stage: str) -> list[m.CommandMessage]:
        pairs = list(self._data.macros.get(stage, []))
        if stage == "envelope-recipient":
            pairs += self._data.recipient_macros.get(self._recipient, [])
        if not pairs:
            return []
        return [m.Macro(STAGE_COMMANDS[stage].value, tuple(pairs))]

    async def _step(
        self, stage: str, command: m.CommandMessage, no_event: Step, no_reply: Step,
        macros: bool = True,
    ) -> type[m.Message] | None:
        """Send one event; return the verdict's type, or None if none was awaited."""
        if no_event and self._steps & no_event:
            return None
        await self._connection.send(*(self._macros(stage) if macros else []), command)
        if no_reply and self._steps & no_reply:
            return None
        return await self._verdict(stage)

    async def _verdict(self, stage: str) -> type[m.Message]:
        eom = stage == "end-of-message"
        timeout = self._timeouts.end_of_message if eom else self._timeouts.reading
        what = "end-of-message" if eom else "reading"
        while True:
            reply = await self._connection.receive(timeout, what)
            if isinstance(reply, m.Progress):
                self.result.progress_count += 1
                continue
            if isinstance(reply, m.Quarantine):
                self.result.quarantine_reason = reply.reason
                self.result.changes.append(reply)
                continue
            if isinstance(
                reply,
                m.AddHeader | m.InsertHeader | m.ChangeHeader | m.AddRecipient
                | m.AddRecipientWithArgs | m.DeleteRecipient | m.ChangeFrom | m.ReplaceBody,
            ):
                if not eom:
                    raise SessionError(
                        f"protocol error: {type(reply).__name__} outside end-of-message"
                    )
                self.result.changes.append(reply)
                continue
            if isinstance(reply, m.ReplyCode):
                text = split_reply_code(reply.text)
                self.result.reply = text
                return m.Tempfail if 400 <= text.code < 500 else m.Reject
            if isinstance(reply, m.Continue | m.Skip | m.Accept | m.Reject | m.Tempfail
                          | m.Discard | m.ConnectionFail | m.Shutdown):
                return type(reply)
            raise SessionError(f"unexpected reply {type(reply).__name__} at {stage}")

    def _finish_if_final(self, verdict: type[m.Message] | None) -> None:
        if verdict is None or verdict in (m.Continue, m.Skip):
            return
        self.result.status = _FINAL[verdict]
        raise _Stop

    async def _envelope(self) -> None:
        data = self._data
        address = data.connect_address
        if address.family is Family.UNIX:
            connect = m.Connect(data.connect_host, Family.UNIX, 0, address.path)
        else:
            connect = m.Connect(data.connect_host, address.family, address.port, address.host)
        self._finish_if_final(
            await self._step("connect", connect, Step.NO_CONNECT, Step.NO_REPLY_CONNECT))
        self._finish_if_final(await self._step(
            "helo", m.Helo(data.helo_fqdn), Step.NO_HELO, Step.NO_REPLY_HELO))
        self._finish_if_final(await self._step(
            "envelope-from", m.Mail((data.envelope_from,)), Step.NO_MAIL, Step.NO_REPLY_MAIL))
        accepted = 0
        last = "reject"
        for recipient in data.recipients:
            self._recipient = recipient
            verdict = await self._step(
                "envelope-recipient", m.Rcpt((recipient,)), Step.NO_RCPT, Step.NO_REPLY_RCPT)
            if verdict in (m.Reject, m.Tempfail):
                # like an MTA: a refused recipient does not end the transaction
                self.result.rejected_recipients.append(recipient)
                last = _FINAL[verdict]
                continue
            self._finish_if_final(verdict)
            accepted += 1
        if data.recipients and accepted == 0:
            self.result.status = last
            raise _Stop
        self.result.reply = None if accepted else self.result.reply
        if data.unknown_command is not None:
            self._finish_if_final(await self._step(
                "unknown", m.Unknown(data.unknown_command), Step.NO_UNKNOWN,
                Step.NO_REPLY_UNKNOWN))
        if self._version > 2:
            self._finish_if_final(
                await self._step("data", m.Data(), Step.NO_DATA, Step.NO_REPLY_DATA))

    async def _message(self) -> None:
        leading_space = bool(self._steps & Step.HEADER_LEADING_SPACE)
        for name, value in self._data.headers:
            sent = " " + value if leading_space else value
            self._finish_if_final(await self._step(
                "header", m.Header(name, sent), Step.NO_HEADERS, Step.NO_REPLY_HEADER,
                macros=False))
        self._finish_if_final(await self._step(
            "end-of-header", m.EndOfHeaders(), Step.NO_END_OF_HEADERS,
            Step.NO_REPLY_END_OF_HEADERS))
        for chunk in self._data.body_chunks:
            for start in range(0, max(len(chunk), 1), MAX_BODY_CHUNK):
                verdict = await self._step(
                    "body", m.Body(chunk[start:start + MAX_BODY_CHUNK]), Step.NO_BODY,
                    Step.NO_REPLY_BODY, macros=False)
                if verdict is m.Skip:
                    self._skip_body = True
                    break
                self._finish_if_final(verdict)
            if self._skip_body:
                break
        await self._connection.send(*self._macros("end-of-message"), m.EndOfMessage())
        verdict = await self._verdict("end-of-message")
        self.result.status = "pass" if verdict in (m.Continue, m.Skip) else _FINAL[verdict]


async def run_session(
    spec: ConnectionSpec, data: SessionInput, timeouts: Timeouts, trace: Trace | None = None
) -> SessionResult:
    """Connect, run one session and close. Raises ConnectError or SessionError."""
    connection = await MilterConnection.open(spec, timeouts, trace)
    try:
        return await MtaSession(connection, data, timeouts).run()
    finally:
        await connection.close()
