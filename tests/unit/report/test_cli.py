from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mmd.cli.report import main, summary_line, summary_text
from mmd.report.aggregate import Summary, Totals
from mmd.report.run import Result

from .entries import T0


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--output-directory", "--state-directory", "--prometheus-file",
                   "--journal-directory", "--since", "--progress", "--no-progress", "--now",
                   "/var/lib/milter-manager/report", "systemd-journal"):
        assert option in text, option


def test_bad_state_file_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state.json").write_text('{"version": 7}')
    assert main(["--state-directory", str(tmp_path), "--journal-directory", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "milter-manager report: unknown state version 7\n"


def test_journal_errors_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    assert main(["--state-directory", str(tmp_path), "--journal-directory", str(missing),
                 "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("milter-manager report: journalctl failed (exit status 1)")
    assert str(missing) in error
    assert not (tmp_path / "state.json").exists()  # nothing saved from a failed read


def test_summaries() -> None:
    summary = Summary(entries=7, sessions=Counter({"pass": 2, "reject": 1, "continue": 1}),
                      first_time=T0, last_time=T0 + 90)
    result = Result(summary, Totals(sessions=Counter({"pass": 5})), "c", points=4,
                    graphs=[Path("a.png")])
    assert summary_text(result) == (
        "read from: the system journal\n"
        "entries read: 7\n"
        "sessions: 4\n"
        "  pass: 2\n  accept: 0\n  reject: 1\n  discard: 0\n  temporary-failure: 0\n"
        "  quarantine: 0\n  abort: 0\n  continue: 1\n"
        "time range: 2027-01-15 08:00:00 UTC .. 2027-01-15 08:01:30 UTC\n"
        "database points written: 4\n"
        "graphs drawn: 1\n"
        "sessions since the first run: 5\n"
    )
    assert summary_line(result) == (
        "read 7 entries, 4 sessions (continue=1 pass=2 reject=1), "
        "2027-01-15 08:00:00 UTC .. 2027-01-15 08:01:30 UTC; 4 database points, 1 graphs "
        "from the system journal\n"
    )


def test_from_file_keeps_its_own_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state.json").write_text(
        '{"version": 1, "cursor": "s=abc;i=1", "step": 60}')
    log = tmp_path / "mmd.log"
    log.write_text("")
    assert main(["--state-directory", str(tmp_path), "--from-file", str(log),
                 "--no-progress"]) == 1
    assert "give --from-file its own --state-directory" in capsys.readouterr().err


def test_from_file_without_entries_says_so(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "mmd.log"
    log.write_text("INFO mmd.daemon: ready MMD_EVENT=ready\n")
    assert main(["--state-directory", str(tmp_path / "s"), "--from-file", str(log),
                 "--no-progress", "--output-directory", str(tmp_path / "html")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("read 0 entries, 0 sessions, - .. -; 0 database points, 0 graphs "
                          f"from the log file {log}; no statistics entries")
    page = (tmp_path / "html" / "index.html").read_text()
    assert f"from the log file {log}." in page and "This run read nothing" in page
