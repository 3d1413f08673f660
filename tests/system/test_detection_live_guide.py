"""Issue 16 on the install guide's host: EICAR mail through real Postfix shows clamav-milter
leave and join the set of children live, with no `systemctl reload milter-manager`.

`systemctl disable --now clamav-milter`: within 2 s the EICAR mail is delivered and
clamav-milter is not contacted at all (no verdict, no connect error); `systemctl enable --now
clamav-milter`: within 2 s EICAR is rejected again with clamav-milter's verdict. The seconds
are printed (pytest -s): from the systemctl command's return to mmd's journal entry saying
clamav-milter left or joined (new sessions use the new set from then on); the next EICAR
mail then shows it.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.support.container import SystemdContainer
from tests.support.guide_setup import EICAR, MANAGER, GuideHost
from tests.support.postfix import SwaksResult
from tests.support.probes import wait_for

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


def container_clock(guide: GuideHost) -> float:
    """CLOCK_MONOTONIC, which the journal's __MONOTONIC_TIMESTAMP also uses (one kernel)."""
    return float(guide.c.run(["python3", "-c", "import time; print(time.monotonic())"]).stdout)


def switch(guide: GuideHost, command: str, *statuses: str) -> float:
    """Run `systemctl COMMAND --now clamav-milter`; seconds from its return to mmd's journal
    entry saying clamav-milter is in one of ``statuses`` (the new set is in use from then on;
    negative: the set changed before systemctl returned, which waits for the stop or start)."""
    cursor = guide.journal_cursor()
    guide.c.run(["systemctl", command, "--now", UNIT], timeout=120)
    returned = container_clock(guide)

    def entry() -> list[dict[str, str]]:
        return [e for e in guide.manager_entries(cursor, MMD_EVENT="milter-state",
                                                 MMD_MILTER=UNIT) if e["MMD_STATUS"] in statuses]

    try:
        wait_for(entry, f"clamav-milter {statuses}", timeout=30)
    except AssertionError as error:
        seen = [f"{e.get('MMD_EVENT')} {e.get('MMD_STATUS', '')}: {e.get('MESSAGE')}"
                for e in guide.manager_entries(cursor)
                if e.get("MMD_EVENT") in ("milter-state", "live-update", "milter-error")]
        state = guide.unit(f"{UNIT}.service", "ActiveState", "UnitFileState", "WantedBy")
        raise AssertionError(f"{error}; {state}; mmd said:\n" + "\n".join(seen)) from None
    first = entry()[0]
    seconds = int(first["__MONOTONIC_TIMESTAMP"]) / 1e6 - returned
    print(f"\n[measured] {command} --now {UNIT}: {first['MMD_STATUS']} {seconds:.2f} s after "
          "systemctl returned", file=sys.stderr)
    return seconds


def test_eicar_shows_clamav_milter_leave_and_join_without_a_reload(guide: GuideHost) -> None:
    c = guide.c
    pid = guide.unit(MANAGER, "MainPID")["MainPID"]
    cursor = guide.journal_cursor()
    result, contacted = eicar(guide)
    assert rejected_by_clamav(result) and contacted, result.transcript
    try:
        assert switch(guide, "disable", "left") < WITHIN
        result, contacted = eicar(guide)  # the next session: clamav-milter is not contacted
        assert not contacted and result.exit_code == 0, result.transcript
        passed = guide.delivered(result)
        assert "X-Virus-Status" not in passed and "DKIM-Signature" in passed
    except BaseException:
        c.run(["systemctl", "enable", "--now", UNIT], timeout=120)  # for the next modules
        raise
    # enabled and started in one gathering: "joined"; the start seen apart: "active"
    assert switch(guide, "enable", "joined", "active") < WITHIN
    result, contacted = eicar(guide)
    assert rejected_by_clamav(result) and contacted, result.transcript
    verdicts = guide.manager_entries(cursor, MMD_EVENT="milter-verdict", MMD_MILTER=UNIT)
    assert verdicts[-1]["MMD_STATUS"] == "reject", verdicts[-1]
    assert guide.manager_entries(cursor, MMD_EVENT="reload") == []  # nobody reloaded
    assert guide.unit(MANAGER, "MainPID")["MainPID"] == pid
