"""The RRD databases: which files, which data sources, how totals become one update's values.

Every data source is a DERIVE (minimum 0) over a cumulative total, so rrdtool's rate between
two updates is the count in between divided by the seconds; a restart from zero (lost state)
shows as a gap, never as a negative spike.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mmd.report.aggregate import MilterTotals, Totals
from mmd.report.headers import REPORT_KINDS

SESSION_STATUSES = (
    "pass", "accept", "reject", "discard", "temporary-failure", "quarantine", "abort",
)
MILTER_STATUSES = ("pass", "accept", "reject", "discard", "temporary-failure", "skip")
# one point per bucket in the newest archive; the wider ones consolidate for week/month/year
ARCHIVES = (  # (steps per row, rows)
    (1, 2880),  # 2 days of 1-minute points
    (5, 4032),  # 2 weeks of 5 minutes
    (30, 3000),  # 62 days of 30 minutes
    (360, 1500),  # 375 days of 6 hours
)
# A quiet span is written as one update and must stay "known" (rate 0): every entry comes from
# the journal, so a long gap between runs is still counted where it belongs.
HEARTBEAT = 400 * 86400
# A new database starts with unchanged totals this far back: the graphs read 0 before the
# first entry instead of unknown (rrdtool's per-pixel averaging would skew totals at the edge).
HISTORY = 366 * 86400

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def ds_name(label: str) -> str:
    """rrdtool data source names: [a-zA-Z0-9_], at most 19 characters."""
    return re.sub(r"[^A-Za-z0-9_]", "_", label)[:19]


@dataclass(frozen=True)
class Database:
    key: str  # file name without .rrd
    sources: tuple[str, ...]  # data source names


def milter_key(name: str) -> str:
    """A file name for a child's database; a hash keeps names that need repair apart."""
    safe = _UNSAFE.sub("_", name)
    if safe != name or not safe or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return f"milter-{safe}"


SESSIONS = Database(
    "sessions",
    ("sessions", "elapsed_us", "disconnected", *(ds_name(s) for s in SESSION_STATUSES), "other"),
)
REPORTS = Database("reports", tuple(ds_name(kind) for kind in REPORT_KINDS))
MILTER_SOURCES = (
    "verdicts", "elapsed_us", "errors", *(ds_name(s) for s in MILTER_STATUSES), "other",
)


def databases(totals: Totals) -> list[Database]:
    return [SESSIONS, REPORTS] + [
        Database(milter_key(name), MILTER_SOURCES) for name in sorted(totals.milters)
    ]


def session_values(totals: Totals) -> list[int]:
    sessions = totals.sessions
    known = [sessions.get(status, 0) for status in SESSION_STATUSES]
    total = sum(sessions.values())
    return [total, totals.session_elapsed_us, totals.disconnected, *known, total - sum(known)]


def milter_values(milter: MilterTotals) -> list[int]:
    known = [milter.verdicts.get(status, 0) for status in MILTER_STATUSES]
    count = milter.count
    return [count, milter.elapsed_us, milter.errors, *known, count - sum(known)]


def values(totals: Totals) -> dict[str, list[int]]:
    """One update's values for every database, in data source order."""
    rows = {
        SESSIONS.key: session_values(totals),
        REPORTS.key: [totals.reports.get(kind, 0) for kind in REPORT_KINDS],
    }
    for name, milter in totals.milters.items():
        rows[milter_key(name)] = milter_values(milter)
    return rows


def updates(
    start: int, end: int, before: Totals, after: Totals, last_update: dict[str, int]
) -> dict[str, list[tuple[int, list[int]]]]:
    """RRD points for one closed bucket [start, end): an anchor at ``start`` when the database's
    last point is older (the quiet span before reads 0), then the bucket's totals at ``end``.
    ``last_update`` (database key -> time of its newest point) is updated."""
    old = values(before)
    new = values(after)
    points: dict[str, list[tuple[int, list[int]]]] = {}
    for key, row in new.items():
        previous = last_update.get(key)
        if previous is not None and previous >= end:
            continue  # already written (a lost state file, databases kept)
        batch: list[tuple[int, list[int]]] = []
        if previous is None or previous < start:
            batch.append((start, old.get(key, [0] * len(row))))
        batch.append((end, row))
        points[key] = batch
        last_update[key] = end
    return points


def quiet_until(
    when: int, totals: Totals, last_update: dict[str, int]
) -> dict[str, list[tuple[int, list[int]]]]:
    """Points at ``when`` with unchanged totals: graphs read 0, not unknown, up to now."""
    points: dict[str, list[tuple[int, list[int]]]] = {}
    for key, row in values(totals).items():
        previous = last_update.get(key)
        if previous is not None and previous < when:
            points[key] = [(when, row)]
            last_update[key] = when
    return points
