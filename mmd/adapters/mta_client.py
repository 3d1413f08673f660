"""The MTA side of one milter session over asyncio, as a test tool needs it.

It plays Postfix toward a single milter: negotiate, then connect .. end-of-message
with the macros an MTA sends. What the milter is sent and which replies are due
(its step flags) and what a reply means are the engine's ``ChildConversation``'s
answers, the same the manager uses for its children. It collects the verdict
and the changes; applying the changes to a message is the caller's business, so
this module stays small and the output tool stays pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mmd.config.connection_spec import ConnectionSpec, UnixSpec
from mmd.engine.conversation import ChildConversation, ChildProtocolError, ChildSettings
from mmd.engine.stages import STAGES, Stage
from mmd.engine.verdict import Verdict
from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, EncodeError, ProtocolError, encode
from mmd.protocol.constants import (
    ALL_ACTIONS,
    ALL_STEPS,
    DEFAULT_MAX_PACKET_SIZE,
    MAX_BODY_CHUNK,
    Family,
)

# ---------------------------------------------------------------- session input/output


# stage name -> the letter its MACRO packet names (the stages a tool may send macros at)
STAGE_COMMANDS: dict[str, bytes] = {
    info.stage.value: info.code
    for info in STAGES.values()
    if info.stage not in (Stage.HEADER, Stage.BODY)
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
    """The four timeouts of the classic tool, in seconds."""

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


_GOES_ON = frozenset({Verdict.CONTINUE, Verdict.SKIP})
_REFUSED = frozenset({Verdict.REJECT, Verdict.TEMPFAIL})


def _tool_words(error: ChildProtocolError) -> str:
    """The tool's own wording of a protocol violation (the classic test server's)."""
    if error.kind == "negotiate":
        return f"expected a negotiate reply, got {error.reply}"
    if error.kind == "outside":
        return f"protocol error: {error.reply} outside end-of-message"
    if error.kind == "action":
        return f"protocol error: {error}"
    stage = error.stage.value if error.stage is not None else "no stage"
    return f"unexpected reply {error.reply} at {stage}"


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
        """Connect within the connection timeout; ConnectError says why not."""
        try:
            if isinstance(spec, UnixSpec):
                coro = asyncio.open_unix_connection(spec.path)
            else:
                coro = asyncio.open_connection(spec.connect_host(), spec.port)
            reader, writer = await asyncio.wait_for(coro, timeouts.connection)
        except TimeoutError as error:
            raise ConnectError("connection timeout") from error
        except OSError as error:
            raise ConnectError(error.strerror or str(error)) from error
        return cls(reader, writer, timeouts, trace)

    async def send(self, *messages: m.CommandMessage) -> None:
        """Write ``messages`` in one go and wait until the socket took them."""
        if self._trace is not None:
            for message in messages:
                self._trace("send", message)
        try:
            data = b"".join(encode(message) for message in messages)
        except EncodeError as error:
            raise SessionError(f"cannot send: {error}") from error
        self._writer.write(data)
        try:
            await asyncio.wait_for(self._writer.drain(), self._timeouts.writing)
        except TimeoutError as error:
            raise SessionError("writing timeout") from error
        except OSError as error:
            raise SessionError(f"failed to write: {error}") from error

    async def receive(self, timeout: float, what: str = "reading") -> m.Message:
        """The next reply; SessionError on a timeout, a close or a malformed packet."""
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
        """Close the connection (a milter that left already changes nothing)."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


# ---------------------------------------------------------------- session


class _Stop(Exception):
    """The session ended early with a final verdict."""


class MtaSession:
    """Drives one session; the milter's ``ChildConversation`` decides what is sent and awaited."""

    def __init__(self, connection: MilterConnection, data: SessionInput, timeouts: Timeouts):
        self._connection = connection
        self._data = data
        self._timeouts = timeouts
        self._conversation = ChildConversation(0, ChildSettings("milter"))
        self._version = data.negotiate_version
        self.result = SessionResult()
        self._recipient = ""

    async def run(self) -> SessionResult:
        """The whole session, QUIT included; the result says what the milter decided."""
        started = time.monotonic()
        try:
            await self._negotiate()
            await self._envelope()
            await self._message()
            await self._say_goodbye(m.Quit())
        except _Stop:
            await self._say_goodbye(m.Abort(), m.Quit())
        except ChildProtocolError as error:
            raise SessionError(_tool_words(error)) from error
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
        self._conversation.negotiated(reply, int(offer.actions))  # type: ignore[arg-type]
        assert isinstance(reply, m.Negotiate)
        self.result.negotiated = reply
        self._version = min(self._version, reply.version)

    def _macros(self, stage: Stage) -> list[m.CommandMessage]:
        pairs = list(self._data.macros.get(stage.value, []))
        if stage is Stage.RCPT:
            pairs += self._data.recipient_macros.get(self._recipient, [])
        if not pairs:
            return []
        return [m.Macro(STAGE_COMMANDS[stage.value], tuple(pairs))]

    async def _step(self, command: m.CommandMessage) -> Verdict | None:
        """Send one event; return the verdict, or None if none was awaited."""
        info = STAGES[type(command)]
        conversation = self._conversation
        if not conversation.wants(info):
            return None
        stage = info.stage
        macros = [] if stage in (Stage.HEADER, Stage.BODY) else self._macros(stage)
        await self._connection.send(*macros, command)
        if not conversation.replies(info):
            return None
        conversation.awaiting = stage
        return await self._verdict(stage)

    async def _verdict(self, stage: Stage) -> Verdict:
        eom = stage is Stage.END_OF_MESSAGE
        timeout = self._timeouts.end_of_message if eom else self._timeouts.reading
        what = "end-of-message" if eom else "reading"
        result = self.result
        while True:
            reply = await self._connection.receive(timeout, what)
            verdict = self._conversation.answer(stage, reply)  # type: ignore[arg-type]
            if verdict is not None:
                if isinstance(reply, m.ReplyCode):
                    result.reply = split_reply_code(reply.text)
                return verdict
            if isinstance(reply, m.Progress):
                result.progress_count += 1
                continue
            if isinstance(reply, m.Quarantine):
                result.quarantine_reason = reply.reason
            result.changes.append(reply)  # type: ignore[arg-type]

    def _finish_if_final(self, verdict: Verdict | None) -> None:
        if verdict is None or verdict in _GOES_ON:
            return
        self.result.status = verdict.label
        raise _Stop

    async def _envelope(self) -> None:
        data = self._data
        address = data.connect_address
        if isinstance(address, UnixSpec):
            connect = m.Connect(data.connect_host, Family.UNIX, 0, address.path)
        else:
            family = Family.INET6 if address.family == "inet6" else Family.INET
            connect = m.Connect(data.connect_host, family, address.port, address.connect_host())
        self._finish_if_final(await self._step(connect))
        self._finish_if_final(await self._step(m.Helo(data.helo_fqdn)))
        self._finish_if_final(await self._step(m.Mail((data.envelope_from,))))
        accepted = 0
        last = "reject"
        for recipient in data.recipients:
            self._recipient = recipient
            verdict = await self._step(m.Rcpt((recipient,)))
            if verdict in _REFUSED:
                # like an MTA: a refused recipient does not end the transaction
                assert verdict is not None
                self.result.rejected_recipients.append(recipient)
                last = verdict.label
                continue
            self._finish_if_final(verdict)
            accepted += 1
        if data.recipients and accepted == 0:
            self.result.status = last
            raise _Stop
        self.result.reply = None if accepted else self.result.reply
        if data.unknown_command is not None:
            self._finish_if_final(await self._step(m.Unknown(data.unknown_command)))
        if self._version > 2:
            self._finish_if_final(await self._step(m.Data()))

    async def _message(self) -> None:
        leading_space = self._conversation.leading_space
        for name, value in self._data.headers:
            sent = " " + value if leading_space else value
            self._finish_if_final(await self._step(m.Header(name, sent)))
        self._finish_if_final(await self._step(m.EndOfHeaders()))
        skipped = False
        for chunk in self._data.body_chunks:
            for start in range(0, max(len(chunk), 1), MAX_BODY_CHUNK):
                verdict = await self._step(m.Body(chunk[start : start + MAX_BODY_CHUNK]))
                if verdict is Verdict.SKIP:
                    skipped = True
                    break
                self._finish_if_final(verdict)
            if skipped:
                break
        verdict = await self._step(m.EndOfMessage())
        assert verdict is not None  # end-of-message is always answered
        self.result.status = "pass" if verdict in _GOES_ON else verdict.label


async def run_session(
    spec: ConnectionSpec, data: SessionInput, timeouts: Timeouts, trace: Trace | None = None
) -> SessionResult:
    """Connect, run one session and close. Raises ConnectError or SessionError."""
    connection = await MilterConnection.open(spec, timeouts, trace)
    try:
        return await MtaSession(connection, data, timeouts).run()
    finally:
        await connection.close()
