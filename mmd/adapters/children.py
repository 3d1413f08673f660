"""Connections to child milters for one MTA connection (asyncio protocols).

Each ``ChildLink`` turns the engine's ``ToChild`` actions into bytes on a
socket and the child's bytes into replies for the engine. It owns the
child's four timeouts: connecting (connection_timeout), a write that does not
drain (writing_timeout), a reply that does not come (reading_timeout, or
end_of_message_timeout for end-of-message). Whether a reply is due is not its
own guess: it reads the child's ``ChildConversation`` (the engine's), which the
session updates with every command and reply. Whatever goes wrong is reported
once to its owner (``LinkOwner.child_failed``); the engine decides what it means for the mail.

A link may also serve on a connection kept from an earlier MTA connection
(``adopt``, mmd.adapters.child_pool) and hand its connection back at the end
(``release``). A kept connection that is lost before its first reply in the new
session (the child restarted while it was parked) is replaced once by a fresh
one, transparently: OPTNEG with the kept offer, the same answer required, then
what the session had sent.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Callable
from typing import Protocol, cast

from mmd.adapters.child_pool import QUIT, QUIT_NC, ChildPool, ChildSocket, ParkedLink, hand_over
from mmd.adapters.deadlines import Deadlines, deadlines_of
from mmd.config.connection_spec import InetSpec, UnixSpec, parse_connection_spec
from mmd.config.model import MilterConfig
from mmd.detection.access import explain_refusal
from mmd.engine import NegotiatedOptions
from mmd.engine.conversation import ChildConversation, ChildSettings
from mmd.engine.stages import Stage
from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, ProtocolError, encode

_parsed_spec = functools.lru_cache(maxsize=64)(parse_connection_spec)
# what a kept connection keeps of what it was sent until its first reply, to send it again
# on a fresh connection (retry): the envelope and a body chunk or so; a child that answers
# nothing before end-of-message would otherwise have the whole body held here
_RESEND_LIMIT = 128 * 1024

ReplyHandler = Callable[[int, m.ReplyMessage], None]
FailureHandler = Callable[[int, str], None]
DrainedHandler = Callable[[int], None]


class LinkOwner(Protocol):
    """Who hears of a link's replies and failure: the MTA connection's protocol. One
    object rather than two callbacks: two bound methods per child cost ~128 bytes of
    every idle connection's child links."""

    def child_reply(self, index: int, reply: m.ReplyMessage) -> None: ...

    def child_failed(self, index: int, reason: str) -> None: ...


class Callbacks:
    """A ``LinkOwner`` made of two functions (a link on its own, as the tests use it)."""

    __slots__ = ("child_failed", "child_reply")

    def __init__(self, on_reply: ReplyHandler, on_failure: FailureHandler) -> None:
        self.child_reply = on_reply
        self.child_failed = on_failure


class _Gone:
    """A closed link's owner: the session is gone, nothing is reported."""

    def child_reply(self, index: int, reply: m.ReplyMessage) -> None:
        pass

    def child_failed(self, index: int, reason: str) -> None:
        pass


_GONE = _Gone()


class _Kept:
    """What a link on a kept connection (``adopt``) needs besides a fresh one's: its
    options, QUIT_NC still owed before the first packet, what was sent until its first
    reply (None once it replied), and the fresh connection's OPTNEG under way after it was
    lost (retry). An object of its own, made on adopt: most links never need it, and its
    six slots cost every idle MTA connection's three links ~144 bytes."""

    __slots__ = ("options", "prefix", "renegotiating", "resent", "resent_size", "retried")

    def __init__(self, options: NegotiatedOptions, prefix: bytes) -> None:
        self.options = options
        self.prefix = prefix
        self.resent: list[bytes] | None = []
        self.resent_size = 0
        self.renegotiating = False
        self.retried = False


class ChildLink(asyncio.Protocol):
    """One child's socket for one MTA connection: bytes out, replies in, its timeouts."""

    # slots: ~64 bytes less per link than an instance dict's values (three per idle
    # MTA connection)
    __slots__ = (
        "_connect_timer",
        "_connecting",
        "_conversation",
        "_deadlines",
        "_decoder",
        "_done",
        "_kept",
        "_loop",
        "_on_drained",
        "_owner",
        "_pending",
        "_read_deadline",
        "_read_timeout",
        "_transport",
        "_write_paused",
        "_write_timer",
        "config",
        "index",
        "watched",
    )

    def __init__(
        self,
        index: int,
        config: MilterConfig,
        owner: LinkOwner,
        max_packet_size: int,
        conversation: ChildConversation | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.index = index
        self.config = config
        # what the engine knows of this child: whether, and for which stage, a reply is due
        self._conversation = conversation or ChildConversation(index, ChildSettings(config.name))
        self._owner = owner
        self._decoder = Decoder(Direction.REPLIES, max_packet_size)
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] | None = None  # written once connected
        self._connecting: asyncio.Task[None] | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._loop = loop  # or the running loop, on first use
        self._deadlines: Deadlines | None = None  # the loop's, on first use
        self.watched = 0.0  # its entry in the loop's Deadlines (mmd.adapters.deadlines)
        self._read_deadline = 0.0  # loop time; see _arm_read_timer
        self._read_timeout = 0.0
        self._write_timer: asyncio.TimerHandle | None = None
        self._done = False  # failed or closed on purpose: report nothing more
        self._write_paused = False
        self._on_drained: DrainedHandler | None = None
        self._kept: _Kept | None = None  # serving on a kept connection (adopt)

    # ------------------------------------------------------------ engine side

    def send(self, data: bytes, expect_reply: bool, stage: Stage) -> None:
        """Write (or queue until connected) ``data``; a due reply arms the read timer."""
        if self._done:
            return
        transport = self._transport
        kept = self._kept
        if kept is not None and kept.resent is not None:
            # a kept connection that has not answered yet
            kept.resent_size += len(data)
            if kept.resent_size <= _RESEND_LIMIT:
                kept.resent.append(data)
            elif kept.renegotiating:
                self._fail("its kept connection was lost, and more was sent than a new one "
                           "can be given again")
                return
            else:
                kept.resent = None  # too much to send again: a loss from here is a failure
            if kept.renegotiating:
                transport = None  # held until the fresh connection's OPTNEG answer
            elif kept.prefix:
                data = kept.prefix + data
                kept.prefix = b""
        if transport is None:
            if kept is None or not kept.renegotiating:
                if self._pending is None:
                    self._pending = []
                self._pending.append(data)
                if self._connecting is None:
                    self._start_connecting()
        else:
            transport.write(data)
        if expect_reply:
            self._arm_read_timer(stage)

    def when_drained(self, handler: DrainedHandler) -> None:
        """Call ``handler(index)`` once the socket took what was sent (engine's ``Drain``).

        Never at once: from the next loop pass at the earliest, so that a big body
        streamed to one child leaves the other sessions their turn.
        """
        if self._done:
            return
        self._on_drained = handler
        if self._transport is not None and not self._write_paused:
            self._event_loop().call_soon(self._drained)
        # else connection_made or resume_writing carries on

    def _drained(self) -> None:
        handler = self._on_drained
        if handler is None or self._done or self._write_paused or self._transport is None:
            return
        self._on_drained = None
        handler(self.index)

    def close(self) -> None:
        """Closed on the engine's word: no failure report follows."""
        self._done = True
        self._cancel_timers()
        if self._transport is not None:
            self._transport.close()
        elif self._connecting is not None:
            self._connecting.cancel()
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self._let_go()

    # ------------------------------------------------------------ kept connections

    def adopt(self, parked: ParkedLink) -> None:
        """Serve this session on a kept connection (taken from the pool)."""
        transport = parked.transport
        hand_over(transport, self)
        self._transport = transport
        self._kept = _Kept(parked.options, QUIT_NC if parked.quit_nc else b"")

    def release(
        self, pool: ChildPool, generation: object, options: NegotiatedOptions, quit_nc: bool
    ) -> None:
        """The engine's ``ReuseChild``: park the connection in ``pool``, or, when the pool
        does not take it (or the link is not in a state to hand on), QUIT and close."""
        transport = self._transport
        if self._done or transport is None:
            return
        kept = self._kept
        clean = not self._write_paused
        if kept is not None:
            quit_nc = quit_nc or bool(kept.prefix)  # a kept one untouched still owes it
            clean = clean and not kept.renegotiating
        self._done = True
        self._cancel_timers()
        self._transport = None
        self._let_go()
        if not (clean and pool.keep(generation, self.index, transport, options, quit_nc)):
            transport.write(QUIT)
            transport.close()

    def _retry(self) -> None:
        """A kept connection was lost before its first reply: once, a fresh connection
        negotiated with the kept offer takes its place (see ``_on_reply_received``)."""
        kept = self._kept
        assert kept is not None
        kept.retried = True
        kept.renegotiating = True
        kept.prefix = b""
        self._write_paused = False  # the lost transport's state
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._decoder = Decoder(Direction.REPLIES, self._decoder.max_packet_size)
        self._pending = [encode(kept.options.offer)]
        self._start_connecting()

    def _renegotiated(self, reply: m.Message) -> None:
        kept = self._kept
        assert kept is not None and self._transport is not None
        kept.renegotiating = False
        if not kept.options.same_child(reply):  # type: ignore[arg-type]
            self._fail(
                "its kept connection was lost and a new one negotiated other options "
                f"({type(reply).__name__}): the child changed while this session ran"
            )
            return
        held = kept.resent or []
        if held:
            self._transport.write(b"".join(held))

    def _let_go(self) -> None:
        # Nothing is reported after close or failure: drop the session's bound methods,
        # which would otherwise keep session -> link -> session alive until the GC runs.
        self._owner = _GONE
        self._on_drained = None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # asyncio.get_running_loop() makes a getpid() system call in Python 3.11 (to spot a
        # fork), and the read timer wants the loop for nearly every packet. A link lives
        # and dies in one loop.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # ------------------------------------------------------------ connecting

    def _start_connecting(self) -> None:
        # A plain timer rather than asyncio.wait_for: wait_for wraps the connection in a
        # second task plus a future, per child and per SMTP session.
        loop = self._event_loop()
        self._connecting = loop.create_task(self._connect())
        self._connect_timer = loop.call_later(
            self.config.connection_timeout, self._connect_timed_out
        )

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self._connecting is not None:
            self._connecting.cancel()
        self._connect_failed_by_timeout()

    def _connect_failed_by_timeout(self) -> None:
        self._fail(
            f"cannot connect to {self.config.connection_spec}: timed out after "
            f"{self.config.connection_timeout:g} s"
        )

    async def _connect(self) -> None:
        loop = self._event_loop()
        spec = _parsed_spec(self.config.connection_spec)
        try:
            if isinstance(spec, UnixSpec):
                await loop.create_unix_connection(self._itself, spec.path)
            else:
                assert isinstance(spec, InetSpec)
                family = socket.AF_INET6 if spec.family == "inet6" else socket.AF_INET
                await loop.create_connection(
                    self._itself, spec.connect_host(), spec.port, family=family
                )
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._connect_failed_by_timeout()
        except OSError as error:
            reason = error.strerror or str(error)
            if error.errno == errno.EACCES and isinstance(spec, UnixSpec):
                reason = f"{reason}: {explain_refusal(spec.path)}"  # which group is missing
            self._fail(f"cannot connect to {self.config.connection_spec}: {reason}")
        finally:
            # the finished task holds this coroutine, which holds the link: let go of it,
            # so that a finished session is freed by reference counting, not by the GC
            self._connecting = None
            if self._connect_timer is not None:
                self._connect_timer.cancel()
                self._connect_timer = None

    def _itself(self) -> ChildSocket:
        return ChildSocket(self)

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's do not subclass asyncio.Transport, hence no isinstance)
        transport = cast(asyncio.Transport, base)
        if self._done:
            transport.close()
            return
        self._transport = transport
        pending = self._pending
        if pending:
            transport.write(b"".join(pending))
        self._pending = None
        if self._on_drained is not None:
            self._event_loop().call_soon(self._drained)

    # ------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        decoder = self._decoder
        try:
            replies = decoder.feed(data)
        except ProtocolError as error:
            self._fail(f"protocol error: {error}")
            return
        while True:
            for reply in replies:
                if self._done:
                    return
                self._on_reply_received(reply)
            if self._done or decoder.error is None:
                return
            try:  # good replies came before the error: it is raised now
                replies = decoder.messages()
            except ProtocolError as error:
                self._fail(f"protocol error: {error}")
                return

    def _on_reply_received(self, reply: m.Message) -> None:
        kept = self._kept
        if kept is not None and kept.resent is not None:
            # a kept connection's first reply of the session
            if kept.renegotiating:
                self._renegotiated(reply)
                return
            kept.resent = None
        awaiting = self._conversation.awaiting
        if awaiting is Stage.END_OF_MESSAGE and ChildConversation.keeps_waiting(awaiting, reply):
            # still working on it: each sign of life resets the clock
            self._arm_read_timer(awaiting)
        self._owner.child_reply(self.index, reply)  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        kept = self._kept
        if not self._done and kept is not None and kept.resent is not None and not kept.retried:
            self._retry()
            return
        if not self._done:
            detail = f": {exc}" if exc else ""
            self._fail(f"connection closed by the child{detail}")

    # ------------------------------------------------------------ timeouts

    def _arm_read_timer(self, stage: Stage) -> None:
        # A reply comes for nearly every packet, so the time-out is lazy: the engine clears
        # the conversation's ``awaiting`` when the reply came, re-arming only moves
        # _read_deadline, and the loop's Deadlines calls back when the entry it has comes
        # due (deadline_reached looks again). A loop timer per link cost ~540 bytes per
        # idle child connection, and creating one per packet more than the rest of the
        # child's bookkeeping.
        eom = stage is Stage.END_OF_MESSAGE
        timeout = self.config.end_of_message_timeout if eom else self.config.reading_timeout
        loop = self._event_loop()
        deadlines = self._deadlines
        if deadlines is None:
            deadlines = self._deadlines = deadlines_of(loop)
        deadline = loop.time() + timeout
        self._read_deadline = deadline
        self._read_timeout = timeout
        watched = self.watched
        if not watched or watched > deadline:
            deadlines.watch(self, deadline)

    def deadline_reached(self) -> None:
        """The loop's Deadlines: the read deadline seen last may have passed."""
        awaiting = self._conversation.awaiting
        if awaiting is None or self._done:
            return  # the reply came in time
        if self._event_loop().time() < self._read_deadline:
            assert self._deadlines is not None
            self._deadlines.watch(self, self._read_deadline)
            return
        self._fail(f"timeout: no reply at {awaiting.value} within {self._read_timeout:g} s")

    def pause_writing(self) -> None:
        self._write_paused = True
        timeout = self.config.writing_timeout
        self._write_timer = self._event_loop().call_later(
            timeout, self._fail, f"timeout: could not write within {timeout:g} s"
        )

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._on_drained is not None:
            self._event_loop().call_soon(self._drained)

    def _cancel_timers(self) -> None:
        if self.watched and self._deadlines is not None:
            self._deadlines.forget(self)
        for timer in (self._write_timer, self._connect_timer):
            if timer is not None:
                timer.cancel()
        self._write_timer = self._connect_timer = None

    def _fail(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        self._cancel_timers()
        if self._transport is not None:
            self._transport.abort()
        owner = self._owner
        self._let_go()
        owner.child_failed(self.index, reason)

