"""Child connections kept between MTA connections (``reuse_child_connections``).

Which connection may be kept, and with which options, is the engine's call
(mmd.engine.reuse, ``ReuseChild``); this module only holds the sockets. A kept
connection is parked under a small protocol object that drops it at the first sign
that it is no longer usable (EOF, an error, or any byte: libmilter never speaks
unasked). The pool belongs to one generation (one loaded configuration): a new one
closes everything kept, and a session of an older generation neither takes nor gives
back. Bounded per child (``child_connections_kept``), and a connection idle longer
than ``child_connection_idle_timeout`` is closed.

QUIT_NC itself waits until the connection is taken again: it goes out with the next
session's first packet (one write fewer), and a connection closed while parked in
libmilter's end-of-message state gets a plain QUIT, which libmilter takes from there
(so the child's close callback runs once; after QUIT_NC and a later EOF libmilter runs
it a second time).
"""

from __future__ import annotations

import asyncio
from collections import deque

from mmd.engine import NegotiatedOptions
from mmd.protocol import messages as m
from mmd.protocol.codec import encode

QUIT = encode(m.Quit())
QUIT_NC = encode(m.QuitNewConnection())


_CLOSED = object()  # the generation of a closed pool: no session's


class ChildSocket(asyncio.Protocol):
    """The protocol a child connection keeps for its whole life: it hands every event to
    whoever uses the connection now (a session's ``ChildLink``, or a ``ParkedLink`` while
    the pool holds it). Switching ``user`` costs nothing; uvloop's ``set_protocol``
    restarts reading (uv_read_stop, uv_read_start), and libuv then pays a failed
    epoll_ctl ADD and a MOD at its next poll: two switches per kept child per session."""

    __slots__ = ("user",)

    def __init__(self, user: asyncio.Protocol) -> None:
        self.user = user

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.user.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.user.data_received(data)

    def eof_received(self) -> bool | None:
        return self.user.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.user.connection_lost(exc)

    def pause_writing(self) -> None:
        self.user.pause_writing()

    def resume_writing(self) -> None:
        self.user.resume_writing()


def hand_over(transport: asyncio.BaseTransport, user: asyncio.Protocol) -> None:
    """Make ``user`` hear ``transport``'s events from now on."""
    socket = transport.get_protocol()
    if type(socket) is ChildSocket:
        socket.user = user
    else:
        transport.set_protocol(user)


class ParkedLink(asyncio.Protocol):
    """One kept connection while no session uses it."""

    def __init__(
        self,
        pool: ChildPool,
        index: int,
        transport: asyncio.Transport,
        options: NegotiatedOptions,
        quit_nc: bool,
        since: float,
    ) -> None:
        self.pool = pool
        self.index = index
        self.transport = transport
        self.options = options
        self.quit_nc = quit_nc  # the next session's first packet is QUIT_NC
        self.since = since
        self.gone = False

    def data_received(self, data: bytes) -> None:
        self.pool.drop(self)  # nothing is due from a parked connection: it is not ours

    def eof_received(self) -> bool | None:
        return None  # closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.pool.forget(self)


class ChildPool:
    """Idle kept connections of one generation, per child index (LIFO)."""

    def __init__(self, generation: object, kept: int, idle_timeout: float) -> None:
        self._generation = generation
        self._kept = kept
        self._idle_timeout = idle_timeout
        self._idle: dict[int, deque[ParkedLink]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # counts for tests and the benchmark
        self.taken = 0
        self.kept = 0
        self.dropped = 0

    def idle(self, index: int) -> int:
        """How many connections to child ``index`` wait (tests, statistics)."""
        return len(self._idle.get(index, ()))

    # ------------------------------------------------------------ sessions

    def take(self, generation: object, index: int, offer: m.Negotiate) -> ParkedLink | None:
        """A kept connection to child ``index`` negotiated with ``offer``, now the caller's
        (its transport still has the parked protocol: the caller sets its own)."""
        if generation is not self._generation:
            return None
        parked = self._idle.get(index)
        if not parked:
            return None
        for link in reversed(parked):  # the most recently used first: the others age out
            if link.options.fits(offer) and not link.transport.is_closing():
                parked.remove(link)
                self.taken += 1
                return link
        return None

    def keep(
        self,
        generation: object,
        index: int,
        transport: asyncio.Transport,
        options: NegotiatedOptions,
        quit_nc: bool,
    ) -> bool:
        """Park ``transport``; False: not kept (another generation, full, closing), the
        caller closes it."""
        if generation is not self._generation or transport.is_closing():
            return False
        parked = self._idle.setdefault(index, deque())
        if len(parked) >= self._kept:
            return False
        loop = self._event_loop()
        link = ParkedLink(self, index, transport, options, quit_nc, loop.time())
        hand_over(transport, link)
        parked.append(link)
        self.kept += 1
        if self._timer is None:
            self._timer = loop.call_at(link.since + self._idle_timeout, self._sweep)
        return True

    # ------------------------------------------------------------ dropping

    def drop(self, link: ParkedLink) -> None:
        """Close a parked connection now (it spoke, it aged, its generation is over)."""
        self.forget(link)
        if not link.gone:
            link.gone = True
            transport = link.transport
            if not transport.is_closing():
                # libmilter's end-of-message state takes QUIT (its close callback runs
                # once); elsewhere it is ignored, as after every session before the pool
                transport.write(QUIT)
                transport.close()

    def forget(self, link: ParkedLink) -> None:
        parked = self._idle.get(link.index)
        if parked is not None and link in parked:
            parked.remove(link)
            self.dropped += 1

    def rebind(self, generation: object) -> None:
        """Serve ``generation`` from now on, with what is kept (its children are those of
        the old one); sessions of the old one no longer take or give back."""
        if self._generation is not _CLOSED:
            self._generation = generation

    def close(self) -> None:
        """Close every parked connection (a new generation, or the daemon stops); none is
        taken or kept after."""
        self._generation = _CLOSED
        for parked in list(self._idle.values()):
            for link in list(parked):
                self.drop(link)
        self._idle.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        self._timer = None
        loop = self._event_loop()
        now = loop.time()
        oldest: float | None = None
        for parked in list(self._idle.values()):
            while parked and parked[0].since + self._idle_timeout <= now:
                self.drop(parked[0])
            if parked and (oldest is None or parked[0].since < oldest):
                oldest = parked[0].since
        if oldest is not None:
            self._timer = loop.call_at(oldest + self._idle_timeout, self._sweep)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop
