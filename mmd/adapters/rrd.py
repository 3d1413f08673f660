"""Every rrdtool call of the report: create, update, last, graph, fetch (the CLI, no bindings).

Updates go in batches of points per call; rrdtool refuses a point not newer than the file's
last one, which callers avoid by tracking each file's newest point.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

RRDTOOL = "rrdtool"
BATCH = 500  # points per `rrdtool update` call (keeps the command line short)


class RrdError(RuntimeError):
    pass


def _run(args: Sequence[str]) -> str:
    try:
        result = subprocess.run(
            [RRDTOOL, *args], capture_output=True, text=True, check=False
        )
    except OSError as error:
        raise RrdError(f"cannot run {RRDTOOL}: {error}") from error
    if result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip()
        raise RrdError(f"rrdtool {args[0]} failed: {message}")
    return result.stdout


def create(
    path: Path,
    sources: Sequence[str],
    *,
    start: int,
    step: int,
    heartbeat: int,
    archives: Sequence[tuple[int, int]],
) -> None:
    """A database of DERIVE (min 0) sources with AVERAGE and MAX archives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["create", str(path), "--start", str(start), "--step", str(step), "--no-overwrite"]
    args += [f"DS:{name}:DERIVE:{heartbeat}:0:U" for name in sources]
    for function in ("AVERAGE", "MAX"):
        args += [f"RRA:{function}:0.5:{steps}:{rows}" for steps, rows in archives]
    _run(args)


def update(path: Path, points: Sequence[tuple[int, Sequence[int]]]) -> None:
    for first in range(0, len(points), BATCH):
        batch = points[first : first + BATCH]
        _run(["update", str(path), *(f"{when}:{':'.join(map(str, row))}" for when, row in batch)])


def last(path: Path) -> int:
    return int(_run(["last", str(path)]).strip())


def sources(path: Path) -> list[str]:
    """Data source names of an existing database, in order."""
    names: list[str] = []
    for line in _run(["info", str(path)]).splitlines():
        if line.startswith("ds[") and line.split("]", 1)[1].startswith(".index"):
            names.append(line[3:].split("]", 1)[0])
    return names


def graph(path: Path, args: Sequence[str]) -> dict[str, str]:
    """Draws a PNG with `rrdtool graphv`; returns its report (image_width, legend[0], ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")  # readers never see half a picture
    output = _run(["graphv", str(temporary), "--imgformat", "PNG", *args])
    os.replace(temporary, path)
    info: dict[str, str] = {}
    for line in output.splitlines():
        key, separator, value = line.partition(" = ")
        if separator:
            info[key.strip()] = value.strip().strip('"')
    return info


def fetch(
    path: Path, function: str, start: int, end: int, resolution: int
) -> tuple[list[str], list[tuple[int, list[float | None]]]]:
    """Data source names and rows (None for unknown) between start and end."""
    output = _run(
        ["fetch", str(path), function, "--start", str(start), "--end", str(end),
         "--resolution", str(resolution)]
    )
    lines = [line for line in output.splitlines() if line.strip()]
    names = lines[0].split()
    rows: list[tuple[int, list[float | None]]] = []
    for line in lines[1:]:
        when, _, rest = line.partition(":")
        row: list[float | None] = []
        for text in rest.split():
            value = float(text)
            row.append(None if value != value else value)
        rows.append((int(when), row))
    return names, rows
