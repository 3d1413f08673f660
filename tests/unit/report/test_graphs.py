from __future__ import annotations

from pathlib import Path

from mmd.report.aggregate import Totals
from mmd.report.graphs import PERIODS, all_graphs
from mmd.report.html import DrawnGraph, render
from mmd.report.layout import milter_key

from .entries import T0


def test_every_period_has_every_graph() -> None:
    pages = all_graphs(Path("/r"), ["spamass", "clam:av"], T0 + 123)
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
    end = (T0 + 123) - (T0 + 123) % 120  # whole 2-minute pixels
    assert day[0].args[day[0].args.index("--end") + 1] == str(end)
    week = pages[1][1][0]
    assert week.args[week.args.index("--end") + 1] == str((T0 + 123) - (T0 + 123) % 900)
    assert all(":step=300" in a for a in week.args if a.startswith("DEF:"))
    assert len(PERIODS) == 4


def test_milter_keys_are_safe_and_distinct() -> None:
    assert milter_key("spamass-milter") == "milter-spamass-milter"
    assert milter_key("a/b") != milter_key("a_b")
    assert "/" not in milter_key("a/b")
    assert not milter_key("..").startswith("milter-.")


def test_index_lists_graphs_with_titles() -> None:
    totals = Totals()
    totals.sessions["pass"] = 3
    pages = [(PERIODS[0], [DrawnGraph("sessions-day.png", "Sessions <day>", 700, 300)])]
    text = render(pages, totals, T0)
    assert '<img src="sessions-day.png" alt="Sessions &lt;day&gt;"' in text
    assert 'width="700" height="300"' in text
    assert "<th>pass</th><td>3</td>" in text
    assert "2027-01-15 08:00:00 UTC" in text
