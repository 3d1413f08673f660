"""Graph definitions (rrdtool graph arguments) for each period: pure data, drawn by the adapter.

Stored values are per-second rates of the cumulative totals; graphs show counts per minute
(rate x 60) and, in the legend, the period's total (rrdtool's TOTAL of the rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    width: int  # pixels: each pixel is a whole number of points, so totals stay exact

    @property
    def pixel(self) -> int:
        return self.seconds // self.width


PERIODS = (
    Period("day", "last day", 86400, 60, 720),  # 2 minutes a pixel
    Period("week", "last week", 7 * 86400, 300, 672),  # 15 minutes
    Period("month", "last month", 31 * 86400, 1800, 744),  # 1 hour
    Period("year", "last year", 366 * 86400, 21600, 732),  # 12 hours
)

HEIGHT = 200

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


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _common(title: str, vertical: str, period: Period, end: int) -> list[str]:
    # rrdtool averages the points of one pixel; whole, aligned pixels keep the totals exact
    end -= end % period.pixel
    return [
        "--title", title,
        "--vertical-label", vertical,
        "--start", str(end - period.seconds),
        "--end", str(end),
        "--width", str(period.width),
        "--height", str(HEIGHT),
        "--lower-limit", "0",
        "--units-exponent", "0",
        "--slope-mode",
    ]


def _def(vname: str, database: Path, source: str, period: Period) -> str:
    return f"DEF:{vname}={database}:{source}:AVERAGE:step={period.resolution}"


def _per_minute(
    period: Period, args: list[str], legends: list[str], vname: str, database: Path,
    source: str,
    shape: str, colour: str, legend: str, unit: str, stack: bool = False,
) -> None:
    """A data source drawn per minute, with total / average / maximum in the legend."""
    args += [
        _def(f"{vname}_rate", database, source, period),
        f"CDEF:{vname}={vname}_rate,60,*",
        f"VDEF:{vname}_total={vname}_rate,TOTAL",
        f"VDEF:{vname}_avg={vname},AVERAGE",
        f"VDEF:{vname}_max={vname},MAXIMUM",
        f"{shape}:{vname}{colour}:{_escape(legend)}" + (":STACK" if stack else ""),
        f"GPRINT:{vname}_total:total %9.0lf {unit}",
        f"GPRINT:{vname}_avg:avg %8.2lf/min",
        f"GPRINT:{vname}_max:max %7.0lf/min\\l",
    ]
    legends.append(legend)


def _pad(labels: list[str]) -> list[str]:
    width = max(len(label) for label in labels)
    return [label.ljust(width) for label in labels]


def sessions_graph(rrd_dir: Path, period: Period, end: int) -> Graph:
    title = f"Sessions ({period.label})"
    args = _common(title, "sessions/min", period, end)
    legends: list[str] = []
    database = rrd_dir / f"{SESSIONS.key}.rrd"
    labels = _pad(["SMTP sessions", "disconnected"])
    _per_minute(period, args, legends, "sessions", database, "sessions", "AREA", "#4a86e8",
                labels[0], "sessions")
    _per_minute(period, args, legends, "disconnected", database, "disconnected", "LINE2", "#dd2222",
                labels[1], "sessions")
    return Graph(f"sessions-{period.name}.png", title, tuple(args), tuple(legends))


def concurrency_graph(rrd_dir: Path, period: Period, end: int) -> Graph:
    title = f"Concurrent sessions ({period.label})"
    args = [*_common(title, "sessions in flight", period, end), "--left-axis-format", "%.2lf"]
    database = rrd_dir / f"{SESSIONS.key}.rrd"
    legend = "sessions in flight (average, by end time)"
    args += [
        _def("busy", database, "elapsed_us", period),
        "CDEF:flight=busy,1000000,/",
        "VDEF:flight_avg=flight,AVERAGE",
        "VDEF:flight_max=flight,MAXIMUM",
        f"LINE2:flight#4a86e8:{_escape(legend)}\\l",
        "GPRINT:flight_avg:avg %8.2lf",
        "GPRINT:flight_max:max %8.2lf\\l",
    ]
    return Graph(f"concurrency-{period.name}.png", title, tuple(args), (legend,))


def statuses_graph(rrd_dir: Path, period: Period, end: int) -> Graph:
    title = f"Final statuses ({period.label})"
    args = _common(title, "sessions/min", period, end)
    legends: list[str] = []
    database = rrd_dir / f"{SESSIONS.key}.rrd"
    statuses = [*SESSION_STATUSES, "other"]
    for index, (status, label) in enumerate(zip(statuses, _pad(statuses), strict=True)):
        _per_minute(period, args, legends, f"s{index}", database, ds_name(status), "AREA",
                    STATUS_COLOURS[status], label, "sessions", stack=index > 0)
    return Graph(f"statuses-{period.name}.png", title, tuple(args), tuple(legends))


def reports_graph(rrd_dir: Path, period: Period, end: int) -> Graph:
    title = f"Reports from added headers ({period.label})"
    args = _common(title, "messages/min", period, end)
    legends: list[str] = []
    database = rrd_dir / f"{REPORTS.key}.rrd"
    for index, (kind, label) in enumerate(zip(REPORT_KINDS, _pad(list(REPORT_KINDS)),
                                              strict=True)):
        _per_minute(period, args, legends, f"r{index}", database, ds_name(kind), "LINE2",
                    REPORT_COLOURS[kind], label, "messages")
    return Graph(f"reports-{period.name}.png", title, tuple(args), tuple(legends))


def milter_verdicts_graph(rrd_dir: Path, milter: str, period: Period, end: int) -> Graph:
    key = milter_key(milter)
    title = f"Child {milter}: verdicts ({period.label})"
    args = _common(title, "verdicts/min", period, end)
    legends: list[str] = []
    database = rrd_dir / f"{key}.rrd"
    statuses = [*MILTER_STATUSES, "other"]
    labels = _pad([*statuses, "errors"])
    for index, status in enumerate(statuses):
        _per_minute(period, args, legends, f"v{index}", database, ds_name(status), "AREA",
                    STATUS_COLOURS[status], labels[index], "verdicts", stack=index > 0)
    _per_minute(period, args, legends, "errors", database, "errors", "LINE2", "#000000", labels[-1],
                "failures")
    return Graph(f"{key}-verdicts-{period.name}.png", title, tuple(args), tuple(legends))


def milter_elapsed_graph(rrd_dir: Path, milter: str, period: Period, end: int) -> Graph:
    key = milter_key(milter)
    title = f"Child {milter}: seconds until verdict ({period.label})"
    args = [*_common(title, "seconds", period, end), "--left-axis-format", "%.2lf"]
    database = rrd_dir / f"{key}.rrd"
    legend = "seconds from session start to verdict (average)"
    args += [
        _def("count", database, "verdicts", period),
        _def("busy", database, "elapsed_us", period),
        "CDEF:seconds=count,0,GT,busy,count,/,1000000,/,UNKN,IF",
        "VDEF:seconds_avg=seconds,AVERAGE",
        "VDEF:seconds_max=seconds,MAXIMUM",
        f"LINE2:seconds#4a86e8:{_escape(legend)}\\l",
        "GPRINT:seconds_avg:avg %8.3lf s",
        "GPRINT:seconds_max:max %8.3lf s\\l",
    ]
    return Graph(f"{key}-elapsed-{period.name}.png", title, tuple(args), (legend,))


def all_graphs(rrd_dir: Path, milters: list[str], end: int) -> list[tuple[Period, list[Graph]]]:
    """Every graph, grouped by period, in page order."""
    pages: list[tuple[Period, list[Graph]]] = []
    for period in PERIODS:
        graphs = [
            sessions_graph(rrd_dir, period, end),
            concurrency_graph(rrd_dir, period, end),
            statuses_graph(rrd_dir, period, end),
            reports_graph(rrd_dir, period, end),
        ]
        for milter in sorted(milters):
            graphs.append(milter_verdicts_graph(rrd_dir, milter, period, end))
            graphs.append(milter_elapsed_graph(rrd_dir, milter, period, end))
        pages.append((period, graphs))
    return pages
