from __future__ import annotations

from pathlib import Path

from mmd.report.aggregate import Totals
from mmd.report.graphs import PERIODS, Period, Row, all_graphs, series_stats
from mmd.report.html import DrawnGraph, render
from mmd.report.layout import milter_key

from .entries import T0


class Rows:
    """Readings from a table: (function, resolution) -> rows of one data source "sessions"."""

    def __init__(self, table: dict[tuple[str, int], list[Row]] | None = None) -> None:
        self.table = table or {}
        self.asked: list[tuple[str, int, int, int]] = []

    def rows(
        self, database: Path, function: str, start: int, end: int, resolution: int
    ) -> tuple[list[str], list[Row]]:
        self.asked.append((function, start, end, resolution))
        return ["sessions"], self.table.get((function, resolution), [])


def test_every_period_has_every_graph() -> None:
    pages = all_graphs(Path("/r"), ["spamass", "clam:av"], T0 + 60, Rows())
    assert [period.name for period, _ in pages] == ["day", "week", "month", "year"]
    day = pages[0][1]
    assert [g.file for g in day] == [
        "sessions-day.png", "concurrency-day.png", "statuses-day.png", "reports-day.png",
        f"{milter_key('clam:av')}-verdicts-day.png", f"{milter_key('clam:av')}-elapsed-day.png",
        "milter-spamass-verdicts-day.png", "milter-spamass-elapsed-day.png",
    ]
    assert [g.title for g in day[:4]] == [
        "Sessions (last day)", "Concurrent sessions (last day)", "Final statuses (last day)",
        "Reports from added headers (last day)",
    ]
    assert day[4].title == "Child clam:av: verdicts (last day)"
    statuses = day[2]
    assert [legend.strip() for legend in statuses.legends] == [
        "pass", "accept", "reject", "discard", "temporary-failure", "quarantine", "abort", "other",
    ]
    # the colon in a child's name is escaped in rrdtool's arguments, whole points only
    args = " ".join(day[4].args)
    assert "clam\\:av" not in args  # titles are plain arguments
    # the end of the last complete minute, rounded up to a whole pixel: never cut off
    assert (T0 + 60) % 120 != 0
    assert day[0].args[day[0].args.index("--end") + 1] == str(T0 + 120)
    week = pages[1][1][0]
    assert week.args[week.args.index("--end") + 1] == str(T0 + 900 - T0 % 900)
    defs = [a for a in week.args if a.startswith("DEF:")]
    assert any(":step=300" in a for a in defs)
    assert any(":step=60:start=" in a for a in defs)  # the newest part from 1-minute rows
    assert len(PERIODS) == 4
    for _, graphs in pages:  # spikes stay visible: no smoothing
        assert all("--slope-mode" not in graph.args for graph in graphs)


def test_legend_numbers_are_per_minute_from_the_rows() -> None:
    """The busiest minute from the MAX rows (50 in one minute), not a 2-minute pixel (25)."""
    end = T0 + 600
    day = PERIODS[0]
    rows = Rows({
        ("AVERAGE", 60): [(end - 120, [0.0]), (end - 60, [50 / 60]), (end, [None])],
        ("MAX", 60): [(end - 120, [0.0]), (end - 60, [50 / 60])],
    })
    stats = series_stats(rows, Path("/r/sessions.rrd"), "sessions", day, end)
    assert round(stats.total, 6) == 50
    assert round(stats.busiest_minute, 6) == 50
    assert round(stats.per_minute, 6) == 25  # two known minutes


def test_wider_periods_read_the_newest_minutes_from_the_fine_rows() -> None:
    """A burst 3 minutes ago is not in a 5-minute row yet: the week still counts it."""
    end = T0 + 180
    week = PERIODS[1]
    rows = Rows({
        ("AVERAGE", 300): [(T0, [0.0]), (T0 + 300, [None])],
        ("AVERAGE", 60): [(T0 + 60, [0.0]), (T0 + 120, [50 / 60]), (T0 + 180, [0.0])],
        ("MAX", 60): [(T0 + 120, [50 / 60])],
    })
    stats = series_stats(rows, Path("/r/sessions.rrd"), "sessions", week, end)
    assert round(stats.total, 6) == 50
    assert round(stats.busiest_minute, 6) == 50


def test_milter_keys_are_safe_and_distinct() -> None:
    assert milter_key("spamass-milter") == "milter-spamass-milter"
    assert milter_key("a/b") != milter_key("a_b")
    assert "/" not in milter_key("a/b")
    assert not milter_key("..").startswith("milter-.")


def test_index_lists_graphs_with_titles() -> None:
    totals = Totals()
    totals.sessions["pass"] = 3
    pages = [(PERIODS[0], [DrawnGraph("sessions-day.png", "Sessions <day>", 700, 300)])]
    text = render(pages, totals, T0, "the journal files in /j (SYSLOG_IDENTIFIER=x)")
    assert '<img src="sessions-day.png" alt="Sessions &lt;day&gt;"' in text
    assert 'width="700" height="300"' in text
    assert "<th>pass</th><td>3</td>" in text
    assert "2027-01-15 08:00:00 UTC from the journal files in /j" in text


def test_index_says_why_it_has_no_graphs() -> None:
    pages: list[tuple[Period, list[DrawnGraph]]] = [(period, []) for period in PERIODS]
    text = render(pages, Totals(), T0, "the system journal", "no statistics entries in it")
    assert "This run read nothing: no statistics entries in it." in text
    assert "No graphs yet" in text
