"""``milter-manager report``: statistics and graphs from the journal (run by a systemd timer).

Reads mmd's statistics entries since the last run, updates the RRD databases and the
Prometheus file, draws the day/week/month/year graphs and index.html.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from mmd.adapters.journal_reader import JournalReadError
from mmd.adapters.rrd import RrdError
from mmd.report.aggregate import Summary
from mmd.report.layout import SESSION_STATUSES
from mmd.report.run import Options, Result, run
from mmd.report.state import StateError

DEFAULT_STATE_DIRECTORY = Path("/var/lib/milter-manager/report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="milter-manager report",
        description=(
            "Statistics and graphs from the journal: reads the entries milter-manager wrote "
            "since the last run (SYSLOG_IDENTIFIER=milter-manager, MMD_EVENT=session-end, "
            "milter-verdict, milter-error, session-disconnected, header-add), adds them to "
            "RRD databases and running totals, and draws sessions, concurrency, final "
            "statuses, each child's verdicts and latency, and spam/virus/greylist/SPF/DKIM "
            "report counts for the last day, week, month and year. "
            "milter-manager-report.timer runs it every 5 minutes."
        ),
        epilog=(
            "The journal cursor, the totals and the databases live in the state directory; "
            "running twice never counts an entry twice. Needs read access to the journal "
            "(root, or the systemd-journal or adm group) and the rrdtool command. "
            "Without journald (a container, a shell), give the daemon's text log with "
            "--from-file (docs/report.md). "
            "Exit status: 0 done (also when nothing new was found: the summary says why), "
            "1 journal/rrdtool/state error (e.g. no journal files at all), 2 usage."
        ),
    )
    parser.add_argument(
        "--output-directory", metavar="DIR", type=Path,
        help="write the PNG graphs and index.html here (without it: no graphs)",
    )
    parser.add_argument(
        "--state-directory", metavar="DIR", type=Path, default=DEFAULT_STATE_DIRECTORY,
        help="journal cursor, totals (state.json) and RRD databases (rrd/) "
        f"(default {DEFAULT_STATE_DIRECTORY})",
    )
    parser.add_argument(
        "--prometheus-file", metavar="FILE", type=Path,
        help="also write the counters in Prometheus text format (for node_exporter's textfile "
        "collector, e.g. /var/lib/prometheus/node-exporter/milter-manager.prom), atomically",
    )
    parser.add_argument(
        "--journal-directory", metavar="DIR", type=Path,
        help="read journal files from DIR instead of the system journal (journalctl -D)",
    )
    parser.add_argument(
        "--from-file", metavar="FILE", type=Path,
        help="read the daemon's text log instead of the journal: the lines it writes to "
        "stderr without journald ('INFO ...: message MMD_EVENT=session-end ...'), each "
        "best led by an ISO 8601 timestamp (lines without one count as now); read on from "
        "where the last run stopped; use a state directory of its own",
    )
    parser.add_argument(
        "--since", metavar="TIME",
        help="on the first run (no cursor saved yet), start at TIME, in journalctl's --since "
        "syntax (e.g. '2026-01-01', '-7d', 'yesterday'); default: the whole journal",
    )
    parser.add_argument(
        "--now", metavar="SECONDS", type=float,
        help="Unix time to treat as now: minutes before it are complete and written to the "
        "databases (for replaying a copied journal, and for tests); default: the clock",
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None,
        help="report progress on stderr (default: when stderr is a terminal)",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress lines",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary at the end")
    return parser


def _time(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _progress_printer(stream: TextIO) -> Callable[[Summary, float], None]:
    def show(summary: Summary, elapsed: float) -> None:
        rate = summary.entries / elapsed if elapsed > 0 else 0.0
        stream.write(
            f"\rread {summary.entries:,} entries ({rate:,.0f}/s), "
            f"up to {_time(summary.last_time)}   "
        )
        stream.flush()

    return show


def summary_line(result: Result) -> str:
    """One line for the journal (the timer's runs)."""
    summary = result.summary
    counts = " ".join(f"{status}={count}" for status, count in sorted(summary.sessions.items()))
    return (
        f"read {summary.entries} entries, {sum(summary.sessions.values())} sessions"
        f"{' (' + counts + ')' if counts else ''}, "
        f"{_time(summary.first_time)} .. {_time(summary.last_time)}; "
        f"{result.points} database points, {len(result.graphs)} graphs"
        f" from {result.source}"
        + (f"; {reason}" if (reason := result.nothing_found()) else "") + "\n"
    )


def summary_text(result: Result) -> str:
    summary = result.summary
    lines = [
        f"read from: {result.source}",
        f"entries read: {summary.entries}",
        f"sessions: {sum(summary.sessions.values())}",
    ]
    statuses = list(SESSION_STATUSES) + sorted(set(summary.sessions) - set(SESSION_STATUSES))
    lines += [f"  {status}: {summary.sessions[status]}" for status in statuses]
    lines.append(f"time range: {_time(summary.first_time)} .. {_time(summary.last_time)}")
    lines.append(f"database points written: {result.points}")
    lines.append(f"graphs drawn: {len(result.graphs)}")
    lines.append(f"sessions since the first run: {sum(result.totals.sessions.values())}")
    reason = result.nothing_found()
    if reason:
        lines.append(f"nothing read: {reason}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    progress = _progress_printer(sys.stderr) if show_progress else None
    options = Options(
        state_directory=args.state_directory,
        output_directory=args.output_directory,
        prometheus_file=args.prometheus_file,
        journal_directory=args.journal_directory,
        since=args.since,
        progress=progress,
        now=args.now,
        from_file=args.from_file,
    )
    try:
        result = run(options)
    except (JournalReadError, RrdError, StateError, OSError) as error:
        if show_progress:
            sys.stderr.write("\n")
        print(f"milter-manager report: {error}", file=sys.stderr)
        return 1
    if show_progress:
        sys.stderr.write("\n")
    for note in result.notes:
        print(f"milter-manager report: journalctl: {note}", file=sys.stderr)
    if not args.quiet:
        text = summary_text(result) if sys.stdout.isatty() else summary_line(result)
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
