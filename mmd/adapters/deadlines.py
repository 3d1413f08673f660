"""Many time-outs on one event-loop timer.

Every MTA connection has an idle time-out and every child link a read time-out,
moved with nearly every packet. One loop timer each cost about 540 bytes per
connection and per child (uvloop's timer handle, a libuv timer and a copy of the
context) and a timer created per session and child; here they are entries of one
heap behind a single loop timer, about 90 bytes each.

An owner (``Expiring``) keeps its own deadline; ``watch`` puts an entry in the
heap only when the owner has none or the new one is earlier. When an entry's
time comes, the owner is asked (``deadline_reached``) and decides: it may find
its deadline moved (it then watches again) or nothing due any more. ``forget``
marks an owner's entry stale (its connection ended); stale entries are dropped
when popped, and all at once when they are half the heap, so that a closed
connection is not kept alive by the heap for long.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from typing import Protocol

__all__ = ["Deadlines", "Expiring", "deadlines_of"]


class Expiring(Protocol):
    """What the heap calls back; ``watched`` is the time of its live entry, 0 for none
    (the owner's to keep, the heap only reads it and clears it when the entry is due)."""

    watched: float

    def deadline_reached(self) -> None: ...


class Deadlines:
    """The deadlines of one event loop (``deadlines_of``), on one loop timer."""

    __slots__ = ("_heap", "_loop", "_order", "_stale", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # (when, order, owner): order keeps owners out of the comparison
        self._heap: list[tuple[float, int, Expiring]] = []
        self._order = itertools.count()
        self._stale = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._heap) - self._stale

    def watch(self, owner: Expiring, when: float) -> None:
        """Call ``owner.deadline_reached()`` at ``when`` (loop time), or later."""
        watched = owner.watched
        if watched:
            if watched <= when:
                return  # the live entry comes first: the owner looks again then
            owner.watched = 0.0
            self._one_more_stale()
        owner.watched = when
        heapq.heappush(self._heap, (when, next(self._order), owner))
        timer = self._timer
        if timer is None or when < self._timer_at:
            if timer is not None:
                timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._fire)

    def forget(self, owner: Expiring) -> None:
        """``owner`` wants no call: its entry, if any, becomes stale."""
        if owner.watched:
            owner.watched = 0.0
            self._one_more_stale()

    def _one_more_stale(self) -> None:
        self._stale += 1
        if self._stale > 64 and self._stale * 2 > len(self._heap):
            self._compact()

    def _compact(self) -> None:
        heap = [entry for entry in self._heap if entry[2].watched == entry[0]]
        heapq.heapify(heap)
        self._heap = heap
        self._stale = 0

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        try:
            while heap and heap[0][0] <= now:
                when, _, owner = heapq.heappop(heap)
                if owner.watched != when:
                    if self._stale:
                        self._stale -= 1
                    continue
                owner.watched = 0.0
                owner.deadline_reached()
        finally:
            # one timer for the earliest entry left, whatever an owner did meanwhile (it
            # may have watched again, or raised: the others' time-outs must still come)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if heap:
                self._timer_at = heap[0][0]
                self._timer = self._loop.call_at(self._timer_at, self._fire)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


def deadlines_of(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The one ``Deadlines`` of ``loop``."""
    deadlines = _BY_LOOP.get(loop)
    if deadlines is None:
        deadlines = _BY_LOOP[loop] = Deadlines(loop)
    return deadlines
