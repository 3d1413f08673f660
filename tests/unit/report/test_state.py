"""What persists between runs: a second run continues exactly where the first stopped."""

from __future__ import annotations

import pytest

from mmd.report.aggregate import Aggregator, Flush, Totals
from mmd.report.layout import updates
from mmd.report.state import State, StateError, dumps, loads

from .entries import T0, mix


def one_run(state: State, entries: list[dict[str, object]], now: float) -> list[Flush]:
    """What mmd.report.run does, without I/O: continue from the state, save it back."""
    after = state.cursor
    start = 0
    if after is not None:
        start = next(i for i, e in enumerate(entries) if e["__CURSOR"] == after) + 1
    aggregator = Aggregator(state.totals, step=state.step, open_bucket=state.open_bucket,
                            flushed=state.flushed,
                            not_before=max(state.last_update.values(), default=None))
    flushes: list[Flush] = []
    for entry in entries[start:]:
        flush = aggregator.add(entry)
        state.cursor = str(entry["__CURSOR"])
        if flush:
            flushes.append(flush)
    closing = aggregator.finish(now)
    if closing:
        flushes.append(closing)
    for flush in flushes:
        updates(flush.start, flush.end, flush.before, flush.after, state.last_update)
    state.totals = aggregator.totals
    state.open_bucket = aggregator.open_bucket
    state.flushed = aggregator.flushed
    return flushes


def test_round_trip() -> None:
    state = State(totals=Totals(), open_bucket=T0, last_update={"sessions": T0})
    one_run(state, mix(), T0 + 150)
    assert state.flushed is not None
    again = loads(dumps(state))
    assert again == state
    assert dumps(again) == dumps(state)


def test_two_runs_count_each_entry_once() -> None:
    entries = mix()
    whole = State()
    whole_flushes = one_run(whole, entries, T0 + 180)

    state = State()
    first = one_run(state, entries[:12], T0 + 125)  # stops inside minute 2
    state = loads(dumps(state))
    second = one_run(state, entries, T0 + 180)
    state = loads(dumps(state))
    third = one_run(state, entries, T0 + 240)  # nothing new
    assert third == []
    assert state.totals == whole.totals
    assert [(f.start, f.end) for f in first + second] == [(f.start, f.end) for f in whole_flushes]
    assert (first + second)[-1].after == whole_flushes[-1].after


def test_bad_state_files() -> None:
    with pytest.raises(StateError):
        loads("{")
    with pytest.raises(StateError):
        loads("[]")
    with pytest.raises(StateError):
        loads('{"version": 99}')
