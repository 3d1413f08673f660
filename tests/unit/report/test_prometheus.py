from __future__ import annotations

from mmd.report.aggregate import Aggregator, Totals, aggregate
from mmd.report.prometheus import render

from .entries import T0, mix

EXPECTED = """\
# HELP mmd_sessions_total SMTP sessions finished, by final status.
# TYPE mmd_sessions_total counter
mmd_sessions_total{status="pass"} 2
mmd_sessions_total{status="accept"} 1
mmd_sessions_total{status="reject"} 1
mmd_sessions_total{status="discard"} 0
mmd_sessions_total{status="temporary-failure"} 1
mmd_sessions_total{status="quarantine"} 1
mmd_sessions_total{status="abort"} 0
# HELP mmd_session_elapsed_seconds Seconds SMTP sessions took.
# TYPE mmd_session_elapsed_seconds summary
mmd_session_elapsed_seconds_sum 8.000000
mmd_session_elapsed_seconds_count 6
# HELP mmd_sessions_disconnected_total SMTP sessions the MTA side closed without QUIT.
# TYPE mmd_sessions_disconnected_total counter
mmd_sessions_disconnected_total 1
# HELP mmd_milter_verdicts_total Child milters' verdicts, by child and status.
# TYPE mmd_milter_verdicts_total counter
mmd_milter_verdicts_total{milter="clamav",status="pass"} 2
mmd_milter_verdicts_total{milter="clamav",status="reject"} 1
mmd_milter_verdicts_total{milter="spamass",status="accept"} 1
mmd_milter_verdicts_total{milter="spamass",status="reject"} 1
# HELP mmd_milter_elapsed_seconds Seconds from session start until the child's verdict.
# TYPE mmd_milter_elapsed_seconds summary
mmd_milter_elapsed_seconds_sum{milter="clamav"} 1.500000
mmd_milter_elapsed_seconds_count{milter="clamav"} 3
mmd_milter_elapsed_seconds_sum{milter="spamass"} 0.500000
mmd_milter_elapsed_seconds_count{milter="spamass"} 2
# HELP mmd_milter_errors_total Child milter failures (connect errors, timeouts, protocol errors).
# TYPE mmd_milter_errors_total counter
mmd_milter_errors_total{milter="clamav"} 1
mmd_milter_errors_total{milter="spamass"} 0
# HELP mmd_reports_total Messages by what children's added headers report.
# TYPE mmd_reports_total counter
mmd_reports_total{kind="spam"} 1
mmd_reports_total{kind="ham"} 0
mmd_reports_total{kind="virus"} 1
mmd_reports_total{kind="greylist"} 1
mmd_reports_total{kind="spf_pass"} 1
mmd_reports_total{kind="spf_fail"} 0
mmd_reports_total{kind="spf_softfail"} 0
mmd_reports_total{kind="spf_neutral"} 0
mmd_reports_total{kind="spf_none"} 0
mmd_reports_total{kind="spf_temperror"} 0
mmd_reports_total{kind="spf_permerror"} 0
mmd_reports_total{kind="dkim_signed"} 1
mmd_reports_total{kind="dkim_pass"} 1
mmd_reports_total{kind="dkim_fail"} 1
mmd_reports_total{kind="dkim_other"} 0
# HELP mmd_report_journal_entries_total Journal entries the report has read.
# TYPE mmd_report_journal_entries_total counter
mmd_report_journal_entries_total 22
# HELP mmd_report_last_run_timestamp_seconds When the report last read the journal (Unix time).
# TYPE mmd_report_last_run_timestamp_seconds gauge
mmd_report_last_run_timestamp_seconds 1800000180.500
"""


def test_exact_text() -> None:
    aggregator = Aggregator(Totals())
    aggregate(mix(), aggregator)
    assert render(aggregator.totals, T0 + 180.5) == EXPECTED


def test_labels_are_escaped_and_unknown_statuses_kept() -> None:
    totals = Totals()
    totals.sessions["continue"] = 2
    totals.milter('odd "name"\\x\n').verdicts["pass"] = 1
    text = render(totals)
    assert 'mmd_sessions_total{status="continue"} 2\n' in text
    assert 'mmd_milter_verdicts_total{milter="odd \\"name\\"\\\\x\\n",status="pass"} 1\n' in text
    assert "last_run" not in text
