"""Graph definitions (rrdtool graph arguments) for each period: pure data, drawn by the adapter.

Stored values are per-second rates of the cumulative totals; graphs draw counts per minute
(rate x 60), each pixel the average of the minutes it spans (2 minutes on the day graphs, 15 on
the week's, ...). The legend's numbers are computed here from the database rows (``Readings``),
not by rrdtool: rrdtool's VDEFs work on the per-pixel averages, so their "maximum" is the
busiest pixel, not the busiest minute, and a partly known last pixel counts twice in a TOTAL.
The busiest minute comes from the MAX archives, which keep the highest 1-minute rate of every
consolidated row.

The graph ends at the end of the last complete minute, rounded up to a whole pixel: the last
pixel averages the minutes known so far, so a burst in the newest minute is drawn. No
``--slope-mode``: it smooths a one-pixel burst away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mmd.report.headers import REPORT_KINDS
from mmd.report.layout import (
    MILTER_STATUSES,
    REPORTS,
    SESSION_STATUSES,
    SESSIONS,
    ds_name,
    milter_key,
)


@dataclass(frozen=True)
class Period:
    name: str  # file name part
    label: str  # "last day"
    seconds: int
    resolution: int  # seconds per point read (an archive of layout.ARCHIVES)
    width: int  # pixels: each pixel is a whole number of points

    @property
    def pixel(self) -> int:
        return self.seconds // self.width

    def window(self, end: int) -> tuple[int, int]:
        """(start, end) of the graph: ``end`` rounded up to a whole pixel."""
        last = math.ceil(end / self.pixel) * self.pixel
        return last - self.seconds, last


PERIODS = (
    Period("day", "last day", 86400, 60, 720),  # 2 minutes a pixel
    Period("week", "last week", 7 * 86400, 300, 672),  # 15 minutes
    Period("month", "last month", 31 * 86400, 1800, 744),  # 1 hour
    Period("year", "last year", 366 * 86400, 21600, 732),  # 12 hours
)

HEIGHT = 200

Row = tuple[int, list[float | None]]

# The 1-minute archive (layout.ARCHIVES[0], two days): wider periods read their newest part
# from it, because a consolidated row (5 minutes, 30 minutes, 6 hours) exists only once its
# span is over, and a burst in the last minutes would otherwise be missing from their graphs.
FINE = 60
FINE_SPAN = 36 * 3600


class Readings(Protocol):
    """Database rows (``rrdtool fetch``): data source names and rows."""

    def rows(
        self, database: Path, function: str, start: int, end: int, resolution: int
    ) -> tuple[list[str], list[Row]]: ...


def _fine_start(period: Period, end: int) -> int:
    """Where a period's graph switches to the 1-minute archive (a pixel boundary)."""
    _, last = period.window(end)
    return math.ceil((last - FINE_SPAN) / period.pixel) * period.pixel


def _known(
    readings: Readings, database: Path, function: str, start: int, end: int, resolution: int,
    source: str,
) -> list[tuple[int, float]]:
    names, rows = readings.rows(database, function, start, end, resolution)
    if source not in names:
        return []
    index = names.index(source)
    return [(when, value) for when, row in rows
            if start < when <= end and (value := row[index]) is not None]


def _column(
    readings: Readings, database: Path, function: str, period: Period, end: int, source: str
) -> list[tuple[int, float]]:
    """(seconds, value) of every known row of a data source in the graph's window: the
    period's own archive up to its newest row, the 1-minute archive after that."""
    start, last = period.window(end)
    coarse = _known(readings, database, function, start, last, period.resolution, source)
    samples = [(period.resolution, value) for _, value in coarse]
    if period.resolution != FINE:
        newest = max([when for when, _ in coarse] + [_fine_start(period, end) - FINE])
        fine = _known(readings, database, function, newest, last, FINE, source)
        samples += [(FINE, value) for _, value in fine]
    return samples


@dataclass(frozen=True)
class SeriesStats:
    total: float  # events in the period
    per_minute: float  # average per minute over the known minutes
    busiest_minute: float  # most events in one minute


def series_stats(
    readings: Readings, database: Path, source: str, period: Period, end: int
) -> SeriesStats:
    rates = _column(readings, database, "AVERAGE", period, end, source)
    peaks = _column(readings, database, "MAX", period, end, source)
    total = sum(seconds * rate for seconds, rate in rates)
    minutes = sum(seconds for seconds, _ in rates) / 60
    return SeriesStats(total, total / minutes if minutes else 0.0,
                       max((peak for _, peak in peaks), default=0.0) * 60)


STATUS_COLOURS = {
    "pass": "#4a86e8",
    "accept": "#33aa33",
    "reject": "#dd2222",
    "discard": "#e6b800",
    "temporary-failure": "#888888",
    "quarantine": "#a52a2a",
    "abort": "#ff9999",
    "skip": "#99dddd",
    "other": "#cc66cc",
}
REPORT_COLOURS = {
    "spam": "#dd2222",
    "ham": "#4a86e8",
    "virus": "#e6b800",
    "greylist": "#cc66cc",
    "spf_pass": "#33aa33",
    "spf_fail": "#aa3333",
    "spf_softfail": "#dd7733",
    "spf_neutral": "#999933",
    "spf_none": "#bbbbbb",
    "spf_temperror": "#666666",
    "spf_permerror": "#333333",
    "dkim_signed": "#3366cc",
    "dkim_pass": "#22aaaa",
    "dkim_fail": "#aa22aa",
    "dkim_other": "#77aadd",
}


@dataclass(frozen=True)
class Graph:
    file: str  # PNG file name in the output folder
    title: str
    args: tuple[str, ...]  # everything after `rrdtool graphv FILE`
    legends: tuple[str, ...]  # legend texts as rrdtool reports them (for checks)
    colours: tuple[str, ...] = ()  # "#rrggbb" of each drawn series (for checks of the PNG)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _common(title: str, vertical: str, period: Period, end: int) -> list[str]:
    start, last = period.window(end)
    return [
        "--title", title,
        "--vertical-label", vertical,
        "--start", str(start),
        "--end", str(last),
        "--width", str(period.width),
        "--height", str(HEIGHT),
        "--lower-limit", "0",
        "--units-exponent", "0",
    ]


def _def(
    vname: str, database: Path, source: str, period: Period, end: int, function: str = "AVERAGE"
) -> list[str]:
    """``vname`` = the source's rate: the period's archive, the newest part from the 1-minute
    archive (see FINE). MAX reads the highest 1-minute rate of each pixel."""
    reduce = ":reduce=MAX" if function == "MAX" else ""
    coarse = f"DEF:{vname}={database}:{source}:{function}:step={period.resolution}{reduce}"
    if period.resolution == FINE:
        return [coarse]
    return [
        coarse.replace(f"DEF:{vname}=", f"DEF:{vname}_coarse=", 1),
        f"DEF:{vname}_fine={database}:{source}:{function}:step={FINE}"
        f":start={_fine_start(period, end)}{reduce}",
        f"CDEF:{vname}={vname}_fine,UN,{vname}_coarse,{vname}_fine,IF",
    ]


def _count(value: float) -> str:
    """A count or rate for the legend: whole numbers plain, small rates with decimals."""
    if abs(value - round(value)) < 1e-6:
        return f"{round(value)}"
    return _small(value)


def _small(value: float) -> str:
    """Three significant digits without an exponent (0.0123, 1.23, 123)."""
    if abs(value) < 1e-6:
        return "0"
    if value < 0.001:
        return "<0.001"
    if value >= 100:
        return f"{value:.0f}"
    digits = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


class _Builder:
    """Arguments, legend texts and colours of one graph."""

    def __init__(self, readings: Readings, period: Period, end: int) -> None:
        self.readings = readings
        self.period = period
        self.end = end
        self.args: list[str] = []
        self.legends: list[str] = []
        self.colours: list[str] = []

    def comment(self, text: str) -> None:
        self.args.append(f"COMMENT:{_escape(text)}")

    def per_minute(
        self, vname: str, database: Path, source: str, shape: str, colour: str, legend: str,
        unit: str, stack: bool = False,
    ) -> None:
        """A data source drawn per minute; total, average and busiest minute in the legend."""
        stats = series_stats(self.readings, database, source, self.period, self.end)
        self.args += [
            *_def(f"{vname}_rate", database, source, self.period, self.end),
            f"CDEF:{vname}={vname}_rate,60,*",
            f"{shape}:{vname}{colour}:{_escape(legend)}" + (":STACK" if stack else ""),
        ]
        self.comment(f"total {stats.total:9.0f} {unit}")
        self.comment(f"avg {_count(stats.per_minute):>8}/min")
        self.args.append(f"COMMENT:{_escape(f'max {_count(stats.busiest_minute):>6}/min')}\\l")
        self.legends.append(legend)
        self.colours.append(colour)

    def graph(self, file: str, title: str) -> Graph:
        return Graph(file, title, tuple(self.args), tuple(self.legends), tuple(self.colours))


def _pad(labels: list[str]) -> list[str]:
    width = max(len(label) for label in labels)
    return [label.ljust(width) for label in labels]


def _duration(seconds: int) -> tuple[int, str]:
    """(count, unit): 120 -> (2, "minute"), 43200 -> (12, "hour")."""
    minutes = seconds // 60
    return (minutes, "minute") if minutes < 60 else (minutes // 60, "hour")


def _span(seconds: int) -> str:
    count, unit = _duration(seconds)
    return f"{count}-{unit}"


def _pixel_note(period: Period) -> str:
    count, unit = _duration(period.pixel)
    return (f"one pixel = {count} {unit}{'s' if count > 1 else ''}, drawn as the average per "
            "minute; max = the busiest minute")


def sessions_graph(rrd_dir: Path, period: Period, end: int, readings: Readings) -> Graph:
    title = f"Sessions ({period.label})"
    build = _Builder(readings, period, end)
    build.args += _common(title, "sessions/min", period, end)
    database = rrd_dir / f"{SESSIONS.key}.rrd"
    labels = _pad(["SMTP sessions", "disconnected"])
    build.per_minute("sessions", database, "sessions", "AREA", "#4a86e8", labels[0], "sessions")
    if period.pixel > 60:  # a pixel spans several minutes: also draw its busiest one
        build.args += [
            *_def("peak_rate", database, "sessions", period, end, "MAX"),
            "CDEF:peak=peak_rate,60,*",
            f"LINE1:peak#1c3f80:{_escape('busiest minute in each pixel')}\\l",
        ]
        build.legends.append("busiest minute in each pixel")
        build.colours.append("#1c3f80")
    build.per_minute("disconnected", database, "disconnected", "LINE2", "#dd2222", labels[1],
                     "sessions")
    build.args.append(f"COMMENT:{_escape(_pixel_note(period))}\\l")
    return build.graph(f"sessions-{period.name}.png", title)


def concurrency_graph(rrd_dir: Path, period: Period, end: int, readings: Readings) -> Graph:
    title = f"Concurrent sessions ({period.label})"
    build = _Builder(readings, period, end)
    build.args += _common(title, "sessions in flight", period, end)
    build.args.remove("--units-exponent")
    build.args.remove("0")  # small averages (0.003 sessions) read best with SI prefixes
    database = rrd_dir / f"{SESSIONS.key}.rrd"
    legend = "sessions in flight (average, by end time)"
    busy = _column(readings, database, "AVERAGE", period, end, "elapsed_us")
    peaks = _column(readings, database, "MAX", period, end, "elapsed_us")
    seconds = sum(span for span, _ in busy)
    average = sum(span * rate for span, rate in busy) / seconds / 1_000_000 if seconds else 0.0
    busiest = max((peak for _, peak in peaks), default=0.0) / 1_000_000
    build.args += [
        *_def("busy", database, "elapsed_us", period, end),
        "CDEF:flight=busy,1000000,/",
        f"AREA:flight#4a86e8:{_escape(legend)}\\l",
    ]
    build.comment(f"avg {_small(average)}")
    build.args.append(f"COMMENT:{_escape(f'busiest minute {_small(busiest)}')}\\l")
    build.legends.append(legend)
    build.colours.append("#4a86e8")
    return build.graph(f"concurrency-{period.name}.png", title)


def statuses_graph(rrd_dir: Path, period: Period, end: int, readings: Readings) -> Graph:
    title = f"Final statuses ({period.label})"
    build = _Builder(readings, period, end)
    build.args += _common(title, "sessions/min", period, end)
    database = rrd_dir / f"{SESSIONS.key}.rrd"
    statuses = [*SESSION_STATUSES, "other"]
    for index, (status, label) in enumerate(zip(statuses, _pad(statuses), strict=True)):
        build.per_minute(f"s{index}", database, ds_name(status), "AREA", STATUS_COLOURS[status],
                         label, "sessions", stack=index > 0)
    return build.graph(f"statuses-{period.name}.png", title)


def reports_graph(rrd_dir: Path, period: Period, end: int, readings: Readings) -> Graph:
    title = f"Reports from added headers ({period.label})"
    build = _Builder(readings, period, end)
    build.args += _common(title, "messages/min", period, end)
    database = rrd_dir / f"{REPORTS.key}.rrd"
    for index, (kind, label) in enumerate(zip(REPORT_KINDS, _pad(list(REPORT_KINDS)),
                                              strict=True)):
        build.per_minute(f"r{index}", database, ds_name(kind), "LINE2", REPORT_COLOURS[kind],
                         label, "messages")
    return build.graph(f"reports-{period.name}.png", title)


def milter_verdicts_graph(
    rrd_dir: Path, milter: str, period: Period, end: int, readings: Readings
) -> Graph:
    key = milter_key(milter)
    title = f"Child {milter}: verdicts ({period.label})"
    build = _Builder(readings, period, end)
    build.args += _common(title, "verdicts/min", period, end)
    database = rrd_dir / f"{key}.rrd"
    statuses = [*MILTER_STATUSES, "other"]
    labels = _pad([*statuses, "errors"])
    for index, status in enumerate(statuses):
        build.per_minute(f"v{index}", database, ds_name(status), "AREA", STATUS_COLOURS[status],
                         labels[index], "verdicts", stack=index > 0)
    build.per_minute("errors", database, "errors", "LINE2", "#000000", labels[-1], "failures")
    return build.graph(f"{key}-verdicts-{period.name}.png", title)


def milter_elapsed_graph(
    rrd_dir: Path, milter: str, period: Period, end: int, readings: Readings
) -> Graph:
    key = milter_key(milter)
    title = f"Child {milter}: milliseconds until verdict ({period.label})"
    build = _Builder(readings, period, end)
    build.args += _common(title, "milliseconds", period, end)
    database = rrd_dir / f"{key}.rrd"
    legend = "milliseconds from session start to verdict (average)"
    counts = _column(readings, database, "AVERAGE", period, end, "verdicts")
    busy = _column(readings, database, "AVERAGE", period, end, "elapsed_us")
    ratios = [b / c / 1000 for (_, b), (_, c) in zip(busy, counts, strict=False) if c > 0]
    verdicts = sum(span * c for span, c in counts)
    average = sum(span * b for span, b in busy) / verdicts / 1000 if verdicts > 0 else 0.0
    build.args += [
        *_def("count", database, "verdicts", period, end),
        *_def("busy", database, "elapsed_us", period, end),
        "CDEF:ms=count,0,GT,busy,count,/,1000,/,UNKN,IF",
        f"AREA:ms#4a86e8:{_escape(legend)}\\l",
    ]
    build.comment(f"avg {average:.1f} ms")
    slowest = f"max {max(ratios, default=0.0):.1f} ms ({_span(period.resolution)} average)"
    build.args.append(f"COMMENT:{_escape(slowest)}\\l")
    build.legends.append(legend)
    build.colours.append("#4a86e8")
    return build.graph(f"{key}-elapsed-{period.name}.png", title)


def all_graphs(
    rrd_dir: Path, milters: Sequence[str], end: int, readings: Readings
) -> list[tuple[Period, list[Graph]]]:
    """Every graph, grouped by period, in page order."""
    pages: list[tuple[Period, list[Graph]]] = []
    for period in PERIODS:
        graphs = [
            sessions_graph(rrd_dir, period, end, readings),
            concurrency_graph(rrd_dir, period, end, readings),
            statuses_graph(rrd_dir, period, end, readings),
            reports_graph(rrd_dir, period, end, readings),
        ]
        for milter in sorted(milters):
            graphs.append(milter_verdicts_graph(rrd_dir, milter, period, end, readings))
            graphs.append(milter_elapsed_graph(rrd_dir, milter, period, end, readings))
        pages.append((period, graphs))
    return pages
