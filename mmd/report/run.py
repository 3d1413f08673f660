"""One report run: journal -> totals -> RRD databases -> state -> Prometheus file -> graphs.

Order matters for crash safety: the databases are updated before the state (with the new cursor)
is saved; a run that dies in between re-reads those entries next time, and points the
databases already hold are skipped (their newest point is read back with ``rrdtool last``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmd.adapters import rrd
from mmd.adapters.journal_reader import JournalQuery, describe, read_entries
from mmd.adapters.report_files import file_cursor, read_new_lines, read_text, write_atomically
from mmd.report import graphs as graph_definitions
from mmd.report import layout, prometheus, text_log
from mmd.report import state as state_file
from mmd.report.aggregate import EVENTS, FIELDS, Aggregator, Flush, Summary, Totals
from mmd.report.html import DrawnGraph
from mmd.report.html import render as render_html

STATE_FILE = "state.json"
RRD_FOLDER = "rrd"
PROGRESS_EVERY = 50_000
POINTS_IN_MEMORY = 20_000  # pending RRD points before they are written out


@dataclass
class Options:
    state_directory: Path
    output_directory: Path | None = None
    prometheus_file: Path | None = None
    journal_directory: Path | None = None
    since: str | None = None
    progress: Callable[[Summary, float], None] | None = None
    now: float | None = None  # Unix time that counts as now (replays of old journals, tests)
    from_file: Path | None = None  # the daemon's text log instead of the journal


@dataclass
class Result:
    summary: Summary
    totals: Totals
    cursor: str | None
    points: int = 0
    graphs: list[Path] = field(default_factory=list)
    source: str = "the system journal"  # what was read, in words
    resumed: bool = False  # read on from a saved cursor (else from the start / --since)
    notes: list[str] = field(default_factory=list)  # journalctl's hints and warnings

    def nothing_found(self) -> str | None:
        """Why no entry was read, in words, or None when some were."""
        if self.summary.entries:
            return None
        if self.resumed:
            return f"no new statistics entries in {self.source} since the last run"
        return (f"no statistics entries (MMD_EVENT=session-end, ...) in {self.source}: has "
                "milter-manager handled a session yet, and does it log there? "
                "See docs/report.md")


class Databases:
    """Pending points per database, written in batches; creates databases on first use."""

    def __init__(self, folder: Path, step: int, last_update: dict[str, int]) -> None:
        self.folder = folder
        self.step = step
        self.last_update = last_update
        self.pending: dict[str, list[tuple[int, list[int]]]] = {}
        self.count = 0
        self.written = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.rrd"

    def add(self, points: dict[str, list[tuple[int, list[int]]]]) -> None:
        for key, batch in points.items():
            self.pending.setdefault(key, []).extend(batch)
            self.count += len(batch)
        if self.count >= POINTS_IN_MEMORY:
            self.write()

    def write(self) -> None:
        for key, batch in self.pending.items():
            path = self.path(key)
            if not path.exists():
                sources = (
                    layout.SESSIONS.sources if key == layout.SESSIONS.key
                    else layout.REPORTS.sources if key == layout.REPORTS.key
                    else layout.MILTER_SOURCES
                )
                first, row = batch[0]
                baseline = first - layout.HISTORY
                rrd.create(path, sources, start=baseline - 1, step=self.step,
                           heartbeat=layout.HEARTBEAT, archives=layout.ARCHIVES)
                batch = [(baseline, row), *batch]
                newest = baseline - 1
            else:  # the state may be older than the database (lost, or a crash before saving)
                newest = rrd.last(path)
            fresh = [point for point in batch if point[0] > newest]
            if fresh:
                rrd.update(path, fresh)
                self.written += len(fresh)
        self.pending = {}
        self.count = 0


def _flush_points(
    flush: Flush, databases: Databases
) -> dict[str, list[tuple[int, list[int]]]]:
    return layout.updates(flush.start, flush.end, flush.before, flush.after,
                          databases.last_update)


def run(options: Options, clock: Callable[[], float] = time.time) -> Result:
    state_path = options.state_directory / STATE_FILE
    text = read_text(state_path)
    state = state_file.loads(text) if text is not None else state_file.State()
    databases = Databases(options.state_directory / RRD_FOLDER, state.step, state.last_update)
    aggregator = Aggregator(state.totals, step=state.step, open_bucket=state.open_bucket,
                            flushed=state.flushed,
                            not_before=max(state.last_update.values(), default=None))
    notes: list[str] = []
    now = clock() if options.now is None else options.now
    reader, source = _reader(options, state.cursor, now, notes)
    started = time.monotonic()
    cursor = state.cursor
    progress = options.progress
    summary = aggregator.summary
    with reader as entries:
        for entry in entries:
            flush = aggregator.add(entry)
            cursor = entry.get("__CURSOR") or cursor
            if flush is not None:
                databases.add(_flush_points(flush, databases))
            if progress is not None and summary.entries % PROGRESS_EVERY == 0:
                progress(summary, time.monotonic() - started)
    flush = aggregator.finish(now)
    if flush is not None:
        databases.add(_flush_points(flush, databases))
    quiet = aggregator.open_bucket
    if quiet is None:
        quiet = int(now // state.step) * state.step
    databases.add(layout.quiet_until(quiet, aggregator.flushed, databases.last_update))
    databases.write()

    state.cursor = cursor
    state.totals = aggregator.totals
    state.open_bucket = aggregator.open_bucket
    state.flushed = aggregator.flushed
    write_atomically(state_path, state_file.dumps(state), mode=0o640)

    if options.prometheus_file is not None:
        write_atomically(options.prometheus_file, prometheus.render(state.totals, now))

    result = Result(summary, state.totals, cursor, databases.written, source=source,
                    resumed=state.cursor is not None, notes=notes)
    if options.output_directory is not None:
        result.graphs = draw(options.output_directory, databases.folder, state.totals, now,
                             state.step, result)
    return result


def _reader(
    options: Options, cursor: str | None, now: float, notes: list[str]
) -> tuple[AbstractContextManager[Iterator[dict[str, Any]]], str]:
    """The entries to read and what they come from, in words; a cursor of the other kind of
    source is refused (one state directory per source)."""
    from_file = options.from_file
    is_file_cursor = cursor is not None and cursor.startswith("file:")
    if from_file is not None:
        if cursor is not None and not is_file_cursor:
            raise state_file.StateError(
                "the state directory holds a journal cursor: give --from-file its own "
                "--state-directory")
        return _file_entries(from_file, cursor, now), f"the log file {from_file}"
    if is_file_cursor:
        raise state_file.StateError(
            "the state directory holds a --from-file position: give the journal its own "
            "--state-directory")
    query = JournalQuery(after_cursor=cursor, since=options.since,
                         directory=options.journal_directory, events=EVENTS, fields=FIELDS)
    return read_entries(query, notes), describe(query)


@contextmanager
def _file_entries(path: Path, cursor: str | None, now: float) -> Iterator[Iterator[dict[str, Any]]]:
    """Entries of the daemon's text log; lines without a timestamp count at ``now``."""

    def entries() -> Iterator[dict[str, Any]]:
        for line, offset in read_new_lines(path, cursor):
            entry = text_log.entry(line, now, EVENTS)
            if entry is not None:
                entry["__CURSOR"] = file_cursor(path, offset)
                yield entry

    yield entries()


class DatabaseReadings:
    """``graphs.Readings`` from the databases, each range fetched once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[Path, str, int, int, int],
                         tuple[list[str], list[graph_definitions.Row]]] = {}

    def rows(
        self, database: Path, function: str, start: int, end: int, resolution: int
    ) -> tuple[list[str], list[graph_definitions.Row]]:
        key = (database, function, start, end, resolution)
        if key not in self.cache:
            self.cache[key] = (rrd.fetch(database, function, start, end, resolution)
                               if database.exists() else ([], []))
        return self.cache[key]


def draw(
    output: Path, rrd_folder: Path, totals: Totals, now: float, step: int,
    result: Result | None = None,
) -> list[Path]:
    """Every graph whose database exists, then index.html."""
    end = int(now // step) * step
    milters = [name for name in totals.milters
               if (rrd_folder / f"{layout.milter_key(name)}.rrd").exists()]
    pages: list[tuple[graph_definitions.Period, list[DrawnGraph]]] = []
    drawn: list[Path] = []
    have_sessions = (rrd_folder / f"{layout.SESSIONS.key}.rrd").exists()
    readings = DatabaseReadings()
    for period, definitions in graph_definitions.all_graphs(rrd_folder, milters, end, readings):
        page: list[DrawnGraph] = []
        if have_sessions:
            for graph in definitions:
                target = output / graph.file
                info = rrd.graph(target, graph.args)
                page.append(DrawnGraph(graph.file, graph.title, int(info["image_width"]),
                                       int(info["image_height"])))
                drawn.append(target)
        pages.append((period, page))
    write_atomically(output / "index.html", render_html(
        pages, totals, now, "the system journal" if result is None else result.source,
        None if drawn or result is None else result.nothing_found()))
    return drawn
