"""One report run: journal -> totals -> RRD databases -> state -> Prometheus file -> graphs.

Order matters for crash safety: the databases are updated before the state (with the new cursor)
is saved; a run that dies in between re-reads those entries next time, and points the
databases already hold are skipped (their newest point is read back with ``rrdtool last``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mmd.adapters import rrd
from mmd.adapters.journal_reader import JournalQuery, read_entries
from mmd.adapters.report_files import read_text, write_atomically
from mmd.report import graphs as graph_definitions
from mmd.report import layout, prometheus
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


@dataclass
class Result:
    summary: Summary
    totals: Totals
    cursor: str | None
    points: int = 0
    graphs: list[Path] = field(default_factory=list)


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
    query = JournalQuery(after_cursor=state.cursor, since=options.since,
                         directory=options.journal_directory, events=EVENTS, fields=FIELDS)
    started = time.monotonic()
    cursor = state.cursor
    progress = options.progress
    summary = aggregator.summary
    with read_entries(query) as entries:
        for entry in entries:
            flush = aggregator.add(entry)
            cursor = entry.get("__CURSOR") or cursor
            if flush is not None:
                databases.add(_flush_points(flush, databases))
            if progress is not None and summary.entries % PROGRESS_EVERY == 0:
                progress(summary, time.monotonic() - started)
    now = clock() if options.now is None else options.now
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

    result = Result(summary, state.totals, cursor, databases.written)
    if options.output_directory is not None:
        result.graphs = draw(options.output_directory, databases.folder, state.totals, now,
                             state.step)
    return result


def draw(
    output: Path, rrd_folder: Path, totals: Totals, now: float, step: int
) -> list[Path]:
    """Every graph whose database exists, then index.html."""
    end = int(now // step) * step
    milters = [name for name in totals.milters
               if (rrd_folder / f"{layout.milter_key(name)}.rrd").exists()]
    pages: list[tuple[graph_definitions.Period, list[DrawnGraph]]] = []
    drawn: list[Path] = []
    have_sessions = (rrd_folder / f"{layout.SESSIONS.key}.rrd").exists()
    for period, definitions in graph_definitions.all_graphs(rrd_folder, milters, end):
        page: list[DrawnGraph] = []
        if have_sessions:
            for graph in definitions:
                target = output / graph.file
                info = rrd.graph(target, graph.args)
                page.append(DrawnGraph(graph.file, graph.title, int(info["image_width"]),
                                       int(info["image_height"])))
                drawn.append(target)
        pages.append((period, page))
    write_atomically(output / "index.html", render_html(pages, totals, now))
    return drawn
