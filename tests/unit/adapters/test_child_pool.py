"""Kept child connections (adapters/child_pool.py, ChildLink.adopt/release) over real
Unix sockets: the MTA side is mmd's own server, the child a small asyncio stand-in that
answers like libmilter (the real libmilter children: tests/integration/test_child_reuse.py)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mmd.adapters.child_pool import ChildPool, ChildSocket, ParkedLink
from mmd.adapters.children import Callbacks, ChildLink
from mmd.adapters.server import Generation, MtaProtocol, ServerState
from mmd.config.model import ManagerConfig, MilterConfig
from mmd.engine import ChildSettings, SessionSettings
from mmd.engine.reuse import NegotiatedOptions
from mmd.engine.stages import Stage
from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, encode
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Family, Step
from tests.support.transport import RecordingTransport
from tests.unit.adapters.test_server_headers import Recorder

MTA_OFFER = m.Negotiate(6, ALL_ACTIONS, ALL_STEPS)
# commands libmilter answers (the others: MACRO, ABORT, QUIT, QUIT_NC)
ANSWERED = (m.Connect, m.Helo, m.Mail, m.Rcpt, m.Data, m.EndOfHeaders, m.Header, m.Body,
            m.EndOfMessage, m.Unknown)


@dataclass
class FakeChild:
    """Counts connections and commands; answers OPTNEG and every command with continue."""

    steps: Step = Step.NO_UNKNOWN
    connections: int = 0
    lost: int = 0
    commands: list[str] = field(default_factory=list)
    transports: list[asyncio.Transport] = field(default_factory=list)
    # the next connection that gets a command after QUIT_NC closes without answering
    die_after_quit_nc: bool = False

    def protocol(self) -> asyncio.Protocol:
        child = self

        class Connection(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                child.connections += 1
                self.transport = transport
                child.transports.append(transport)  # type: ignore[arg-type]
                self.decoder = Decoder(Direction.COMMANDS, 1 << 20)

            def connection_lost(self, exc: Exception | None) -> None:
                child.lost += 1

            def data_received(self, data: bytes) -> None:
                self.decoder.receive_data(data)
                for command in self.decoder.messages():
                    name = type(command).__name__
                    child.commands.append(name)
                    if isinstance(command, m.QuitNewConnection) and child.die_after_quit_nc:
                        child.die_after_quit_nc = False
                        self.transport.close()
                        return
                    if isinstance(command, m.Negotiate):
                        self.transport.write(encode(m.Negotiate(6, ALL_ACTIONS, child.steps)))  # type: ignore[attr-defined]
                    elif isinstance(command, ANSWERED):
                        self.transport.write(encode(m.Continue()))  # type: ignore[attr-defined]

        return Connection()


class Errors(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def child_error(self, session_id: int, milter: str, reason: str) -> None:
        self.errors.append(reason)


class Mta:
    """One MTA connection to mmd's server: commands out, replies in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = Decoder(Direction.REPLIES, 1 << 20)

    async def ask(self, command: m.CommandMessage) -> m.Message:
        self.writer.write(encode(command))
        while True:
            message = self.decoder.next_message()
            if message is not None:
                return message
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "mmd closed the MTA connection"
            self.decoder.receive_data(data)

    async def session(self) -> list[str]:
        """A whole SMTP session with one message; the replies' names."""
        replies = [await self.ask(MTA_OFFER)]
        for command in (
            m.Connect("mx.example.net", Family.INET, 25, "192.0.2.1"),
            m.Helo("mx"),
            m.Mail(("<a@example.com>",)),
            m.Rcpt(("<b@example.org>",)),
            m.EndOfMessage(b""),
        ):
            replies.append(await self.ask(command))
        self.writer.write(encode(m.Quit()))
        await self.writer.drain()
        assert await asyncio.wait_for(self.reader.read(), 5) == b""
        self.writer.close()
        return [type(reply).__name__ for reply in replies]


def generation(child_path: Path, **manager: object) -> Generation:
    config = replace(ManagerConfig(), **manager)  # type: ignore[arg-type]
    milter = MilterConfig("fake", f"unix:{child_path}")
    return Generation(config, (milter,), (ChildSettings("fake"),), SessionSettings())


async def with_world(
    tmp_path: Path,
    child: FakeChild,
    run: Callable[[ServerState, Callable[[], Awaitable[list[str]]]], Awaitable[None]],
    **manager: object,
) -> None:
    loop = asyncio.get_running_loop()
    child_path = tmp_path / "child.sock"
    mmd_path = tmp_path / "mmd.sock"
    child_server = await loop.create_unix_server(child.protocol, str(child_path))
    state = ServerState(generation(child_path, **manager), Errors())
    server = await loop.create_unix_server(lambda: MtaProtocol(state), str(mmd_path))

    async def session() -> list[str]:
        mta = Mta(*await asyncio.open_unix_connection(str(mmd_path)))
        replies = await mta.session()
        await asyncio.sleep(0.05)  # the child gets what followed
        return replies

    try:
        await run(state, session)
    finally:
        state.pool.close()
        server.close()
        child_server.close()


FULL = ["Negotiate", "Continue", "Continue", "Continue", "Continue", "Continue"]


def test_one_connection_serves_every_session(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        for _ in range(3):
            assert await session() == FULL
        assert child.connections == 1
        assert child.commands.count("Negotiate") == 1
        assert child.commands.count("QuitNewConnection") == 2  # before the 2nd and 3rd
        assert "Quit" not in child.commands
        assert state.pool.idle(0) == 1
        assert (state.pool.kept, state.pool.taken, state.pool.dropped) == (3, 2, 0)

    asyncio.run(with_world(tmp_path, child, run))


def test_a_kept_connection_keeps_its_protocol_object(tmp_path: Path) -> None:
    # the pool and the sessions take turns on the one ChildSocket: uvloop's set_protocol
    # would restart reading, which costs libuv a failed epoll_ctl ADD and a MOD each time
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        protocols = []
        for _ in range(3):
            assert await session() == FULL
            (parked,) = state.pool._idle[0]
            protocols.append(parked.transport.get_protocol())
            assert getattr(protocols[-1], "user", None) is parked
        assert type(protocols[0]) is ChildSocket
        assert protocols[0] is protocols[1] is protocols[2]

    asyncio.run(with_world(tmp_path, child, run))


def test_reuse_off_connects_per_session(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        for _ in range(3):
            assert await session() == FULL
        assert child.connections == 3
        assert child.commands.count("Quit") == 3
        assert state.pool.idle(0) == 0

    asyncio.run(with_world(tmp_path, child, run, reuse_child_connections=False))


def test_connection_closed_by_the_child_while_kept_is_dropped(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        child.transports[0].close()  # the child restarted
        await asyncio.sleep(0.05)
        assert state.pool.idle(0) == 0
        assert await session() == FULL
        assert child.connections == 2

    asyncio.run(with_world(tmp_path, child, run))


def test_kept_connection_lost_before_its_first_reply_is_retried(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        child.die_after_quit_nc = True  # lost with the session's first packet unanswered
        assert await session() == FULL
        assert child.connections == 2
        assert child.commands.count("Negotiate") == 2  # the fresh one, with the kept offer
        assert child.commands.count("Connect") == 2
        assert isinstance(state.recorder, Errors) and state.recorder.errors == []

    asyncio.run(with_world(tmp_path, child, run))


def test_retry_that_negotiates_other_options_fails_the_child(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        child.die_after_quit_nc = True
        child.steps = Step.NO_HELO | Step.NO_UNKNOWN  # restarted with another configuration
        replies = await session()
        # the child is out with its fallback (accept): the MTA is told at CONNECT
        assert replies[:2] == ["Negotiate", "Accept"]
        assert child.commands.count("Connect") == 1  # never sent to the changed child
        assert isinstance(state.recorder, Errors)
        assert ["negotiated other options" in e for e in state.recorder.errors] == [True]

    asyncio.run(with_world(tmp_path, child, run))


def test_new_generation_closes_kept_connections(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        state.install(replace(state.generation, number=1))
        await asyncio.sleep(0.05)
        assert child.lost == 1
        assert child.commands[-1] == "Quit"
        assert await session() == FULL
        assert child.connections == 2
        assert child.commands.count("QuitNewConnection") == 0

    asyncio.run(with_world(tmp_path, child, run))


def test_live_update_with_the_same_children_keeps_the_connections(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        state.install(replace(state.generation, number=1), keep_connections=True)
        await asyncio.sleep(0.05)
        assert child.lost == 0 and state.pool.idle(0) == 1
        assert await session() == FULL
        assert child.connections == 1
        assert child.commands.count("QuitNewConnection") == 1

    asyncio.run(with_world(tmp_path, child, run))


def test_live_update_that_changes_a_child_closes_the_connections(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        (milter,) = state.generation.milters
        moved = replace(milter, connection_spec=milter.connection_spec + "x")
        state.install(replace(state.generation, number=1, milters=(moved,)),
                      keep_connections=True)
        await asyncio.sleep(0.05)
        assert child.lost == 1 and state.pool.idle(0) == 0
        assert child.commands[-1] == "Quit"

    asyncio.run(with_world(tmp_path, child, run))


def test_idle_kept_connection_is_closed_after_the_timeout(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        assert await session() == FULL
        assert state.pool.idle(0) == 1
        await asyncio.sleep(0.3)
        assert state.pool.idle(0) == 0
        assert child.commands[-1] == "Quit"  # libmilter's end-of-message state takes QUIT
        assert child.lost == 1

    asyncio.run(with_world(tmp_path, child, run, child_connection_idle_timeout=0.1))


def test_pool_keeps_no_more_than_its_bound(tmp_path: Path) -> None:
    child = FakeChild()

    async def run(state: ServerState, session: Callable[[], Awaitable[list[str]]]) -> None:
        results = await asyncio.gather(*(session() for _ in range(4)))
        assert all(r == FULL for r in results)
        assert child.connections == 4
        assert state.pool.idle(0) == 2
        assert child.commands.count("Quit") == 2

    asyncio.run(with_world(tmp_path, child, run, child_connections_kept=2))


class SettableTransport(RecordingTransport):
    protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[return-value]  # None: not set yet

    def is_closing(self) -> bool:
        return False


def kept_link_after(sent: int) -> tuple[list[str], list[bytes]]:
    """A link on a kept connection sends ``sent`` bytes unanswered, then loses it: what
    it reports, and what it wrote."""
    failures: list[str] = []
    config = MilterConfig("fake", "unix:/nonexistent/child.sock")
    link = ChildLink(0, config, Callbacks(lambda i, r: None, lambda i, why: failures.append(why)),
                     1 << 20)
    transport = SettableTransport()
    pool = ChildPool(None, 1, 60.0)
    options = NegotiatedOptions(MTA_OFFER, m.Negotiate(6, ALL_ACTIONS, Step(0)))
    link.adopt(ParkedLink(pool, 0, transport, options, True, 0.0))
    chunk = encode(m.Body(b"x" * 60000))
    for _ in range(sent // len(chunk)):
        link.send(chunk, False, Stage.BODY)
    link.connection_lost(None)
    link.close()
    return failures, transport.written


async def lost_after_a_big_body() -> None:
    failures, written = kept_link_after(300_000)
    # the resend store stops at its limit: the body is not held, and the loss is a failure
    assert failures == ["connection closed by the child"]
    assert written[0].startswith(encode(m.QuitNewConnection()))


async def lost_after_little() -> None:
    failures, _ = kept_link_after(120_000)
    assert failures == []  # retried on a fresh connection (closed here by the session)


def test_kept_connection_holds_no_more_than_its_resend_limit() -> None:
    asyncio.run(lost_after_a_big_body())
    asyncio.run(lost_after_little())


def test_every_install_gives_new_sessions_the_generation_body_limit(tmp_path: Path) -> None:
    """Keeping the kept connections at a live update keeps nothing else of the old one."""
    state = ServerState(generation(tmp_path / "child.sock"), Errors())
    manager = replace(state.generation.manager, body_memory_limit=123)
    state.install(replace(state.generation, manager=manager, number=1), keep_connections=True)
    factory = state.body_factory
    assert isinstance(factory, functools.partial) and factory.args == (123,)
