"""The daemon's life under a real systemd: socket activation, readiness and status text, reload
that waits, SIGHUP, watchdog, restart on failure, stop during a session, journal fields.

These run against the CLI contract of ``milter-manager`` (mmd/cli/manager.py): foreground,
socket activation, sd_notify READY/STATUS/RELOADING/STOPPING/WATCHDOG, SIGHUP reloads, SIGTERM
stops gracefully with exit status 0, D-Bus Reload() on org.miltermanager.Manager1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.container import SystemdContainer
from tests.support.held_session import held_session, mta_session
from tests.support.probes import journal_cursor, show, wait_for
from tests.support.probes import manager_entries as entries

pytestmark = pytest.mark.system

SERVICE = "milter-manager.service"
SOCKET_UNIT = "milter-manager.socket"
SOCKET = "/run/milter-manager/milter-manager.sock"

def session(c: SystemdContainer, user: str = "postfix") -> list[str]:
    return mta_session(c, SOCKET, user)


def ensure_running(c: SystemdContainer) -> dict[str, str]:
    c.run(["systemctl", "start", SOCKET_UNIT, SERVICE], timeout=90)
    state = show(c, SERVICE, "ActiveState", "SubState", "MainPID", "StatusText")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    return state


@pytest.fixture(scope="module")
def manager(installed_mmd: SystemdContainer) -> Iterator[SystemdContainer]:
    c = installed_mmd
    c.run(["test", "-x", "/usr/sbin/milter-manager"])
    probe = c.run(["/usr/sbin/milter-manager", "--help"], check=False)
    assert probe.returncode == 0, (
        "the milter-manager CLI (mmd/cli/manager.py) is not there yet:\n" + probe.stderr
    )
    c.run(["systemctl", "stop", SERVICE, SOCKET_UNIT])
    c.run(["systemctl", "reset-failed", SERVICE, SOCKET_UNIT], check=False)
    c.run(["systemctl", "start", SOCKET_UNIT])
    yield c
    c.run(["systemctl", "stop", SERVICE, SOCKET_UNIT], check=False)
    c.run(["systemctl", "reset-failed", SERVICE, SOCKET_UNIT], check=False)


def test_socket_activation_starts_the_daemon(manager: SystemdContainer) -> None:
    c = manager
    c.run(["systemctl", "stop", SERVICE])
    assert show(c, SERVICE, "ActiveState")["ActiveState"] == "inactive"
    replies = session(c)
    assert replies[0] == "negotiate O"
    assert replies[-1] == "quit"
    state = show(c, SERVICE, "ActiveState", "SubState", "MainPID", "TriggeredBy")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running")
    assert SOCKET_UNIT in state["TriggeredBy"]
    process = c.run(["ps", "-o", "user:32=,args=", "-p", state["MainPID"]]).stdout.split()
    assert process[0] == "milter-manager"
    assert "/usr/sbin/milter-manager" in process[1:4]  # python3 -I /usr/sbin/milter-manager


def test_ready_with_status_text(manager: SystemdContainer) -> None:
    state = ensure_running(manager)
    assert state["StatusText"], "READY=1 should come with a STATUS= text"
    shown = manager.run(["systemctl", "status", "--no-pager", SERVICE], check=False).stdout
    assert f"Status: \"{state['StatusText']}\"" in shown


def test_watchdog_is_armed_and_pinged(manager: SystemdContainer) -> None:
    c = manager
    dropin = f"/run/systemd/system/{SERVICE}.d/watchdog.conf"
    c.write_file(dropin, "[Service]\nWatchdogSec=2s\n")
    c.run(["systemctl", "daemon-reload"])
    try:
        c.run(["systemctl", "restart", SERVICE])
        first = show(c, SERVICE, "WatchdogUSec", "WatchdogTimestampMonotonic", "NRestarts")
        assert first["WatchdogUSec"] == "2s"

        def pinged() -> bool:
            now = show(c, SERVICE, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
            return int(now) > int(first["WatchdogTimestampMonotonic"])

        wait_for(pinged, "a WATCHDOG=1 ping", timeout=5)
        time.sleep(2.5)  # longer than the timeout: a missing ping would have killed it
        after = show(c, SERVICE, "ActiveState", "NRestarts")
        assert after == {"ActiveState": "active", "NRestarts": first["NRestarts"]}
    finally:
        c.run(["rm", "-f", dropin])
        c.run(["systemctl", "daemon-reload"])
        c.run(["systemctl", "restart", SERVICE])


def test_reload_returns_after_the_reload(manager: SystemdContainer) -> None:
    c = manager
    before = ensure_running(c)
    cursor = journal_cursor(c)
    c.run(["systemctl", "reload", SERVICE], timeout=130)
    # no waiting here: ExecReload= must not return before the daemon finished reloading
    reloads = entries(c, cursor, MMD_EVENT="reload")
    assert reloads, "no MMD_EVENT=reload entry when `systemctl reload` returned"
    after = show(c, SERVICE, "ActiveState", "SubState", "MainPID", "StatusText")
    assert (after["ActiveState"], after["SubState"]) == ("active", "running")
    assert after["MainPID"] == before["MainPID"]
    assert after["StatusText"]


def test_session_opened_before_a_reload_completes(manager: SystemdContainer) -> None:
    c = manager
    before = ensure_running(c)
    # the session that started with the old generation goes on to its end
    with held_session(c, SOCKET):
        cursor = journal_cursor(c)
        c.run(["systemctl", "reload", SERVICE], timeout=130)
        assert [e["MMD_STATUS"] for e in entries(c, cursor, MMD_EVENT="reload")] == ["success"]
    assert show(c, SERVICE, "MainPID")["MainPID"] == before["MainPID"]
    assert session(c)[0] == "negotiate O"  # and new sessions are served


def test_sighup_reloads(manager: SystemdContainer) -> None:
    c = manager
    before = ensure_running(c)
    cursor = journal_cursor(c)
    c.run(["systemctl", "kill", "--kill-whom=main", "--signal=HUP", SERVICE])
    wait_for(lambda: bool(entries(c, cursor, MMD_EVENT="reload")), "the SIGHUP reload")
    wait_for(
        lambda: show(c, SERVICE, "SubState")["SubState"] == "running",
        "the service to leave the reloading state",
    )
    assert show(c, SERVICE, "MainPID")["MainPID"] == before["MainPID"]


def test_journal_fields_of_a_session(manager: SystemdContainer) -> None:
    c = manager
    ensure_running(c)
    cursor = journal_cursor(c)
    session(c)

    def session_end() -> list[dict[str, Any]]:
        return entries(c, cursor, MMD_EVENT="session-end")

    wait_for(lambda: bool(session_end()), "a session-end entry", timeout=10)
    (end,) = session_end()
    assert end["SYSLOG_IDENTIFIER"] == "milter-manager"
    assert end["SYSLOG_FACILITY"] == "2"
    assert end["_SYSTEMD_UNIT"] == SERVICE
    assert end["MESSAGE"].startswith("[session][end][")
    for field in ("MMD_SESSION_ID", "MMD_STATUS", "MMD_ELAPSED"):
        assert end.get(field), field
    float(end["MMD_ELAPSED"])
    assert end["MMD_SESSION_ID"] in end["MESSAGE"]


def test_restart_on_failure_keeps_the_socket(manager: SystemdContainer) -> None:
    c = manager
    before = ensure_running(c)
    c.run(["kill", "-KILL", before["MainPID"]])
    wait_for(
        lambda: show(c, SERVICE, "MainPID", "SubState")
        not in ({"MainPID": before["MainPID"], "SubState": "running"},)
        and show(c, SERVICE, "SubState")["SubState"] == "running",
        "the restart after SIGKILL",
    )
    assert int(show(c, SERVICE, "NRestarts")["NRestarts"]) >= 1
    assert show(c, SOCKET_UNIT, "ActiveState")["ActiveState"] == "active"
    assert session(c)[0] == "negotiate O"


def test_stop_during_a_session_is_graceful(manager: SystemdContainer) -> None:
    c = manager
    ensure_running(c)
    with held_session(c, SOCKET):
        c.run(["systemctl", "stop", "--no-block", SERVICE])
        wait_for(
            lambda: show(c, SERVICE, "ActiveState")["ActiveState"] != "active",
            "the stop to begin",
        )
        time.sleep(1)
        # the session in flight is allowed to finish: the daemon waits, it does not cut it
        assert show(c, SERVICE, "ActiveState")["ActiveState"] == "deactivating"
    wait_for(lambda: show(c, SERVICE, "ActiveState")["ActiveState"] == "inactive", "the stop")
    result = show(c, SERVICE, "Result", "ExecMainStatus", "ExecMainCode")
    assert result["Result"] == "success"
    assert result["ExecMainStatus"] == "0"
    # systemd keeps listening: the MTA's next connection starts the daemon again
    assert show(c, SOCKET_UNIT, "ActiveState")["ActiveState"] == "active"
    assert session(c)[0] == "negotiate O"
