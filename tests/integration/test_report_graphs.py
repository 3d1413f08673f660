"""The report's graphs, read back pixel by pixel: a burst and steady traffic are drawn where
they happened on every period's graph, the legend's "max" is the busiest minute, nothing at
the graph's end is cut off. Input is the daemon's own text log (``--from-file``), written by
the daemon's recorder and formatter (no journald needed); rrdtool is the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmd.adapters import rrd
from mmd.report.graphs import PERIODS, all_graphs
from mmd.report.run import DatabaseReadings
from tests.support import png
from tests.support.daemon_log import write_log

ROOT = Path(__file__).resolve().parents[2]


def report(tmp_path: Path, log: Path, now: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmd.cli.report", "--from-file", str(log),
         "--state-directory", str(tmp_path / "state"),
         "--output-directory", str(tmp_path / "html"), "--now", str(now)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def near(colour: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return sum(abs(a - b) for a, b in zip(colour, want, strict=True)) < 60


def drawn_columns(image: png.Image, info: dict[str, str], colours: list[str]) -> set[int]:
    """x of every column of the data area with a pixel of one of ``colours``."""
    left, top = int(info["graph_left"]), int(info["graph_top"])
    width, height = int(info["graph_width"]), int(info["graph_height"])
    wanted = [png.hex_colour(c) for c in colours]
    return {
        x for x in range(left, left + width)
        if any(near(image.pixel(x, y), w) for y in range(top, top + height) for w in wanted)
    }


def column(info: dict[str, str], when: float) -> int:
    start, end = int(info["graph_start"]), int(info["graph_end"])
    return int(info["graph_left"]) + int((when - start) * int(info["graph_width"]) / (end - start))


def graphs_of(tmp_path: Path, now: float) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Per period: (file, rrdtool's report) of the sessions, statuses and verdicts graphs."""
    folder = tmp_path / "state" / "rrd"
    pages = all_graphs(folder, ["spamass"], int(now // 60 * 60), DatabaseReadings())
    found: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for period, graphs in pages:
        for graph in graphs:
            if graph.file.split("-")[0] in ("sessions", "statuses") or "verdicts" in graph.file:
                info = rrd.graph(tmp_path / "check" / graph.file, graph.args)
                found.setdefault(period.name, []).append((graph.file, info))
    return found


def legend_after(info: dict[str, str], label: str) -> list[str]:
    numbered = sorted((int(k[7:-1]), v.strip()) for k, v in info.items()
                      if k.startswith("legend["))
    texts = [text for _, text in numbered]
    at = next(i for i, text in enumerate(texts) if text.startswith(label))
    return texts[at + 1 : at + 4]


def test_a_burst_just_before_the_report_is_drawn_on_every_graph(tmp_path: Path) -> None:
    now = time.time()
    burst = (int(now) // 60 - 1) * 60  # the last complete minute
    log = tmp_path / "mmd.log"
    write_log(log, [burst + i * 0.5 for i in range(50)])
    result = report(tmp_path, log, now)
    assert result.returncode == 0, result.stderr
    assert "50 sessions (accept=50)" in result.stdout
    assert (tmp_path / "html" / "sessions-day.png").exists()
    colours = {"sessions": ["#4a86e8", "#1c3f80"], "statuses": ["#33aa33"],
               "milter": ["#33aa33"]}
    for period in PERIODS:
        for file, info in graphs_of(tmp_path, now)[period.name]:
            image = png.read(tmp_path / "check" / file)
            drawn = drawn_columns(image, info, colours[file.split("-")[0]])
            x = column(info, burst + 30)
            assert drawn, f"{file}: no data pixels"
            assert drawn <= set(range(x - 2, x + 3)), (file, sorted(drawn), x)
            if not file.startswith("milter"):
                label = "SMTP sessions" if file.startswith("sessions") else "accept"
                total, _, busiest = legend_after(info, label)
                assert total.split() == ["total", "50", "sessions"], (file, total)
                assert busiest.split() == ["max", "50/min"], (file, busiest)


def test_steady_traffic_is_drawn_all_along(tmp_path: Path) -> None:
    now = time.time()
    last = (int(now) // 60 - 1) * 60
    first = last - 4 * 3600
    log = tmp_path / "mmd.log"
    write_log(log, [float(t) for t in range(first, last + 60, 60)])  # one session a minute
    result = report(tmp_path, log, now)
    assert result.returncode == 0, result.stderr
    file, info = graphs_of(tmp_path, now)["day"][0]
    assert file == "sessions-day.png"
    drawn = drawn_columns(png.read(tmp_path / "check" / file), info, ["#4a86e8", "#1c3f80"])
    span = set(range(column(info, first + 60), column(info, last)))
    assert span <= drawn, sorted(span - drawn)
    assert min(drawn) >= column(info, first) - 2
    total, average, busiest = legend_after(info, "SMTP sessions")
    assert total.split() == ["total", str(4 * 60 + 1), "sessions"]
    assert average.split() == ["avg", "0.167/min"]  # 241 sessions in 1440 minutes
    assert busiest.split() == ["max", "1/min"]


@pytest.mark.parametrize(("name", "unit"), [("concurrency", "sessions in flight"),
                                            ("milter-spamass-elapsed", "milliseconds")])
def test_small_values_are_drawn_with_readable_axes(tmp_path: Path, name: str, unit: str) -> None:
    """Concurrency (0.025 sessions in flight) and latency (250 ms): drawn, no fixed label
    format (which printed 0.00 on every tick), latency in milliseconds."""
    now = time.time()
    last = (int(now) // 60 - 1) * 60
    log = tmp_path / "mmd.log"
    write_log(log, [float(t) for t in range(last - 3600, last + 60, 60)])
    assert report(tmp_path, log, now).returncode == 0
    folder = tmp_path / "state" / "rrd"
    day = all_graphs(folder, ["spamass"], int(now // 60 * 60), DatabaseReadings())[0][1]
    graph = next(g for g in day if g.file.startswith(name))
    assert "--left-axis-format" not in graph.args
    assert graph.args[graph.args.index("--vertical-label") + 1] == unit
    info = rrd.graph(tmp_path / "axis.png", graph.args)
    drawn = drawn_columns(png.read(tmp_path / "axis.png"), info, ["#4a86e8"])
    assert len(drawn) >= 25, sorted(drawn)  # an hour = 30 two-minute pixels
