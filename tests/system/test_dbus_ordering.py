"""Issue 12, item 4: the control path survives ordering, on the container's real system bus.

- The bus policy installed after the daemon started: the daemon takes its name once
  dbus-daemon has read the file (it watches its policy folders), with no ReloadConfig and no
  restart of mmd. (The shared install fixture still sends a ReloadConfig; this module takes
  the policy away again to show the daemon does not need it.)
- ``systemctl restart dbus``: busctl reaches the same daemon again, without restarting it.
- ``systemctl reload milter-manager`` with the bus stopped returns after the reload, and fails
  when the configuration is refused, with and without the bus (``milter-manager reload``).

Times are printed (pytest -s) for the report: name taken after the policy appears, control
back after a bus restart, reload with and without D-Bus.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from tests.support.container import SystemdContainer
from tests.support.dbus import user_policy
from tests.support.probes import journal_cursor, show, wait_for
from tests.support.probes import manager_entries as entries

pytestmark = pytest.mark.system

SERVICE = "milter-manager.service"
SOCKET_UNIT = "milter-manager.socket"
CONFIG = "/etc/milter-manager/milter-manager.toml"
POLICY = "/usr/share/dbus-1/system.d/org.miltermanager.Manager1.conf"
POLICY_AWAY = "/var/tmp/mmd-ordering-policy.conf"
BUS_NAME = "org.miltermanager.Manager1"
TARGET = (BUS_NAME, "/org/miltermanager/Manager1", "org.miltermanager.Manager1")

GOOD = """\
# written by tests/system/test_dbus_ordering.py
[[milter]]
name = "ordering-probe"
connection_spec = "inet:19999@127.0.0.1"
"""
BROKEN = GOOD + '\n[manager]\nfallback_status = "maybe"\n'


def has_owner(c: SystemdContainer) -> bool:
    result = c.run(["busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                    "org.freedesktop.DBus", "NameHasOwner", "s", BUS_NAME], check=False)
    return result.stdout.strip() == "b true"


def control_answers(c: SystemdContainer) -> bool:
    result = c.run(["busctl", "get-property", *TARGET, "State"], check=False)
    return result.stdout.strip() == 's "running"'


def timed(what: str, seconds: float) -> None:
    print(f"\n[measured] {what}: {seconds:.2f} s", file=sys.stderr)


def main_pid(c: SystemdContainer) -> str:
    return show(c, SERVICE, "MainPID")["MainPID"]


@pytest.fixture(scope="module")
def manager(installed_mmd: SystemdContainer) -> Iterator[SystemdContainer]:
    c = installed_mmd
    saved = c.run(["cat", CONFIG], check=False)
    c.write_file(CONFIG, GOOD)
    c.run(["systemctl", "start", SOCKET_UNIT])
    yield c
    c.run(["systemctl", "start", "dbus.socket", "dbus.service"], check=False)
    if c.run(["test", "-e", POLICY], check=False).returncode != 0:
        c.run(["cp", POLICY_AWAY, POLICY], check=False)
    if saved.returncode == 0:
        c.write_file(CONFIG, saved.stdout)
    else:
        c.run(["rm", "-f", CONFIG])
    c.run(["systemctl", "restart", SERVICE], check=False, timeout=120)


def test_the_name_is_taken_when_the_policy_appears_later(manager: SystemdContainer) -> None:
    c = manager
    c.run(["systemctl", "stop", SERVICE])
    c.run(["mv", POLICY, POLICY_AWAY])
    # the bus forgets the policy (it would notice the removal itself; this makes it certain)
    c.run(["busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
           "org.freedesktop.DBus", "ReloadConfig"])
    cursor = journal_cursor(c)
    c.run(["systemctl", "start", SERVICE], timeout=90)
    pid = main_pid(c)
    wait_for(lambda: entries(c, cursor, MMD_EVENT="dbus", MMD_STATUS="unavailable"),
             "the daemon's warning that the bus refused its name")
    (warning,) = entries(c, cursor, MMD_EVENT="dbus")
    assert "not allowed to own the service" in warning["MESSAGE"], warning["MESSAGE"]
    time.sleep(3)  # several refused attempts go by: still one warning, mail still served
    assert not has_owner(c)
    assert [e["MMD_STATUS"] for e in entries(c, cursor, MMD_EVENT="dbus")] == ["unavailable"]

    # the package (or an admin) puts the policy in place; nothing else is done
    c.run(["cp", POLICY_AWAY, POLICY])
    appeared = time.monotonic()
    wait_for(lambda: has_owner(c), "the daemon to take its name", timeout=30)
    timed("bus name taken after the policy file appeared", time.monotonic() - appeared)
    assert control_answers(c)
    assert main_pid(c) == pid
    wait_for(lambda: entries(c, cursor, MMD_EVENT="dbus", MMD_STATUS="connected"),
             "the line saying control is back")  # logged just after the name is taken
    statuses = [e["MMD_STATUS"] for e in entries(c, cursor, MMD_EVENT="dbus")]
    assert statuses == ["unavailable", "connected"], statuses


def test_control_comes_back_after_dbus_restarts(manager: SystemdContainer) -> None:
    c = manager
    c.run(["systemctl", "start", SERVICE], timeout=90)
    wait_for(lambda: control_answers(c), "control on the bus")
    pid = main_pid(c)
    cursor = journal_cursor(c)
    c.run(["systemctl", "restart", "dbus"], timeout=90)
    restarted = time.monotonic()
    wait_for(lambda: control_answers(c), "busctl to reach the daemon again", timeout=30)
    timed("control back after systemctl restart dbus", time.monotonic() - restarted)
    assert main_pid(c) == pid  # the same daemon, not a restart
    listed = c.run(["busctl", "call", *TARGET, "ListMilters"]).stdout
    assert '"ordering-probe" "inet:19999@127.0.0.1" true "configured"' in listed, listed
    wait_for(lambda: entries(c, cursor, MMD_EVENT="dbus", MMD_STATUS="connected"),
             "the line saying control is back")
    statuses = [e["MMD_STATUS"] for e in entries(c, cursor, MMD_EVENT="dbus")]
    assert statuses == ["lost", "connected"], statuses


def reload(c: SystemdContainer, config: str) -> tuple[int, float, str, list[str]]:
    """Write the configuration, `systemctl reload`; (status, seconds, cursor, reload statuses)."""
    c.write_file(CONFIG, config)
    cursor = journal_cursor(c)
    started = time.monotonic()
    result = c.run(["systemctl", "reload", SERVICE], check=False, timeout=130)
    seconds = time.monotonic() - started
    # no waiting: when `systemctl reload` returned, the daemon had logged its reload
    statuses = [e["MMD_STATUS"] for e in entries(c, cursor, MMD_EVENT="reload")]
    return result.returncode, seconds, cursor, statuses


def test_reload_with_and_without_dbus(manager: SystemdContainer) -> None:
    c = manager
    c.run(["systemctl", "start", SERVICE], timeout=90)
    wait_for(lambda: control_answers(c), "control on the bus")
    pid = main_pid(c)

    status, seconds, _, statuses = reload(c, GOOD)
    assert (status, statuses) == (0, ["success"])
    timed("systemctl reload through D-Bus", seconds)
    status, seconds, _, statuses = reload(c, BROKEN)
    assert (status, statuses) == (1, ["failed"])
    timed("systemctl reload through D-Bus, configuration refused", seconds)

    c.run(["systemctl", "stop", "dbus.socket", "dbus.service"], timeout=90)
    try:
        assert c.run(["busctl", "status"], check=False).returncode != 0  # no bus at all
        status, seconds, cursor, statuses = reload(c, GOOD)
        assert (status, statuses) == (0, ["success"])
        timed("systemctl reload with D-Bus stopped (SIGHUP and answer)", seconds)
        said = c.run(["journalctl", f"--after-cursor={cursor}", "-u", SERVICE, "-o", "cat",
                      "--no-pager"]).stdout
        assert f"sending SIGHUP to pid {pid}" in said, said
        state = show(c, SERVICE, "ActiveState", "SubState", "MainPID")
        assert state == {"ActiveState": "active", "SubState": "running", "MainPID": pid}

        status, seconds, _, statuses = reload(c, BROKEN)
        assert (status, statuses) == (1, ["failed"])
        timed("systemctl reload with D-Bus stopped, configuration refused", seconds)
        assert main_pid(c) == pid  # the old configuration keeps serving
    finally:
        c.write_file(CONFIG, GOOD)
        c.run(["systemctl", "start", "dbus.socket", "dbus.service"], timeout=90)
    wait_for(lambda: control_answers(c), "control back once the bus runs again", timeout=30)
    assert main_pid(c) == pid


LATE_USER = "mmd-late-user"
LATE_UNIT = "mmd-late-daemon.service"
LATE_POLICY = "/etc/dbus-1/system.d/zz-mmd-late-user.conf"
LATE_POLICY_TEXT = user_policy(LATE_USER, f'<allow own="{BUS_NAME}"/>')


def test_the_user_created_after_the_bus_read_the_policy(manager: SystemdContainer) -> None:
    """The package order of issue 12: the policy file lands (dbus-daemon reads it at once,
    while the user it names does not exist yet), then sysusers creates the user, and nothing
    makes dbus-daemon read the file again. The daemon asks for that itself, once."""
    c = manager
    c.run(["systemctl", "stop", SERVICE])
    c.write_file(LATE_POLICY, LATE_POLICY_TEXT)  # dbus-daemon notices the file by itself
    wait_for(lambda: "Unknown username" in c.run(
        ["journalctl", "-u", "dbus", "-n", "20", "-o", "cat", "--no-pager"]).stdout,
        "dbus-daemon to read the policy naming a user that does not exist yet")
    c.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", LATE_USER])
    try:
        started = time.monotonic()
        c.run(["systemd-run", f"--unit={LATE_UNIT}", f"--uid={LATE_USER}",
               "-p", "RuntimeDirectory=mmd-late", "/usr/sbin/milter-manager", "--no-detection",
               "-s", "unix:/run/mmd-late/milter-manager.sock"])
        wait_for(lambda: has_owner(c), "the daemon to take its name", timeout=30)
        timed("bus name taken by a daemon whose user came after the policy",
              time.monotonic() - started)
        said = c.run(["journalctl", "-u", LATE_UNIT, "-o", "cat", "--no-pager"]).stdout
        assert "asked dbus-daemon to re-read its policy" in said, said
    finally:
        c.run(["systemctl", "stop", LATE_UNIT], check=False)
        c.run(["systemctl", "reset-failed", LATE_UNIT], check=False)
        c.run(["rm", "-f", LATE_POLICY])
        c.run(["userdel", LATE_USER], check=False)
        c.run(["busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
               "org.freedesktop.DBus", "ReloadConfig"])  # forget the test's policy at once
    c.run(["systemctl", "start", SERVICE], timeout=90)
    wait_for(lambda: control_answers(c), "the installed daemon back on the bus")
