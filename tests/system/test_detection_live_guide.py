"""Issue 16 on the install guide's host: EICAR mail through real Postfix shows clamav-milter
leave and join the set of children live, with no `systemctl reload milter-manager`.

`systemctl disable --now clamav-milter`: within 2 s the EICAR mail is delivered and
clamav-milter is not contacted at all (no verdict, no connect error); `systemctl enable --now
clamav-milter`: within 2 s EICAR is rejected again with clamav-milter's verdict. The seconds
are printed (pytest -s): from the systemctl command's return to the start of the first SMTP
transaction that showed the new set.
"""

from __future__ import annotations

import re
import sys
import time

import pytest

from tests.harness.postfix import SwaksResult
from tests.system.container import SystemdContainer
from tests.system.guide_setup import EICAR, MANAGER, GuideHost

pytestmark = pytest.mark.system

UNIT = "clamav-milter"
WITHIN = 2.0


@pytest.fixture(scope="module")
def guide(guide_host: SystemdContainer) -> GuideHost:
    host = GuideHost(guide_host)
    host.delivered(host.send(), timeout=60)  # the first mail starts mmd through its socket
    return host


def eicar(guide: GuideHost) -> tuple[SwaksResult, bool]:
    """One EICAR mail from this host; the transcript and whether clamav-milter took part."""
    cursor = guide.journal_cursor()
    result = guide.send(EICAR)
    guide.wait_for_session_ends(cursor, 1)
    contacted = any(entry.get("MMD_MILTER") == UNIT
                    and entry.get("MMD_EVENT") in ("milter-verdict", "milter-error")
                    for entry in guide.manager_entries(cursor))
    return result, contacted


def rejected_by_clamav(result: SwaksResult) -> bool:
    return result.exit_code != 0 and bool(re.search(r"^<\*\* 550 5\.7\.1 ", result.transcript,
                                                    re.M))


def seconds_until(guide: GuideHost, shows: str, wanted: bool) -> float:
    """Send EICAR until clamav-milter's part is ``wanted``; when that mail's SMTP began."""
    started = time.monotonic()
    while True:
        began = time.monotonic() - started
        result, contacted = eicar(guide)
        if contacted == wanted and rejected_by_clamav(result) == wanted:
            print(f"\n[measured] {shows}: {began:.2f} s", file=sys.stderr)
            return began
        assert began < WITHIN, f"{shows}: not within {WITHIN} s\n{result.transcript}"


def test_eicar_shows_clamav_milter_leave_and_join_without_a_reload(guide: GuideHost) -> None:
    c = guide.c
    pid = guide.unit(MANAGER, "MainPID")["MainPID"]
    cursor = guide.journal_cursor()
    result, contacted = eicar(guide)
    assert rejected_by_clamav(result) and contacted, result.transcript
    c.run(["systemctl", "disable", "--now", UNIT], timeout=120)
    try:
        assert seconds_until(guide, "disable --now: EICAR passes clamav-milter", False) < WITHIN
        passed = guide.delivered(guide.send(EICAR))
        assert "X-Virus-Status" not in passed and "DKIM-Signature" in passed
    finally:
        c.run(["systemctl", "enable", "--now", UNIT], timeout=120)
    assert seconds_until(guide, "enable --now: EICAR rejected again", True) < WITHIN
    states = [entry["MMD_STATUS"] for entry in guide.manager_entries(
        cursor, MMD_EVENT="milter-state", MMD_MILTER=UNIT)]
    print(f"[measured] clamav-milter's milter-state entries: {states}", file=sys.stderr)
    assert "left" in states and "joined" in states[states.index("left"):], states
    assert guide.manager_entries(cursor, MMD_EVENT="reload") == []  # nobody reloaded
    assert guide.unit(MANAGER, "MainPID")["MainPID"] == pid
