"""index.html: every graph, by period, plus the totals as a table (no scripts, no assets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from mmd.report.aggregate import Totals
from mmd.report.graphs import Period
from mmd.report.headers import REPORT_KINDS


@dataclass(frozen=True)
class DrawnGraph:
    file: str
    title: str
    width: int
    height: int


def _table(caption: str, rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table><caption>{escape(caption)}</caption>{body}</table>\n"


def render(
    pages: Sequence[tuple[Period, Sequence[DrawnGraph]]], totals: Totals, generated: float,
    source: str = "the system journal", nothing_found: str | None = None,
) -> str:
    when = datetime.fromtimestamp(generated, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta http-equiv=\"refresh\" content=\"300\">\n",
        "<title>milter manager statistics</title>\n",
        "<style>body{font-family:sans-serif;margin:1em 2em}nav a{margin-right:1em}"
        "table{border-collapse:collapse;margin:0 2em 1em 0;display:inline-table;"
        "vertical-align:top}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "td{text-align:right}img{display:block;margin:0 0 1em;max-width:100%;height:auto}"
        ".note{background:#fff4d6;border:1px solid #e6b800;padding:4px 8px}</style>\n",
        "</head>\n<body>\n<h1>milter manager statistics</h1>\n",
        f"<p>Generated {escape(when)} from {escape(source)}.</p>\n",
        f"<p class=\"note\">This run read nothing: {escape(nothing_found)}.</p>\n"
        if nothing_found else "",
        "<nav>",
        "".join(f"<a href=\"#{p.name}\">{escape(p.label.capitalize())}</a>" for p, _ in pages),
        "</nav>\n<h2 id=\"totals\">Totals</h2>\n",
    ]
    statuses = sorted(totals.sessions.items())
    parts.append(_table("Sessions by final status",
                        [(s, str(n)) for s, n in statuses]
                        + [("all", str(sum(totals.sessions.values())))]))
    parts.append(_table("Reports", [(k, str(totals.reports[k])) for k in REPORT_KINDS]))
    for name, milter in sorted(totals.milters.items()):
        rows = [(s, str(n)) for s, n in sorted(milter.verdicts.items())]
        rows.append(("errors", str(milter.errors)))
        parts.append(_table(f"Child {name}", rows))
    for period, graphs in pages:
        parts.append(f"<h2 id=\"{period.name}\">{escape(period.label.capitalize())}</h2>\n")
        if not graphs:
            parts.append("<p>No graphs yet: no statistics entry has been read so far.</p>\n")
        for graph in graphs:
            parts.append(
                f"<img src=\"{escape(graph.file)}\" alt=\"{escape(graph.title)}\" "
                f"title=\"{escape(graph.title)}\" width=\"{graph.width}\" "
                f"height=\"{graph.height}\">\n"
            )
    parts.append("</body>\n</html>\n")
    return "".join(parts)
