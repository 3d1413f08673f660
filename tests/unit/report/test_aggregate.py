"""A known mix of journal entries gives exact totals and buckets."""

from __future__ import annotations

from collections import Counter

from mmd.report.aggregate import Aggregator, MilterTotals, Totals, aggregate, microseconds
from mmd.report.layout import session_values, updates, values

from .entries import T0, entry, header, mix, session


def expected_totals() -> Totals:
    return Totals(
        sessions=Counter({"accept": 1, "reject": 1, "temporary-failure": 1, "pass": 2,
                          "quarantine": 1}),
        session_elapsed_us=8_000_000,
        disconnected=1,
        milters={
            "spamass": MilterTotals(Counter({"accept": 1, "reject": 1}), 500_000, 0),
            "clamav": MilterTotals(Counter({"pass": 2, "reject": 1}), 1_500_000, 1),
        },
        reports=Counter({"spam": 1, "spf_pass": 1, "virus": 1, "greylist": 1,
                         "dkim_signed": 1, "dkim_pass": 1, "dkim_fail": 1}),
        entries=22,
    )


def test_mix_gives_exact_totals() -> None:
    aggregator = Aggregator(Totals())
    flushes = aggregate(mix(), aggregator)
    assert aggregator.totals == expected_totals()
    summary = aggregator.summary
    assert summary.entries == 22
    assert summary.sessions == expected_totals().sessions
    assert summary.first_time == T0 + 1
    assert summary.last_time == T0 + 179.9
    # minute 0 closed when minute 2 began; minute 2 is still open
    assert [(f.start, f.end) for f in flushes] == [(T0, T0 + 60)]
    assert flushes[0].before == Totals()
    assert flushes[0].after.sessions == Counter({"accept": 1, "reject": 1})
    assert flushes[0].after.reports == Counter({"spam": 1, "spf_pass": 1})
    assert aggregator.open_bucket == T0 + 120
    assert aggregator.finish(T0 + 179) is None  # minute 2 is not over yet
    last = aggregator.finish(T0 + 180)
    assert last is not None
    assert (last.start, last.end) == (T0 + 120, T0 + 180)
    assert last.before == flushes[0].after
    assert last.after == expected_totals()


def test_rrd_points_are_bucket_counts() -> None:
    aggregator = Aggregator(Totals())
    flushes = aggregate(mix(), aggregator)
    closing = aggregator.finish(T0 + 180)
    assert closing is not None
    flushes.append(closing)
    last_update: dict[str, int] = {}
    points: dict[str, list[tuple[int, list[int]]]] = {}
    for flush in flushes:
        for key, batch in updates(flush.start, flush.end, flush.before, flush.after,
                                  last_update).items():
            points.setdefault(key, []).extend(batch)
    sessions = points["sessions"]
    # an anchor at each bucket start after a quiet span, then the bucket's totals
    assert [when for when, _ in sessions] == [T0, T0 + 60, T0 + 120, T0 + 180]
    assert sessions[0][1] == [0] * 11
    assert sessions[1][1] == sessions[2][1]  # the quiet minute reads 0
    # sessions, elapsed_us, disconnected, pass, accept, reject, discard, tempfail,
    # quarantine, abort, other
    assert sessions[1][1] == [2, 2_625_000, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert sessions[3][1] == [6, 8_000_000, 1, 2, 1, 1, 0, 1, 1, 0, 0]
    clamav = points["milter-clamav"]
    # verdicts, elapsed_us, errors, pass, accept, reject, discard, tempfail, skip, other
    assert clamav[-1] == (T0 + 180, [3, 1_500_000, 1, 2, 0, 1, 0, 0, 0, 0])
    assert last_update == {key: T0 + 180 for key in points}
    assert values(expected_totals())["sessions"] == session_values(expected_totals())


def test_late_entries_count_in_the_next_writable_bucket() -> None:
    aggregator = Aggregator(Totals(), not_before=T0 + 120)
    aggregator.add(session(T0 + 5, 1, "pass"))  # older than the databases' newest point
    assert aggregator.open_bucket == T0 + 120
    flush = aggregator.add(session(T0 + 200, 2, "pass"))
    assert flush is not None and (flush.start, flush.end) == (T0 + 120, T0 + 180)
    assert flush.after.sessions["pass"] == 1
    # a clock step back inside the open bucket: counted there
    assert aggregator.add(session(T0 + 100, 3, "pass")) is None
    assert aggregator.open_bucket == T0 + 180
    assert aggregator.totals.sessions["pass"] == 3


def test_header_kinds_count_once_per_message() -> None:
    aggregator = Aggregator(Totals())
    aggregate(
        [
            header(T0, 1, "X-Spam-Flag", "YES"),
            header(T0, 1, "X-Spam-Status", "Yes, score=20"),
            entry(T0, "milter-verdict", session_id="1", milter="a", status="accept"),
            # the next message of the same SMTP session: counted again
            header(T0 + 1, 1, "X-Spam-Status", "Yes, score=20"),
            # same session id from another daemon process: another message
            header(T0 + 1, 1, "X-Spam-Flag", "YES", pid="200"),
            header(T0 + 2, 2, "X-Spam-Flag", "NO"),
            header(T0 + 2, 2, "X-Spam-Status", "No, score=0.1"),
        ],
        aggregator,
    )
    assert aggregator.totals.reports == Counter({"spam": 3, "ham": 1})


def test_odd_fields() -> None:
    aggregator = Aggregator(Totals())
    aggregate(
        [
            {"__REALTIME_TIMESTAMP": str(T0 * 1_000_000), "MMD_EVENT": "session-end"},
            {"__REALTIME_TIMESTAMP": str(T0 * 1_000_000), "MMD_EVENT": ["session-end", "x"],
             "MMD_STATUS": ["reject"], "MMD_ELAPSED": None},
            {"__REALTIME_TIMESTAMP": str(T0 * 1_000_000), "MMD_EVENT": "milter-verdict"},
            {"__REALTIME_TIMESTAMP": str(T0 * 1_000_000)},
        ],
        aggregator,
    )
    assert aggregator.totals.sessions == Counter({"unknown": 1, "reject": 1})
    assert aggregator.totals.milters["unknown"].verdicts == Counter({"unknown": 1})
    assert aggregator.totals.entries == 4


def test_microseconds() -> None:
    assert microseconds("0.125000") == 125_000
    assert microseconds("12.5") == 12_500_000
    assert microseconds("3") == 3_000_000
    assert microseconds(".0000019") == 1
    assert microseconds("1e-3") == 1_000
    assert microseconds("nonsense") == 0
    assert microseconds("") == 0
    assert microseconds(None) == 0
