"""The report against a real journald: entries written by the daemon's own JournalRecorder,
read back with journalctl, counted into RRD databases and a Prometheus file, exactly.

journald runs in a private mount namespace (``unshare --mount``) with a tmpfs over /run and
Storage=volatile; its journal folder is a bind mount of a temp folder, so the report reads it
from outside with ``--journal-directory``. The writer and ``journalctl --rotate`` enter the
namespace with nsenter. The host's journal and /run are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmd.adapters import rrd
from mmd.report.graphs import all_graphs
from mmd.report.run import DatabaseReadings
from tests.support.journald import ROOT, PrivateJournald

# Runs inside the namespace: the daemon's recorder, the daemon's journal handler.
WRITER = r"""
import json, sys
from mmd.adapters.journal import setup_logging
from mmd.adapters.session_records import ChildVerdictRecord, SessionRecord
from mmd.daemon.records import Counters, JournalRecorder
setup_logging(verbose=False, use_journal=True)
recorder = JournalRecorder(Counters())
for s in json.load(sys.stdin):
    i = s["id"]
    for name, status, elapsed in s["verdicts"]:
        recorder.child_finished(ChildVerdictRecord(i, name, "end-of-message", status, elapsed,
                                                   "", "Q%d" % i, "192.0.2.1", "mx.example"))
    for name, value in s["headers"]:
        recorder.header_added(i, name, value)
    for name in s["errors"]:
        recorder.child_error(i, name, "connection refused")
    recorder.session_finished(SessionRecord(i, "end-of-message", s["status"], s["elapsed"],
                                            s["disconnected"], "Q%d" % i, "192.0.2.1",
                                            "mx.example"))
"""

STATUSES = ["pass", "accept", "reject", "discard", "temporary-failure", "quarantine"]


def sessions(first: int, count: int) -> list[dict[str, Any]]:
    """A known mix: every final status, two children, every report kind the daemon logs."""
    mix = []
    for i in range(first, first + count):
        headers = [("Received-SPF", "pass (mx.example: domain of a@example.com)")]
        if i % 3 == 0:
            headers += [("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, score=12.5")]
        else:
            # folded: journalctl exports it as a binary field
            headers += [("X-Spam-Status", "No, score=0.3 required=5.0\n\ttests=NONE")]
        if i % 5 == 0:
            headers.append(("X-Virus-Status", "Infected (Eicar-Test-Signature)"))
        if i % 7 == 0:
            headers.append(("X-Greylist", "Delayed for 00:05:00 by milter-greylist-4.6.4"))
        if i % 2 == 0:
            headers.append(("DKIM-Signature", "v=1; a=rsa-sha256; d=example.com; s=mmd"))
        mix.append({
            "id": i,
            "status": STATUSES[i % len(STATUSES)],
            "elapsed": 1.5,
            "disconnected": i % 11 == 0,
            "verdicts": [["spamass", "accept" if i % 2 else "reject", 0.25],
                         ["clamav", "reject" if i % 4 == 0 else "pass", 0.5]],
            "headers": headers,
            "errors": ["clamav"] if i % 13 == 0 else [],
        })
    return mix


def expected(mix: list[dict[str, Any]]) -> dict[str, Any]:
    """Counted here independently of mmd.report."""
    statuses = Counter(s["status"] for s in mix)
    verdicts: dict[str, Counter[str]] = {"spamass": Counter(), "clamav": Counter()}
    for s in mix:
        for name, status, _ in s["verdicts"]:
            verdicts[name][status] += 1
    reports = Counter(
        spf_pass=len(mix),
        spam=sum(1 for s in mix if s["id"] % 3 == 0),
        ham=sum(1 for s in mix if s["id"] % 3 != 0),
        virus=sum(1 for s in mix if s["id"] % 5 == 0),
        greylist=sum(1 for s in mix if s["id"] % 7 == 0),
        dkim_signed=sum(1 for s in mix if s["id"] % 2 == 0),
    )
    return {
        "statuses": statuses,
        "sessions": len(mix),
        "disconnected": sum(1 for s in mix if s["disconnected"]),
        "verdicts": verdicts,
        "errors": sum(len(s["errors"]) for s in mix),
        "reports": reports,
    }


def write(journald: PrivateJournald, mix: list[dict[str, Any]]) -> None:
    journald.inside(sys.executable, "-c", WRITER, stdin=json.dumps(mix))
    journald.sync()


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[PrivateJournald]:
    assert shutil.which("rrdtool"), "rrdtool is required"
    daemon = PrivateJournald(tmp_path / "journal")
    yield daemon
    daemon.stop()


def report(tmp_path: Path, journal: Path, now: float) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mmd.cli.report",
         "--journal-directory", str(journal),
         "--state-directory", str(tmp_path / "state"),
         "--output-directory", str(tmp_path / "html"),
         "--prometheus-file", str(tmp_path / "mmd.prom"),
         "--now", str(now)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress lines when stderr is not a terminal
    return result.stdout


def rrd_totals(path: Path, start: int, end: int) -> dict[str, float]:
    """Per data source: the sum of rate x step over every known 1-minute point."""
    names, rows = rrd.fetch(path, "AVERAGE", start, end, 60)
    totals = dict.fromkeys(names, 0.0)
    for _, row in rows:
        for name, value in zip(names, row, strict=True):
            if value is not None:
                totals[name] += value * 60
    return totals


def exact(value: float) -> int:
    assert abs(value - round(value)) < 1e-6, value
    return round(value)


def check_databases(folder: Path, want: dict[str, Any], start: int, end: int) -> None:
    sessions = rrd_totals(folder / "sessions.rrd", start, end)
    assert exact(sessions["sessions"]) == want["sessions"]
    assert exact(sessions["elapsed_us"]) == want["sessions"] * 1_500_000
    assert exact(sessions["disconnected"]) == want["disconnected"]
    for status in STATUSES:
        assert exact(sessions[status.replace("-", "_")]) == want["statuses"][status], status
    assert exact(sessions["abort"]) == 0 and exact(sessions["other"]) == 0
    reports = rrd_totals(folder / "reports.rrd", start, end)
    for kind, value in reports.items():
        assert exact(value) == want["reports"][kind], kind
    for milter, elapsed in (("spamass", 250_000), ("clamav", 500_000)):
        data = rrd_totals(folder / f"milter-{milter}.rrd", start, end)
        verdicts = want["verdicts"][milter]
        assert exact(data["verdicts"]) == want["sessions"]
        assert exact(data["elapsed_us"]) == want["sessions"] * elapsed
        for status in ("pass", "accept", "reject"):
            assert exact(data[status]) == verdicts[status], (milter, status)
        assert exact(data["errors"]) == (want["errors"] if milter == "clamav" else 0)


def prometheus_text(want: dict[str, Any], now: float, entries: int) -> str:
    n = want["sessions"]
    lines = ["# HELP mmd_sessions_total SMTP sessions finished, by final status.",
             "# TYPE mmd_sessions_total counter"]
    for status in [*STATUSES, "abort"]:
        lines.append(f'mmd_sessions_total{{status="{status}"}} {want["statuses"][status]}')
    lines += [
        "# HELP mmd_session_elapsed_seconds Seconds SMTP sessions took.",
        "# TYPE mmd_session_elapsed_seconds summary",
        f"mmd_session_elapsed_seconds_sum {n * 1.5:.6f}",
        f"mmd_session_elapsed_seconds_count {n}",
        "# HELP mmd_sessions_disconnected_total SMTP sessions the MTA side closed without QUIT.",
        "# TYPE mmd_sessions_disconnected_total counter",
        f"mmd_sessions_disconnected_total {want['disconnected']}",
        "# HELP mmd_milter_verdicts_total Child milters' verdicts, by child and status.",
        "# TYPE mmd_milter_verdicts_total counter",
    ]
    for milter in ("clamav", "spamass"):
        for status, count in sorted(want["verdicts"][milter].items()):
            lines.append(
                f'mmd_milter_verdicts_total{{milter="{milter}",status="{status}"}} {count}')
    lines += [
        "# HELP mmd_milter_elapsed_seconds Seconds from session start until the child's verdict.",
        "# TYPE mmd_milter_elapsed_seconds summary",
        f'mmd_milter_elapsed_seconds_sum{{milter="clamav"}} {n * 0.5:.6f}',
        f'mmd_milter_elapsed_seconds_count{{milter="clamav"}} {n}',
        f'mmd_milter_elapsed_seconds_sum{{milter="spamass"}} {n * 0.25:.6f}',
        f'mmd_milter_elapsed_seconds_count{{milter="spamass"}} {n}',
        "# HELP mmd_milter_errors_total Child milter failures (connect errors, timeouts, "
        "protocol errors).",
        "# TYPE mmd_milter_errors_total counter",
        f'mmd_milter_errors_total{{milter="clamav"}} {want["errors"]}',
        'mmd_milter_errors_total{milter="spamass"} 0',
        "# HELP mmd_reports_total Messages by what children's added headers report.",
        "# TYPE mmd_reports_total counter",
    ]
    for kind in ("spam", "ham", "virus", "greylist", "spf_pass", "spf_fail", "spf_softfail",
                 "spf_neutral", "spf_none", "spf_temperror", "spf_permerror", "dkim_signed",
                 "dkim_pass", "dkim_fail", "dkim_other"):
        lines.append(f'mmd_reports_total{{kind="{kind}"}} {want["reports"][kind]}')
    lines += [
        "# HELP mmd_report_journal_entries_total Journal entries the report has read.",
        "# TYPE mmd_report_journal_entries_total counter",
        f"mmd_report_journal_entries_total {entries}",
        "# HELP mmd_report_last_run_timestamp_seconds When the report last read the journal "
        "(Unix time).",
        "# TYPE mmd_report_last_run_timestamp_seconds gauge",
        f"mmd_report_last_run_timestamp_seconds {now:.3f}",
    ]
    return "\n".join(lines) + "\n"


def entry_count(mix: list[dict[str, Any]]) -> int:
    return sum(
        2 + len(s["headers"]) + len(s["errors"]) + 1 + (1 if s["disconnected"] else 0)
        for s in mix
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def drawn_legends(info: dict[str, str]) -> list[str]:
    numbered = [(int(k[7:-1]), v.strip()) for k, v in info.items() if k.startswith("legend[")]
    return [text for _, text in sorted(numbered)]


def check_graphs(tmp_path: Path, now: float, want: dict[str, Any]) -> None:
    html = (tmp_path / "html" / "index.html").read_text()
    rrd_folder = tmp_path / "state" / "rrd"
    pages = all_graphs(rrd_folder, ["clamav", "spamass"], int(now // 60 * 60),
                       DatabaseReadings())
    assert len(pages) == 4
    for _, graphs in pages:
        for graph in graphs:
            png = tmp_path / "html" / graph.file
            width, height = png_size(png)
            assert f'<img src="{graph.file}" alt="{graph.title}" title="{graph.title}" ' \
                   f'width="{width}" height="{height}">' in html
    # legends as rrdtool drew them, for the day's final statuses and one child's verdicts
    for graph in (pages[0][1][2], pages[0][1][4]):
        info = rrd.graph(tmp_path / "check.png", graph.args)
        legends = drawn_legends(info)
        for legend in graph.legends:
            assert legend.strip() in legends, (legend, legends)
        assert int(info["image_width"]) > 640 and int(info["graph_height"]) == 200
    # the day graph's legend totals are exact: "<status>", "total N sessions", avg, max
    legends = drawn_legends(rrd.graph(tmp_path / "check.png", pages[0][1][2].args))
    for status in STATUSES:
        total = legends[legends.index(status) + 1]
        assert total.split() == ["total", str(want["statuses"][status]), "sessions"], total
    assert "Final statuses (last day)" in html and "Child clamav: verdicts (last year)" in html


def test_report_counts_exactly_once_across_runs_and_rotation(
    tmp_path: Path, journald: PrivateJournald
) -> None:
    started = int(time.time()) - 120
    first = sessions(1, 30)
    write(journald, first)
    now = time.time() + 120  # every minute with entries is over
    summary = report(tmp_path, journald.directory, now)
    assert summary.startswith(f"read {entry_count(first)} entries, 30 sessions (")
    want = expected(first)
    check_databases(tmp_path / "state" / "rrd", want, started, int(now) + 600)
    prom = tmp_path / "mmd.prom"
    assert prom.read_text() == prometheus_text(want, now, entry_count(first))
    check_graphs(tmp_path, now, want)
    state = (tmp_path / "state" / "state.json").read_text()

    # a second run reads nothing new and changes nothing
    summary = report(tmp_path, journald.directory, now)
    assert summary.startswith("read 0 entries, 0 sessions,")
    check_databases(tmp_path / "state" / "rrd", want, started, int(now) + 600)
    assert prom.read_text() == prometheus_text(want, now, entry_count(first))
    assert (tmp_path / "state" / "state.json").read_text() == state

    # rotation between runs: the archived file still holds the entries after the cursor
    second = sessions(31, 24)
    write(journald, second[:10])
    journald.inside("journalctl", "--rotate")
    write(journald, second[10:])
    archived = list(journald.directory.glob("*/system@*.journal"))
    assert archived, list(journald.directory.rglob("*"))
    later = time.time() + 240
    summary = report(tmp_path, journald.directory, later)
    assert summary.startswith(f"read {entry_count(second)} entries, 24 sessions (")
    want = expected(first + second)
    check_databases(tmp_path / "state" / "rrd", want, started, int(later) + 600)
    assert prom.read_text() == prometheus_text(want, later, entry_count(first + second))
    check_graphs(tmp_path, later, want)


def test_a_journal_without_statistics_says_what_was_read(
    tmp_path: Path, journald: PrivateJournald
) -> None:
    journald.inside("logger", "-t", "someone-else", "not a statistics entry")
    journald.sync()
    summary = report(tmp_path, journald.directory, time.time())
    assert summary.startswith("read 0 entries, 0 sessions,")
    assert f"from the journal files in {journald.directory} " \
           "(SYSLOG_IDENTIFIER=milter-manager); no statistics entries" in summary
    html = (tmp_path / "html" / "index.html").read_text()
    assert f"from the journal files in {journald.directory}" in html
    assert "This run read nothing: no statistics entries" in html
    # the next run resumes nowhere new: it says so, still exit status 0
    summary = report(tmp_path, journald.directory, time.time())
    assert "no statistics entries" in summary


def test_no_journal_files_at_all_fail(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "mmd.cli.report", "--journal-directory", str(empty),
         "--state-directory", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"milter-manager report: no journal to read: journalctl found no journal files in "
        f"{empty} (is journald running")
    assert "--from-file" in result.stderr
