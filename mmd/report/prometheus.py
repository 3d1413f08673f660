"""The totals in Prometheus' text exposition format, for node_exporter's textfile collector.

Counters only: they come from the persisted totals, so they never go down between runs.
"""

from __future__ import annotations

from mmd.report.aggregate import Totals
from mmd.report.headers import REPORT_KINDS
from mmd.report.layout import SESSION_STATUSES


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _seconds(microseconds: int) -> str:
    return f"{microseconds / 1_000_000:.6f}"


def render(totals: Totals, last_run: float | None = None) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("mmd_sessions_total", "counter", "SMTP sessions finished, by final status.")
    statuses = list(SESSION_STATUSES) + sorted(set(totals.sessions) - set(SESSION_STATUSES))
    for status in statuses:
        lines.append(f'mmd_sessions_total{{status="{_label(status)}"}} {totals.sessions[status]}')
    family("mmd_session_elapsed_seconds", "summary", "Seconds SMTP sessions took.")
    lines.append(f"mmd_session_elapsed_seconds_sum {_seconds(totals.session_elapsed_us)}")
    lines.append(f"mmd_session_elapsed_seconds_count {sum(totals.sessions.values())}")
    family("mmd_sessions_disconnected_total", "counter",
           "SMTP sessions the MTA side closed without QUIT.")
    lines.append(f"mmd_sessions_disconnected_total {totals.disconnected}")

    milters = sorted(totals.milters.items())
    family("mmd_milter_verdicts_total", "counter", "Child milters' verdicts, by child and status.")
    for name, milter in milters:
        for status, count in sorted(milter.verdicts.items()):
            lines.append(
                f'mmd_milter_verdicts_total{{milter="{_label(name)}",status="{_label(status)}"}} '
                f"{count}"
            )
    family("mmd_milter_elapsed_seconds", "summary",
           "Seconds from session start until the child's verdict.")
    for name, milter in milters:
        label = _label(name)
        lines.append(f'mmd_milter_elapsed_seconds_sum{{milter="{label}"}} '
                     f"{_seconds(milter.elapsed_us)}")
        lines.append(f'mmd_milter_elapsed_seconds_count{{milter="{label}"}} {milter.count}')
    family("mmd_milter_errors_total", "counter",
           "Child milter failures (connect errors, timeouts, protocol errors).")
    for name, milter in milters:
        lines.append(f'mmd_milter_errors_total{{milter="{_label(name)}"}} {milter.errors}')

    family("mmd_reports_total", "counter", "Messages by what children's added headers report.")
    for kind in REPORT_KINDS:
        lines.append(f'mmd_reports_total{{kind="{kind}"}} {totals.reports[kind]}')
    family("mmd_report_journal_entries_total", "counter", "Journal entries the report has read.")
    lines.append(f"mmd_report_journal_entries_total {totals.entries}")
    if last_run is not None:
        family("mmd_report_last_run_timestamp_seconds", "gauge",
               "When the report last read the journal (Unix time).")
        lines.append(f"mmd_report_last_run_timestamp_seconds {last_run:.3f}")
    return "\n".join(lines) + "\n"
