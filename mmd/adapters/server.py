"""The MTA side: listening sockets and one protocol object per MTA connection.

This is the per-packet hot path. Bytes from the MTA are decoded and handed
to the session engine; the engine's actions are carried out at once, with no
awaits in between, so the order the engine chose is the order on the wire.
Child replies come back the same way through ``ChildLink`` callbacks.

Nothing here holds more than a little per session: the engine streams big
bodies a window at a time (``Drain``: carry on once the peer's socket took it,
and never in the same loop pass, so other sessions get their turn), and the
MTA is not read while its commands pile up behind busy children or while it
does not read our answers.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from mmd.adapters.child_pool import ChildPool
from mmd.adapters.children import ChildLink
from mmd.adapters.deadlines import Deadlines, deadlines_of
from mmd.adapters.session_records import ChildVerdictRecord, Recorder, SessionRecord
from mmd.adapters.spool import SpooledBody
from mmd.config.connection_spec import InetSpec, parse_connection_spec
from mmd.config.model import ManagerConfig, MilterConfig
from mmd.engine import (
    ChildFinished,
    ChildSettings,
    CloseChild,
    ConditionSkipped,
    Drain,
    MtaDrain,
    MtaError,
    NegotiatedOptions,
    Output,
    ReuseChild,
    Session,
    SessionFacts,
    SessionFinished,
    SessionSettings,
    Stage,
    ToChild,
    ToMta,
)
from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, ProtocolError, encode

__all__ = [
    "Generation",
    "MtaProtocol",
    "ServerState",
    "listen",
    "reported_header",
    "serve_socket",
]


@dataclass(frozen=True, slots=True)
class Generation:
    """One loaded configuration: new sessions take the newest, old ones keep theirs."""

    manager: ManagerConfig
    milters: tuple[MilterConfig, ...]
    children: tuple[ChildSettings, ...]
    session_settings: SessionSettings
    number: int = 0


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
    # asyncio.get_running_loop() makes a getpid() system call in Python 3.11 (to spot a
    # fork): the sessions take the loop from here, set by the first one
    loop: asyncio.AbstractEventLoop | None = None
    # child connections kept for reuse, of the current generation (install)
    pool: ChildPool = field(init=False)
    # the body store of a new session, one callable per generation (not one per session)
    body_factory: Callable[[], SpooledBody] = field(init=False)

    def __post_init__(self) -> None:
        self.pool = _pool_for(self.generation)
        self.body_factory = _body_factory(self.generation)

    def install(self, generation: Generation, keep_connections: bool = False) -> None:
        """New sessions take ``generation``; connections kept under the old one are closed
        (they were negotiated for, and belong to, a configuration no longer in force),
        except, with ``keep_connections`` (a live update from systemd), when every child
        is the same one at the same socket and the pool's settings did not change: a
        restarted child's kept connections are gone already, the others stay good."""
        old = self.generation
        self.generation = generation
        self.body_factory = _body_factory(generation)
        if keep_connections and _same_connections(old, generation):
            self.pool.rebind(generation)
            return
        self.pool.close()
        self.pool = _pool_for(generation)

    def event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        return loop

    def deadlines(self) -> Deadlines:
        """The loop's time-outs of MTA connections and child links (one loop timer)."""
        return deadlines_of(self.event_loop())


def _body_factory(generation: Generation) -> Callable[[], SpooledBody]:
    return functools.partial(SpooledBody, generation.manager.body_memory_limit)


def _same_connections(old: Generation, new: Generation) -> bool:
    """Whether connections kept for ``old`` serve ``new`` as well (same children, same
    order, same sockets, same pool settings)."""

    def connections(generation: Generation) -> tuple[object, ...]:
        manager = generation.manager
        children = tuple(
            (milter.name, milter.connection_spec, milter.reuse_connection)
            for milter in generation.milters
        )
        return (
            manager.reuse_child_connections,
            manager.child_connections_kept,
            manager.child_connection_idle_timeout,
            children,
        )

    return connections(old) == connections(new)


def _pool_for(generation: Generation) -> ChildPool:
    manager = generation.manager
    kept = manager.child_connections_kept if manager.reuse_child_connections else 0
    return ChildPool(generation, kept, manager.child_connection_idle_timeout)


# packets without data, encoded once: the replies and commands sent most often
_CONSTANT: dict[type, bytes] = {
    kind: encode(kind())
    for kind in (m.Continue, m.Accept, m.Reject, m.Tempfail, m.Discard, m.Skip, m.Progress,
                 m.Data, m.EndOfHeaders, m.Abort, m.Quit, m.QuitNewConnection)
}

_NOBODY = -1
_MTA = -2
# MTA commands queued while children answer: past this, mmd stops reading from the MTA
# (a pipelining MTA sends a few ahead; one that never reads replies is not let fill memory)
_BACKLOG_LIMIT = 32


class MtaProtocol(asyncio.Protocol):
    """One MTA connection: decodes its commands, feeds the engine, carries out its outputs."""

    # slots: ~64 bytes less per connection than an instance dict's values
    __slots__ = (
        "_deadlines",
        "_decoder",
        "_drained_pending",
        "_early",
        "_generation",
        "_idle_timeout",
        "_last_input",
        "_links",
        "_loop",
        "_reading_paused",
        "_session",
        "_session_id",
        "_started",
        "_started_session",
        "_state",
        "_transport",
        "_writing_paused",
        "watched",
    )

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None
        # the session itself (_session, _links, _decoder, _loop) starts in _start, once a
        # connection slot is free, with the generation current then
        self._started_session = False
        self._early: list[bytes] | None = None  # what came while waiting for a slot
        self._reading_paused = False
        self._writing_paused = False  # the MTA does not read what we send
        self._drained_pending = False  # the engine waits for mta_drained()
        self.watched = 0.0  # its idle time-out's entry in the loop's Deadlines
        self._idle_timeout = 0.0  # 0: none
        self._last_input = 0.0
        self._session_id = 0
        self._started = 0.0

    # ------------------------------------------------------------ MTA side

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's do not subclass asyncio.Transport, hence no isinstance)
        transport = cast(asyncio.Transport, base)
        self._transport = transport
        state = self._state
        limit = state.generation.manager.max_connections
        if limit and state.active >= limit:
            # after the transport's own first "start reading" (Python 3.11 would undo it)
            state.event_loop().call_soon(transport.pause_reading)
            state.waiting.append(self)
            return
        self._start()

    def _start(self) -> None:
        state = self._state
        generation = state.generation
        manager = generation.manager
        self._decoder = Decoder(Direction.COMMANDS, manager.max_packet_size)
        loop = self._loop = state.event_loop()
        state.active += 1
        state.idle.clear()
        state.connections.add(self)
        facts = SessionFacts(active_sessions=state.active)
        self._generation = generation
        reuse = manager.reuse_child_connections and manager.child_connections_kept > 0
        self._session = Session(
            generation.children,
            generation.session_settings,
            body_factory=state.body_factory,
            facts=facts,
            links=self._kept_link if reuse else None,
        )
        self._links = tuple(
            ChildLink(
                i,
                milter,
                self,
                manager.max_packet_size,
                self._session.conversations[i],
                loop,
            )
            for i, milter in enumerate(generation.milters)
        )
        self._started_session = True
        self._begin()
        timeout = manager.mta_idle_timeout
        if timeout > 0:
            self._idle_timeout = timeout
            self._last_input = loop.time()
            self._deadlines = state.deadlines()
            self._deadlines.watch(self, self._last_input + timeout)

    def _begin(self) -> None:
        state = self._state
        state.total += 1
        self._session_id = next(state.ids)
        self._started = time.monotonic()
        state.recorder.session_started(self._session_id, state.active)

    def data_received(self, data: bytes) -> None:
        if not self._started_session:
            # raced the pause: keep it for when the session starts
            if self._early is None:
                self._early = []
            self._early.append(data)
            return
        session = self._session
        if session.finished:
            return  # after QUIT: nothing more to read, and nothing kept
        if self._idle_timeout:
            self._last_input = self._loop.time()
        decoder = self._decoder
        try:
            commands = decoder.feed(data)
        except ProtocolError as error:
            self._protocol_error(error)
            return
        while True:
            for command in commands:
                self._carry_out(session.from_mta(command))  # type: ignore[arg-type]
                if session.finished:
                    return  # closed when the session's end was recorded
            if decoder.error is None:
                break
            try:  # good commands came before the error: it is raised now
                commands = decoder.messages()
            except ProtocolError as error:
                self._protocol_error(error)
                return
        if session.backlog > _BACKLOG_LIMIT:
            self._pause_reading()

    def _protocol_error(self, error: ProtocolError) -> None:
        self._state.recorder.mta_error(self._session_id, f"protocol error from MTA: {error}")
        self.close_mta()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._writing_paused
            and self._session.backlog <= _BACKLOG_LIMIT // 2
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._reading_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        # the MTA does not read our replies: stop reading its commands until it does
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained_pending:
            self._drained_pending = False
            self._loop.call_soon(self._mta_drained)
        if self._started_session:
            self._maybe_resume_reading()

    def _mta_drained(self) -> None:
        if self._writing_paused:
            self._drained_pending = True
        elif not self._session.finished:
            self._carry_out(self._session.mta_drained())

    def deadline_reached(self) -> None:
        """Close an MTA connection silent for mta_idle_timeout while mmd waits for it
        (called by the loop's Deadlines)."""
        if self._session.finished or self._transport is None or self._transport.is_closing():
            return
        loop = self._loop
        deadline = self._last_input + self._idle_timeout
        if loop.time() < deadline or not self._session.waiting_for_mta:
            # bytes came in the meantime, or children are still working: look again later
            self._deadlines.watch(self, max(deadline, loop.time() + 1.0))
            return
        self._state.recorder.mta_error(
            self._session_id,
            f"the MTA sent nothing for {self._idle_timeout:g} s (mta_idle_timeout): "
            "closing its connection",
        )
        self.close_mta()

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        if not self._started_session:
            if self in state.waiting:
                state.waiting.remove(self)
            self._transport = None
            return
        if self.watched:
            self._deadlines.forget(self)
        if not self._session.finished:
            self._carry_out(self._session.mta_closed())
        for link in self._links:
            link.close()
        self._transport = None  # the transport holds us; without this, a cycle for the GC
        state.active -= 1
        state.connections.discard(self)
        while state.waiting:
            waiting = state.waiting.popleft()
            if waiting._transport is not None and not waiting._transport.is_closing():
                waiting._start()
                for data in waiting._early or ():
                    waiting.data_received(data)
                waiting._transport.resume_reading()
                break
        if state.active == 0:
            state.idle.set()

    def close_mta(self) -> None:
        """Drop the MTA's connection: the daemon does it to sessions still waiting when it stops."""
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------ children

    def _kept_link(self, index: int, offer: m.Negotiate) -> NegotiatedOptions | None:
        """The engine's link source: a kept connection for child ``index``, if any."""
        parked = self._state.pool.take(self._generation, index, offer)
        if parked is None:
            return None
        self._links[index].adopt(parked)
        return parked.options

    def child_reply(self, index: int, reply: m.ReplyMessage) -> None:
        self._carry_out(self._session.from_child(index, reply))
        if self._reading_paused:
            self._maybe_resume_reading()

    def child_failed(self, index: int, reason: str) -> None:
        # logged as an error when the engine reports the child's end (ChildFinished.failed),
        # like the failures only the engine sees (a reply that breaks the protocol)
        self._carry_out(self._session.child_failed(index, reason))
        if self._reading_paused:
            self._maybe_resume_reading()

    def _child_drained(self, index: int) -> None:
        self._carry_out(self._session.child_drained(index))
        if self._reading_paused:
            self._maybe_resume_reading()

    # ------------------------------------------------------------ actions

    def _carry_out(self, actions: list[Output]) -> None:
        # Adjacent packets for the same peer leave in one write (MACRO + CONNECT, the
        # changes + the verdict at end-of-message): every write costs a system call and a
        # wake-up of the peer, the biggest single cost per session. Only neighbours are
        # joined (collected in a list, joined once: a body's worth of "+" would cost the
        # square of its size), so the order of writes across peers stays the engine's.
        # The engine sends at most a window of body chunks before a Drain, so a list
        # holds a few chunks at most.
        if not actions:
            return  # a reply while others are still due: the most common case
        links = self._links
        if len(actions) == 1:
            action = actions[0]
            if type(action) is ToChild:  # the next command of an end-of-message replay
                message = action.message
                links[action.index].send(
                    _CONSTANT.get(type(message)) or encode(message),
                    action.expect_reply,
                    action.stage,
                )
                return
        held = _NOBODY  # whose packets wait for a neighbour: a child's index or _MTA
        held_parts: list[bytes] = []
        held_stage = Stage.NEGOTIATE
        # the engine sends the same command object to every child, one after the other:
        # it is encoded once
        last_message: object = None
        data = b""
        for action in actions:
            if type(action) is ToChild:
                index = action.index
                message = action.message
                if message is not last_message:
                    data = _CONSTANT.get(type(message)) or encode(message)
                    last_message = message
                if held != index:
                    if held != _NOBODY:
                        self._write_held(held, held_parts, held_stage)
                    held, held_parts = index, []
                held_parts.append(data)
                held_stage = action.stage
                if action.expect_reply:
                    links[index].send(_joined(held_parts), True, action.stage)
                    held = _NOBODY
            elif type(action) is ToMta:
                reply = action.message
                if held != _MTA:
                    if held != _NOBODY:
                        self._write_held(held, held_parts, held_stage)
                    held, held_parts = _MTA, []
                held_parts.append(_CONSTANT.get(type(reply)) or encode(reply))
                if (
                    isinstance(reply, _HEADER_CHANGES)
                    and reply.value  # an empty ChangeHeader deletes
                    and reported_header(reply.name)
                ):
                    self._state.recorder.header_added(self._session_id, reply.name, reply.value)
            else:
                if held != _NOBODY:
                    self._write_held(held, held_parts, held_stage)
                    held = _NOBODY
                kind = type(action)
                if kind is CloseChild:
                    links[action.index].close()  # type: ignore[union-attr]
                elif kind is ReuseChild:
                    assert isinstance(action, ReuseChild)
                    links[action.index].release(
                        self._state.pool, self._generation, action.options, action.quit_nc
                    )
                elif kind is Drain:
                    links[action.index].when_drained(self._child_drained)  # type: ignore[union-attr]
                elif kind is MtaDrain:
                    self._when_mta_drained()
                elif kind is MtaError:
                    self._mta_problem(action)  # type: ignore[arg-type]
                else:
                    self._record(action)
        if held != _NOBODY:
            self._write_held(held, held_parts, held_stage)

    def _write_held(self, held: int, parts: list[bytes], stage: Stage) -> None:
        if held == _MTA:
            if self._transport is not None:
                self._transport.write(_joined(parts))
        else:
            self._links[held].send(_joined(parts), False, stage)

    def _when_mta_drained(self) -> None:
        # after the other sessions had their turn, and only once the MTA took the bytes
        if self._writing_paused:
            self._drained_pending = True
        else:
            self._loop.call_soon(self._mta_drained)

    def _mta_problem(self, error: MtaError) -> None:
        self._state.recorder.mta_error(self._session_id, error.reason)
        if error.fatal:
            self.close_mta()

    def _record(self, action: Output) -> None:
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
            else:  # QUIT, a protocol error or the MTA left: nothing more to read
                self.close_mta()


def _joined(parts: list[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"".join(parts)


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

