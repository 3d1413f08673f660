"""Lists in README.md and docs/ that must match the code: the journal events the daemon
writes, the classic options milter-manager accepts."""

from __future__ import annotations

import re
from pathlib import Path

from mmd.cli.classic_options import SYSTEMD_INSTEAD
from mmd.cli.manager import build_parser
from mmd.journal_schema import Event

ROOT = Path(__file__).resolve().parents[3]


def written_events() -> set[str]:
    """Every MMD_EVENT value the daemon's code uses (spelled in mmd/journal_schema.py)."""
    found: set[str] = set()
    for path in (ROOT / "mmd").rglob("*.py"):
        if path.name != "journal_schema.py":
            found |= set(re.findall(r"\bEvent\.([A-Z_]+)\b", path.read_text()))
    return {getattr(Event, name) for name in found}


def documented_events(path: Path) -> set[str]:
    row = next(line for line in path.read_text().splitlines()
               if line.startswith("| `MMD_EVENT` |"))
    return set(re.findall(r"`([a-z-]+)`", row.split("|")[2]))


def test_journal_events_are_listed_alike() -> None:
    events = written_events()
    assert len(events) >= 13, events
    assert documented_events(ROOT / "README.md") == events
    assert documented_events(ROOT / "docs" / "systemd.md") == events


def test_classic_options_table_lists_every_classic_option() -> None:
    text = (ROOT / "docs" / "systemd.md").read_text()
    table = text[text.index("## The classic command line"):]
    group = next(g for g in build_parser()._action_groups
                 if g.title == "options of the classic milter-manager")
    for action in group._group_actions:
        assert f"`{action.option_strings[0]}" in table, action.option_strings
    for option in ("--no-daemon", "-u", "-g", "--user-name", "--group-name", "-c", "-s",
                   "--show-config", "--verbose"):
        assert f"`{option}" in table, option
    assert len(SYSTEMD_INSTEAD) == 6


def test_report_summary_examples_match_the_program() -> None:
    from collections import Counter

    from mmd.cli.report import summary_line
    from mmd.report.aggregate import Summary, Totals
    from mmd.report.run import Result

    text = (ROOT / "docs" / "report.md").read_text()
    source = "the system journal (SYSLOG_IDENTIFIER=milter-manager)"
    empty = Result(Summary(), Totals(), None, source=source)
    assert summary_line(empty) in text
    burst = Result(Summary(entries=150, sessions=Counter(accept=50), first_time=1796523900,
                           last_time=1796523949), Totals(), "c", points=12,
                   graphs=[ROOT] * 24, source=source)
    assert summary_line(burst) in text
