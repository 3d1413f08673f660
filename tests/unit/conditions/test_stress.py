from __future__ import annotations

from pathlib import Path

import pytest

from mmd.conditions.stress import (
    NoStress,
    StressNotify,
    derive_stress_threshold,
    read_main_cf_process_limit,
    read_smtpd_process_limit,
    threshold_from_postfix,
)
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

DEBIAN_MASTER_CF = """\
#
# Postfix master process configuration file.
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
#               (yes)   (yes)   (no)    (never) (100)
# ==========================================================================
smtp      inet  n       -       y       -       -       smtpd
#smtp      inet  n       -       y       -       1       postscreen
#smtpd     pass  -       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
#  -o syslog_name=postfix/submission
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
"""

POSTSCREEN_MASTER_CF = """\
smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       40      smtpd
  -o smtpd_milters=unix:/milter-manager/milter-manager.sock
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
dnsblog   unix  -       -       y       -       0       dnsblog
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# (master.cf, main.cf or None when absent, expected smtpd process limit)
LIMIT_CASES: list[tuple[str, str | None, int | None]] = [
    (DEBIAN_MASTER_CF, None, 100),  # "-" and no main.cf: Postfix's default
    (DEBIAN_MASTER_CF, "default_process_limit = 200\n", 200),
    (DEBIAN_MASTER_CF, "default_process_limit=50\n", 50),
    (DEBIAN_MASTER_CF, "#default_process_limit = 7\nmyhostname = mx\n", 100),
    (DEBIAN_MASTER_CF, "default_process_limit = 10\ndefault_process_limit = 20\n", 20),
    (DEBIAN_MASTER_CF, "default_process_limit = $other\n", 100),
    (DEBIAN_MASTER_CF, "default_process_limit =\n  300\n", 300),  # continuation line
    ("smtp inet n - y - 30 smtpd\n", "default_process_limit = 200\n", 30),
    ("smtp inet n - y - 0 smtpd\n", None, None),  # unlimited: no threshold
    (POSTSCREEN_MASTER_CF, "default_process_limit = 60\n", 100),  # 40 + 60, postscreen not
    ("pickup unix n - y 60 1 pickup\n", None, None),  # no smtpd service
    ("", None, None),
]


@pytest.mark.parametrize(("master_cf", "main_cf", "expected"), LIMIT_CASES)
def test_smtpd_process_limit(
    tmp_path: Path, master_cf: str, main_cf: str | None, expected: int | None
) -> None:
    master = write(tmp_path, "master.cf", master_cf)
    main = write(tmp_path, "main.cf", main_cf) if main_cf is not None else tmp_path / "main.cf"
    assert read_smtpd_process_limit(master, main) == expected


def test_missing_master_cf_means_unknown(tmp_path: Path) -> None:
    assert read_smtpd_process_limit(tmp_path / "master.cf", tmp_path / "main.cf") is None
    assert threshold_from_postfix(tmp_path) == 0


def test_main_cf_missing_gives_default(tmp_path: Path) -> None:
    assert read_main_cf_process_limit(tmp_path / "nope.cf") == 100


def test_threshold_from_postfix_directory(tmp_path: Path) -> None:
    write(tmp_path, "master.cf", DEBIAN_MASTER_CF)
    write(tmp_path, "main.cf", "default_process_limit = 10\n")
    assert threshold_from_postfix(tmp_path) == 7  # int(10 * 0.75)


@pytest.mark.parametrize(("limit", "threshold"), [(100, 75), (10, 7), (1, 0), (None, 0), (0, 0)])
def test_derive_threshold(limit: int | None, threshold: int) -> None:
    assert derive_stress_threshold(limit) == threshold


# (threshold, sessions in progress, stressed?)
STRESS_CASES: list[tuple[int, int, bool]] = [
    (75, 74, False),
    (75, 75, True),
    (75, 200, True),
    (0, 10_000, False),  # 0: never stressed
    (1, 1, True),
    (1, 0, False),
]


@pytest.mark.parametrize(("threshold", "sessions", "stressed"), STRESS_CASES)
def test_stress_notify(threshold: int, sessions: int, stressed: bool) -> None:
    decision = StressNotify(threshold=threshold).decide(
        Stage.CONNECT, SessionFacts(active_sessions=sessions)
    )
    if not stressed:
        assert decision is None
        return
    assert decision is not None
    assert decision.apply is True
    assert decision.macros == (("{stress}", "yes"),)
    assert f"{sessions} sessions >= threshold {threshold}" in decision.reason


@pytest.mark.parametrize(("threshold", "sessions", "stressed"), STRESS_CASES)
def test_no_stress(threshold: int, sessions: int, stressed: bool) -> None:
    decision = NoStress(threshold=threshold).decide(
        Stage.CONNECT, SessionFacts(active_sessions=sessions)
    )
    assert decision is not None
    assert decision.apply is not stressed
    assert decision.macros == ()
    if stressed:
        assert f">= threshold {threshold}" in decision.reason


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.CONNECT])
def test_only_connect_decides(stage: Stage) -> None:
    facts = SessionFacts(active_sessions=100)
    assert StressNotify(threshold=1).decide(stage, facts) is None
    assert NoStress(threshold=1).decide(stage, facts) is None
