"""The MTA side: listening sockets and one protocol object per MTA connection.

This is the per-packet hot path. Bytes from the MTA are decoded and handed
to the session engine; the engine's actions are carried out at once, with no
awaits in between, so the order the engine chose is the order on the wire.
Child replies come back the same way through ``ChildLink`` callbacks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mmd.adapters.children import ChildLink
from mmd.config.connection_spec import InetSpec, UnixSpec, parse_connection_spec
from mmd.config.model import ManagerConfig, MilterConfig
from mmd.engine.applicability import SessionFacts
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
    on_change: Callable[[], None] | None = None
    # max_connections: sessions being served; the others wait, not read, in arrival order
    serving: int = 0
    waiting: deque[MtaProtocol] = field(default_factory=deque)

    def may_serve(self) -> bool:
        limit = self.generation.manager.max_connections
        return not limit or self.serving < limit


class MtaProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None

    # ------------------------------------------------------------ MTA side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        state = self._state
        self._transport = transport
        generation = state.generation
        self._generation = generation
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
        self._serving = state.may_serve()
        if self._serving:
            state.serving += 1
        else:
            state.waiting.append(self)  # served when a session ends (max_connections)
        self._begin()
        if state.on_change:
            state.on_change()

    def _begin(self) -> None:
        state = self._state
        state.total += 1
        self._session_id = next(state.ids)
        self._started = time.monotonic()
        state.recorder.session_started(self._session_id, state.active)

    def data_received(self, data: bytes) -> None:
        self._decoder.receive_data(data)
        if not self._serving:
            # max_connections: keep what came, read no more until a session ends
            # (pausing here, not in connection_made: Python 3.11 re-adds the reader after it)
            if self._transport is not None:
                self._transport.pause_reading()
            return
        self._process()

    def _process(self) -> None:
        decoder = self._decoder
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
        if not self._session.finished:
            self._carry_out(self._session.mta_closed())
        for link in self._links:
            link.close()
        state = self._state
        if self._serving:
            state.serving -= 1
        elif self in state.waiting:
            state.waiting.remove(self)
        while state.waiting and state.may_serve():
            waiting = state.waiting.popleft()
            waiting._serving = True
            state.serving += 1
            if waiting._transport is not None:
                waiting._transport.resume_reading()
                waiting._process()
        state.active -= 1
        state.connections.discard(self)
        if state.active == 0:
            state.idle.set()
        if state.on_change:
            state.on_change()

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
        transport = self._transport
        links = self._links
        for action in actions:
            if type(action) is ToChild:
                links[action.index].send(encode(action.message), action.expect_reply, action.stage)
            elif type(action) is ToMta:
                if transport is not None:
                    transport.write(encode(action.message))
            elif type(action) is CloseChild:
                links[action.index].close()
            else:
                self._record(action)

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


async def listen(
    spec_text: str, state: ServerState, socket_mode: int = 0o660, socket_group: str = ""
) -> asyncio.Server:
    """Listen on a connection spec (unix sockets get the configured mode and group)."""
    loop = asyncio.get_running_loop()
    spec = parse_connection_spec(spec_text)
    if isinstance(spec, UnixSpec):
        _remove_stale_socket(spec.path)
        server = await loop.create_unix_server(lambda: MtaProtocol(state), spec.path, backlog=1024)
        os.chmod(spec.path, socket_mode)
        if socket_group:
            import grp

            os.chown(spec.path, -1, grp.getgrnam(socket_group).gr_gid)
        return server
    assert isinstance(spec, InetSpec)
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


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover from a previous run
    else:
        raise OSError(f"{path} is in use by another process")
    finally:
        probe.close()
