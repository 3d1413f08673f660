"""Cumulative totals from mmd's journal entries, closed into fixed time buckets.

Theory of operation
-------------------
The totals only ever grow (they are also the Prometheus counters). Entries arrive in journal
order; each belongs to the bucket ``floor(time / step) * step``. When an entry of a later bucket
arrives, the open bucket is closed: a ``Flush`` carries the bucket's start and end and the
totals as they were when it opened and when it closed. The RRD side stores totals as DERIVE data
sources, so the rate rrdtool computes between the two points is exactly that bucket's count; a
quiet span between buckets is one more point with unchanged totals (rate 0). An entry stamped
before the open bucket or before the databases' newest point (clock steps, merged journal
files, an entry that became visible late) counts in the next bucket still open: time never goes
backwards here, and nothing is lost.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mmd.journal_schema import Event, Field
from mmd.report.headers import report_kinds

DEFAULT_STEP = 60

# MMD_EVENT values the report reads (also the journal match, so nothing else is streamed)
EVENTS = (
    Event.SESSION_END,
    Event.SESSION_DISCONNECTED,
    Event.MILTER_VERDICT,
    Event.MILTER_ERROR,
    Event.HEADER_ADD,
)
# journal fields the report reads (besides __CURSOR and __REALTIME_TIMESTAMP)
FIELDS = (
    Field.EVENT,
    Field.SESSION_ID,
    Field.STATUS,
    Field.ELAPSED,
    Field.MILTER,
    Field.HEADER_NAME,
    Field.HEADER_VALUE,
    "_PID",  # journald's own: which daemon process (session numbers restart with it)
)


@dataclass
class MilterTotals:
    verdicts: Counter[str] = field(default_factory=Counter)
    elapsed_us: int = 0
    errors: int = 0

    @property
    def count(self) -> int:
        return sum(self.verdicts.values())


@dataclass
class Totals:
    """Everything counted since the first run; never decreases."""

    sessions: Counter[str] = field(default_factory=Counter)  # by final status
    session_elapsed_us: int = 0
    disconnected: int = 0
    milters: dict[str, MilterTotals] = field(default_factory=dict)
    reports: Counter[str] = field(default_factory=Counter)
    entries: int = 0

    def milter(self, name: str) -> MilterTotals:
        totals = self.milters.get(name)
        if totals is None:
            totals = self.milters[name] = MilterTotals()
        return totals


@dataclass(frozen=True)
class Flush:
    """One closed bucket: totals when it opened (``before``) and when it closed (``after``)."""

    start: int
    end: int
    before: Totals
    after: Totals


def microseconds(text: object) -> int:
    """MMD_ELAPSED ("0.125000", seconds) as whole microseconds; nonsense counts as 0."""
    if not isinstance(text, str):
        return 0
    seconds, _, fraction = text.strip().partition(".")
    try:
        return int(seconds or "0") * 1_000_000 + int((fraction + "000000")[:6])
    except ValueError:
        try:
            return max(0, round(float(text) * 1_000_000))
        except ValueError:
            return 0


def _text(value: Any) -> str:
    """A journal field's value as text (journalctl prints repeated fields as arrays)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return _text(value[0])
    return ""


@dataclass
class Summary:
    """What one run read (for the message at the end)."""

    entries: int = 0
    sessions: Counter[str] = field(default_factory=Counter)
    first_time: float | None = None
    last_time: float | None = None


class Aggregator:
    """Feeds entries into totals and yields closed buckets."""

    def __init__(
        self,
        totals: Totals,
        *,
        step: int = DEFAULT_STEP,
        open_bucket: int | None = None,
        flushed: Totals | None = None,
        not_before: int | None = None,
    ) -> None:
        self.totals = totals
        self.step = step
        self.open_bucket = open_bucket
        # start of the earliest bucket still writable (the databases' newest point)
        self.not_before = not_before
        # totals when the open bucket opened (= when the previous one closed)
        self.flushed = flushed if flushed is not None else copy.deepcopy(totals)
        self.summary = Summary()
        self._header_run: tuple[str, str] | None = None
        self._header_kinds: set[str] = set()

    def add(self, entry: Mapping[str, Any]) -> Flush | None:
        """Count one journal entry (``journalctl -o json`` shape); a closed bucket or None."""
        stamp = int(entry.get("__REALTIME_TIMESTAMP") or 0) / 1_000_000
        bucket = int(stamp // self.step) * self.step
        if self.not_before is not None and bucket < self.not_before:
            bucket = self.not_before
        flush: Flush | None = None
        if self.open_bucket is None:
            self.open_bucket = bucket
        elif bucket > self.open_bucket:
            flush = self._close()
            self.open_bucket = bucket
        summary = self.summary
        summary.entries += 1
        if summary.first_time is None:
            summary.first_time = stamp
        summary.last_time = stamp
        self._count(entry)
        return flush

    def _count(self, entry: Mapping[str, Any]) -> None:
        totals = self.totals
        totals.entries += 1
        event = _text(entry.get(Field.EVENT))
        if event != Event.HEADER_ADD:
            self._header_run = None
        if event == Event.SESSION_END:
            status = _text(entry.get(Field.STATUS)) or "unknown"
            totals.sessions[status] += 1
            totals.session_elapsed_us += microseconds(_text(entry.get(Field.ELAPSED)))
            self.summary.sessions[status] += 1
        elif event == Event.MILTER_VERDICT:
            milter = totals.milter(_text(entry.get(Field.MILTER)) or "unknown")
            milter.verdicts[_text(entry.get(Field.STATUS)) or "unknown"] += 1
            milter.elapsed_us += microseconds(_text(entry.get(Field.ELAPSED)))
        elif event == Event.HEADER_ADD:
            self._header(entry)
        elif event == Event.SESSION_DISCONNECTED:
            totals.disconnected += 1
        elif event == Event.MILTER_ERROR:
            totals.milter(_text(entry.get(Field.MILTER)) or "unknown").errors += 1

    def _header(self, entry: Mapping[str, Any]) -> None:
        """One message's added headers are consecutive entries (one end-of-message): a kind
        counts once per message even when two headers say it (X-Spam-Flag and X-Spam-Status,
        Received-SPF and Authentication-Results)."""
        run = (_text(entry.get("_PID")), _text(entry.get(Field.SESSION_ID)))
        if run != self._header_run:
            self._header_run = run
            self._header_kinds = set()
        name = _text(entry.get(Field.HEADER_NAME))
        for kind in report_kinds(name, _text(entry.get(Field.HEADER_VALUE))):
            if kind not in self._header_kinds:
                self._header_kinds.add(kind)
                self.totals.reports[kind] += 1

    def _close(self) -> Flush:
        assert self.open_bucket is not None
        after = copy.deepcopy(self.totals)
        flush = Flush(self.open_bucket, self.open_bucket + self.step, self.flushed, after)
        self.flushed = after
        self.open_bucket = None
        self.not_before = flush.end
        return flush

    def finish(self, now: float) -> Flush | None:
        """Close the open bucket when its time is over (nothing more can land in it)."""
        if self.open_bucket is not None and self.open_bucket + self.step <= now:
            return self._close()
        return None


def aggregate(entries: Iterable[Mapping[str, Any]], aggregator: Aggregator) -> list[Flush]:
    """All closed buckets for ``entries`` (for tests and small inputs)."""
    flushes = [flush for entry in entries if (flush := aggregator.add(entry)) is not None]
    return flushes
