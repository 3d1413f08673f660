"""Deadlines: many time-outs on one loop timer, each owner called once its entry is due,
an earlier deadline served first, a forgotten owner never, and stale entries let go."""

from __future__ import annotations

import asyncio

from mmd.adapters.deadlines import Deadlines, deadlines_of


class Owner:
    """An owner that records when it was called, and may ask again (``again``)."""

    def __init__(self, name: str, calls: list[tuple[str, float]],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.calls = calls
        self.loop = loop
        self.watched = 0.0
        self.again: float | None = None  # seconds: watch again once, that much later

    def deadline_reached(self) -> None:
        self.calls.append((self.name, self.loop.time()))
        if self.again is not None:
            later, self.again = self.again, None
            deadlines_of(self.loop).watch(self, self.loop.time() + later)


async def order_of_calls() -> list[str]:
    loop = asyncio.get_running_loop()
    deadlines = deadlines_of(loop)
    calls: list[tuple[str, float]] = []
    start = loop.time()
    late, early, moved, gone = (Owner(n, calls, loop) for n in ("late", "early", "moved", "gone"))
    deadlines.watch(late, start + 0.06)
    deadlines.watch(early, start + 0.02)
    deadlines.watch(moved, start + 0.08)
    deadlines.watch(moved, start + 0.01)  # earlier: this one counts
    deadlines.watch(moved, start + 0.2)  # later than its entry: nothing new
    deadlines.watch(gone, start + 0.03)
    deadlines.forget(gone)
    early.again = 0.05
    await asyncio.sleep(0.15)
    assert all(when >= start for _, when in calls)
    assert len(deadlines) == 0
    return [name for name, _ in calls]


def test_owners_are_called_in_deadline_order_once_each() -> None:
    assert asyncio.run(order_of_calls()) == ["moved", "early", "late", "early"]


async def calls_are_not_early() -> float:
    loop = asyncio.get_running_loop()
    calls: list[tuple[str, float]] = []
    owner = Owner("one", calls, loop)
    due = loop.time() + 0.05
    deadlines_of(loop).watch(owner, due)
    await asyncio.sleep(0.1)
    assert [name for name, _ in calls] == ["one"]
    return calls[0][1] - due


def test_an_owner_is_not_called_before_its_deadline() -> None:
    assert asyncio.run(calls_are_not_early()) >= 0


async def stale_entries() -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    calls: list[tuple[str, float]] = []
    owners = [Owner(str(n), calls, loop) for n in range(1000)]
    far = loop.time() + 3600
    for owner in owners:
        deadlines.watch(owner, far)
    for owner in owners[:900]:
        deadlines.forget(owner)  # their connections ended
    heap = len(deadlines._heap)
    return heap, len(deadlines)


def test_forgotten_owners_do_not_stay_in_the_heap() -> None:
    heap, live = asyncio.run(stale_entries())
    assert live == 100
    assert heap < 200  # compacted: not the 1000 entries of a heap that only grows


class Broken(Owner):
    def deadline_reached(self) -> None:
        super().deadline_reached()
        raise RuntimeError("a bug in one owner")


async def after_a_broken_owner() -> list[str]:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the loop would log it: expected here
    deadlines = deadlines_of(loop)
    calls: list[tuple[str, float]] = []
    start = loop.time()
    deadlines.watch(Broken("broken", calls, loop), start + 0.01)
    deadlines.watch(Owner("same time", calls, loop), start + 0.01)
    deadlines.watch(Owner("later", calls, loop), start + 0.05)
    await asyncio.sleep(0.1)
    return sorted(name for name, _ in calls)


def test_an_owner_that_raises_does_not_stop_the_others() -> None:
    assert asyncio.run(after_a_broken_owner()) == ["broken", "later", "same time"]


def _fire_timers(loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> int:
    """Loop timers pending for ``deadlines`` (asyncio's own loop keeps them in _scheduled)."""
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    return sum(1 for h in scheduled if not h.cancelled() and h._callback == deadlines._fire)


async def timers_after_rewatching() -> list[int]:
    loop = asyncio.get_running_loop()
    deadlines = deadlines_of(loop)  # the one Owner watches again on
    calls: list[tuple[str, float]] = []
    start = loop.time()
    owners = [Owner(str(n), calls, loop) for n in range(3)]
    deadlines.watch(owners[0], start + 0.01)
    deadlines.watch(owners[1], start + 0.02)
    deadlines.watch(owners[2], start + 3600)
    counts = []
    for owner in owners[:2]:
        owner.again = 0.5  # re-watched from inside the heap's own timer callback
    for _ in range(3):
        await asyncio.sleep(0.03)
        counts.append(_fire_timers(loop, deadlines))
    return counts


def test_one_loop_timer_whatever_the_owners_watch_when_called() -> None:
    """An owner that watches again while called (a read deadline moved since) must not
    leave a second loop timer behind: each one re-arms itself for good."""
    assert asyncio.run(timers_after_rewatching()) == [1, 1, 1]

