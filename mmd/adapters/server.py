"""The MTA side: listening sockets and one protocol object per MTA connection.

This is the per-packet hot path. Bytes from the MTA are decoded and handed
to the session engine; the engine's actions are carried out at once, with no
awaits in between, so the order the engine chose is the order on the wire.
Child replies come back the same way through ``ChildLink`` callbacks.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, cast

from mmd.adapters.children import ChildLink
from mmd.config.connection_spec import InetSpec, parse_connection_spec
from mmd.config.model import ManagerConfig, MilterConfig
from mmd.engine.applicability import SessionFacts, Stage
from mmd.engine.message import SpooledBody
from mmd.engine.session import (
    Action,
    ChildFinished,
    ChildSettings,
    CloseChild,
    ConditionSkipped,
    Session,
    SessionFinished,
    SessionSettings,
    ToChild,
    ToMta,
)
from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, ProtocolError, encode


@dataclass(frozen=True, slots=True)
class Generation:
    """One loaded configuration: new sessions take the newest, old ones keep theirs."""

    manager: ManagerConfig
    milters: tuple[MilterConfig, ...]
    children: tuple[ChildSettings, ...]
    session_settings: SessionSettings
    number: int = 0


class Recorder(Protocol):
    """Where finished sessions and children's verdicts go (journal + statistics)."""

    def session_started(self, session_id: int, active: int) -> None: ...

    def child_finished(self, record: ChildVerdictRecord) -> None: ...

    def condition_skipped(
        self, session_id: int, facts: SessionFacts, event: ConditionSkipped
    ) -> None: ...

    def session_finished(self, record: SessionRecord) -> None: ...

    def child_error(self, session_id: int, milter: str, reason: str) -> None: ...

    def mta_error(self, session_id: int, reason: str) -> None: ...

    def header_added(self, session_id: int, name: str, value: str) -> None: ...


# Header changes the statistics report reads back from the journal (spam, virus, greylist,
# SPF, DKIM); other headers are not recorded, to keep the hot path and the journal lean.
_HEADER_CHANGES = (m.AddHeader, m.InsertHeader, m.ChangeHeader)
_REPORTED_HEADERS = frozenset({"x-greylist", "received-spf", "authentication-results",
                               "dkim-signature"})
_REPORTED_PREFIXES = ("x-spam-", "x-virus-")


def reported_header(name: str) -> bool:
    """True for the header names the statistics report counts."""
    lowered = name.lower()
    return lowered in _REPORTED_HEADERS or lowered.startswith(_REPORTED_PREFIXES)


@dataclass(frozen=True, slots=True)
class ChildVerdictRecord:
    session_id: int
    milter: str
    stage: str
    status: str
    elapsed: float
    reason: str
    queue_id: str
    client_address: str
    client_name: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: int
    stage: str
    status: str
    elapsed: float
    disconnected: bool
    queue_id: str
    client_address: str
    client_name: str


@dataclass
class ServerState:
    """What every MTA connection shares: the current generation and counters."""

    generation: Generation
    recorder: Recorder
    active: int = 0
    total: int = 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    connections: set[MtaProtocol] = field(default_factory=set)
    # connections over max_connections wait here, unread, until a session ends
    waiting: deque[MtaProtocol] = field(default_factory=deque)


_NOBODY = -1
_MTA = -2


class MtaProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None

    # ------------------------------------------------------------ MTA side

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's do not subclass asyncio.Transport, hence no isinstance)
        transport = cast(asyncio.Transport, base)
        self._transport = transport
        self._started_session = False
        state = self._state
        limit = state.generation.manager.max_connections
        if limit and state.active >= limit:
            # after the transport's own first "start reading" (Python 3.11 would undo it)
            asyncio.get_running_loop().call_soon(transport.pause_reading)
            self._early: list[bytes] = []
            state.waiting.append(self)
            return
        self._start()

    def _start(self) -> None:
        state = self._state
        generation = state.generation
        manager = generation.manager
        self._decoder = Decoder(Direction.COMMANDS, manager.max_packet_size)
        limit = manager.body_memory_limit
        state.active += 1
        state.idle.clear()
        state.connections.add(self)
        facts = SessionFacts(active_sessions=state.active)
        self._session = Session(
            generation.children,
            generation.session_settings,
            body_factory=lambda: SpooledBody(limit),
            facts=facts,
        )
        self._links = [
            ChildLink(i, milter, self._child_reply, self._child_failed, manager.max_packet_size)
            for i, milter in enumerate(generation.milters)
        ]
        self._started_session = True
        self._begin()

    def _begin(self) -> None:
        state = self._state
        state.total += 1
        self._session_id = next(state.ids)
        self._started = time.monotonic()
        state.recorder.session_started(self._session_id, state.active)

    def data_received(self, data: bytes) -> None:
        if not self._started_session:
            self._early.append(data)  # raced the pause: keep it for when the session starts
            return
        decoder = self._decoder
        decoder.receive_data(data)
        session = self._session
        while True:
            try:
                command = decoder.next_message()
            except ProtocolError as error:
                self._state.recorder.mta_error(
                    self._session_id, f"protocol error from MTA: {error}"
                )
                self._close_mta()
                return
            if command is None or session.finished:
                return
            self._carry_out(session.from_mta(command))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        if not self._started_session:
            if self in state.waiting:
                state.waiting.remove(self)
            return
        if not self._session.finished:
            self._carry_out(self._session.mta_closed())
        for link in self._links:
            link.close()
        state.active -= 1
        state.connections.discard(self)
        while state.waiting:
            waiting = state.waiting.popleft()
            if waiting._transport is not None and not waiting._transport.is_closing():
                waiting._start()
                for data in waiting._early:
                    waiting.data_received(data)
                waiting._transport.resume_reading()
                break
        if state.active == 0:
            state.idle.set()

    def _close_mta(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------ children

    def _child_reply(self, index: int, reply: m.ReplyMessage) -> None:
        self._carry_out(self._session.from_child(index, reply))

    def _child_failed(self, index: int, reason: str) -> None:
        # logged as an error when the engine reports the child's end (ChildFinished.failed),
        # like the failures only the engine sees (a reply that breaks the protocol)
        self._carry_out(self._session.child_failed(index, reason))

    # ------------------------------------------------------------ actions

    def _carry_out(self, actions: list[Action]) -> None:
        # Adjacent packets for the same peer leave in one write (MACRO + CONNECT, the
        # changes + the verdict at end-of-message): every write costs a system call and a
        # wake-up of the peer, the biggest single cost per session. Only neighbours are
        # joined, so the order of writes across peers stays the engine's.
        links = self._links
        held = _NOBODY  # whose packets wait for a neighbour: a child's index or _MTA
        held_data = b""
        held_stage = Stage.NEGOTIATE
        encoded: dict[int, bytes] = {}  # by id(): the same command goes to every child
        for action in actions:
            if type(action) is ToChild:
                index = action.index
                message = action.message
                data = encoded.get(id(message), b"")
                if not data:
                    data = encoded[id(message)] = encode(message)
                if held == index:
                    data = held_data + data
                elif held != _NOBODY:
                    self._write_held(held, held_data, held_stage)
                if action.expect_reply:
                    links[index].send(data, True, action.stage)
                    held = _NOBODY
                else:
                    held, held_data, held_stage = index, data, action.stage
            elif type(action) is ToMta:
                reply = action.message
                data = encode(reply)
                if held == _MTA:
                    held_data += data
                else:
                    if held != _NOBODY:
                        self._write_held(held, held_data, held_stage)
                    held, held_data = _MTA, data
                if (
                    isinstance(reply, _HEADER_CHANGES)
                    and reply.value  # an empty ChangeHeader deletes
                    and reported_header(reply.name)
                ):
                    self._state.recorder.header_added(self._session_id, reply.name, reply.value)
            else:
                if held != _NOBODY:
                    self._write_held(held, held_data, held_stage)
                    held = _NOBODY
                if type(action) is CloseChild:
                    links[action.index].close()
                else:
                    self._record(action)
        if held != _NOBODY:
            self._write_held(held, held_data, held_stage)

    def _write_held(self, held: int, data: bytes, stage: Stage) -> None:
        if held == _MTA:
            if self._transport is not None:
                self._transport.write(data)
        else:
            self._links[held].send(data, False, stage)

    def _record(self, action: Action) -> None:
        recorder = self._state.recorder
        facts = self._session.facts
        queue_id = facts.macros.get("i", "")
        elapsed = time.monotonic() - self._started
        if isinstance(action, ChildFinished):
            if action.failed:
                recorder.child_error(self._session_id, action.name, action.reason)
            recorder.child_finished(
                ChildVerdictRecord(
                    self._session_id,
                    action.name,
                    action.stage.value,
                    action.status,
                    elapsed,
                    action.reason,
                    queue_id,
                    facts.client_address,
                    facts.client_name,
                )
            )
        elif isinstance(action, ConditionSkipped):
            recorder.condition_skipped(self._session_id, facts, action)
        elif isinstance(action, SessionFinished):
            recorder.session_finished(
                SessionRecord(
                    self._session_id,
                    action.stage.value,
                    action.status,
                    elapsed,
                    action.disconnected,
                    queue_id,
                    facts.client_address,
                    facts.client_name,
                )
            )
            if not self._session.finished:  # QUIT_NC: a new SMTP session follows
                self._begin()


# ---------------------------------------------------------------- listening


async def listen(spec_text: str, state: ServerState) -> asyncio.Server:
    """Listen on an inet or inet6 connection spec (Unix sockets: ``mmd.adapters.unix_socket``)."""
    loop = asyncio.get_running_loop()
    spec = parse_connection_spec(spec_text)
    if not isinstance(spec, InetSpec):
        raise ValueError(f"not an inet connection spec: {spec_text}")
    family = socket.AF_INET6 if spec.family == "inet6" else socket.AF_INET
    return await loop.create_server(
        lambda: MtaProtocol(state),
        spec.host or None,
        spec.port,
        family=family,
        backlog=1024,
        reuse_address=True,
    )


async def serve_socket(sock: socket.socket, state: ServerState) -> asyncio.Server:
    """Serve an already-listening socket (systemd socket activation)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    if sock.family == socket.AF_UNIX:
        return await loop.create_unix_server(lambda: MtaProtocol(state), sock=sock)
    return await loop.create_server(lambda: MtaProtocol(state), sock=sock)

