"""Issue 16: mmd follows systemd live, in the shared container with Debian's opendkim,
spamass-milter and clamav-milter: `systemctl disable --now opendkim` takes it out of new
sessions and `systemctl enable --now opendkim` brings it back, with no reload; a stopped
(enabled) unit is inactive at once; `systemctl restart dbus` while sessions flow loses none
and the daemon subscribes again; 100 enable/disable toggles make few generations and leak
nothing; a refused child socket names the missing group; opendkim's package installed with
apt while sessions flow joins (dpkg trigger for its socket group). Times and counts are
printed (pytest -s). How bursts are gathered is unit-tested in
tests/unit/adapters/test_systemd_follow.py. The EICAR variant through Postfix with
clamav-milter is tests/system/test_detection_live_guide.py.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.container import SystemdContainer
from tests.support.guide_setup import run_guide_blocks
from tests.support.load import flowing
from tests.support.mail_packages import MANAGER_SOCKET, SERVICE, MailHost
from tests.support.probes import wait_for
from tests.system.conftest import stage_deb

pytestmark = pytest.mark.system

UNIT = "opendkim.service"
BUS_NAME = "org.miltermanager.Manager1"
OBJECT = "/org/miltermanager/Manager1"


@pytest.fixture(scope="module")
def host(installed_mmd: SystemdContainer) -> Iterator[MailHost]:
    mail = MailHost(installed_mmd)
    try:
        mail.set_up()
        yield mail
    finally:
        installed_mmd.run(["systemctl", "enable", "--now", UNIT], check=False)
        mail.restore()


def states(host: MailHost, cursor: str) -> list[tuple[str, str]]:
    return [(str(e["MMD_MILTER"]), str(e["MMD_STATUS"])) for e in host.manager_entries(cursor)
            if e.get("MMD_EVENT") == "milter-state" and e.get("MMD_MILTER") == "opendkim"]


def events(host: MailHost, cursor: str, event: str) -> list[dict[str, Any]]:
    return [e for e in host.manager_entries(cursor) if e.get("MMD_EVENT") == event]


def until_state(host: MailHost, cursor: str, expected: list[tuple[str, str]], what: str) -> float:
    started = time.monotonic()
    wait_for(lambda: states(host, cursor) == expected, what, timeout=15)
    seconds = time.monotonic() - started
    print(f"\n[measured] {what}: {seconds:.2f} s", file=sys.stderr)
    return seconds


def signs(host: MailHost) -> bool:
    return "+ DKIM-Signature:" in host.session()


def test_disable_and_enable_apply_without_a_reload(host: MailHost) -> None:
    c = host.c
    host.reload()
    assert signs(host)
    pid = host.main_pid()
    cursor = host.journal_cursor()
    c.run(["systemctl", "disable", "--now", UNIT])
    until_state(host, cursor, [("opendkim", "left")], "disable --now: opendkim left the set")
    assert not signs(host)
    left = next(e for e in host.manager_entries(cursor) if e.get("MMD_STATUS") == "left")
    assert "opendkim" not in left["MMD_CHILDREN"] and "spamass-milter" in left["MMD_CHILDREN"]
    assert UNIT in left["MMD_REASON"] or "unit files" in left["MMD_REASON"], left
    c.run(["systemctl", "enable", "--now", UNIT])
    until_state(host, cursor, [("opendkim", "left"), ("opendkim", "joined")],
                "enable --now: opendkim back in the set")
    assert signs(host)
    assert events(host, cursor, "reload") == []  # nobody reloaded
    assert host.main_pid() == pid


def test_a_stopped_unit_is_inactive_at_once(host: MailHost) -> None:
    c = host.c
    cursor = host.journal_cursor()
    c.run(["systemctl", "stop", UNIT])  # still enabled
    try:
        until_state(host, cursor, [("opendkim", "inactive")], "stop: opendkim inactive")
        assert not signs(host)
    finally:
        c.run(["systemctl", "start", UNIT])
    until_state(host, cursor, [("opendkim", "inactive"), ("opendkim", "active")],
                "start: opendkim active again")
    assert signs(host)


def test_following_comes_back_after_dbus_restarts(host: MailHost) -> None:
    """Mail flows during `systemctl restart dbus`: every session sent is answered."""
    c = host.c
    pid = host.main_pid()
    cursor = host.journal_cursor()
    with flowing(c, MANAGER_SOCKET) as load:
        c.run(["systemctl", "restart", "dbus"], timeout=90)
        wait_for(lambda: [e for e in events(host, cursor, "dbus")
                          if e["MMD_STATUS"] == "connected"], "control back on the bus")
    print(f"\n[measured] during systemctl restart dbus: {load}", file=sys.stderr)
    assert load.sent > 5 and load.answered == load.sent, f"{load}\n{load.failures}"
    statuses = [e["MMD_STATUS"] for e in events(host, cursor, "dbus")]
    assert statuses == ["lost", "connected"], statuses
    assert "Reload" in c.run(["busctl", "introspect", BUS_NAME, OBJECT], timeout=60).stdout
    c.run(["systemctl", "stop", UNIT])
    try:
        until_state(host, cursor, [("opendkim", "inactive")],
                    "after a bus restart: stop seen live")
    finally:
        c.run(["systemctl", "start", UNIT])
    until_state(host, cursor, [("opendkim", "inactive"), ("opendkim", "active")],
                "after a bus restart: start seen live")
    assert host.main_pid() == pid
    assert c.run(["systemctl", "is-active", SERVICE]).stdout.strip() == "active"


def test_follow_systemd_false_waits_for_a_reload(host: MailHost) -> None:
    """`[manager] follow_systemd = false`: systemd changes count at the next reload only."""
    c = host.c
    config = "/etc/milter-manager/milter-manager.toml"
    c.write_file(config, "[manager]\nfollow_systemd = false\n")
    try:
        host.reload()
        assert signs(host)
        cursor = host.journal_cursor()
        c.run(["systemctl", "disable", "--now", UNIT])
        time.sleep(3)  # the live path reacts within a second when it is on
        assert states(host, cursor) == []
        assert "opendkim" in host.c.run(
            ["busctl", "call", "org.miltermanager.Manager1", "/org/miltermanager/Manager1",
             "org.miltermanager.Manager1", "GetMilter", "s", "opendkim"]).stdout
        host.reload()  # now the reload applies what systemd says
        assert not signs(host)
    finally:
        c.run(["rm", "-f", config])
        c.run(["systemctl", "enable", "--now", UNIT])
        host.reload()
    assert signs(host)


def process_size(host: MailHost) -> tuple[int, int]:
    """The daemon's resident set (KiB) and its open file descriptors, from /proc."""
    pid = host.main_pid()
    status = host.c.read_file(f"/proc/{pid}/status")
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fds = int(host.c.run(f"ls /proc/{pid}/fd | wc -l").stdout)
    return rss, fds


# The real systemctl, at the speed of systemd itself: for a unit that also has a SysV script
# (opendkim), plain `systemctl enable` runs update-rc.d, which reloads systemd twice (seconds
# each in the test container), so plain toggles are no burst: each gets its own generation.
FAST = "SYSTEMCTL_SKIP_SYSV=1 systemctl --no-reload"


def toggle(host: MailHost, times: int) -> float:
    """`systemctl disable`/`enable` opendkim ``times`` times in a row (ends enabled); seconds."""
    started = time.monotonic()
    host.c.run(f"for i in $(seq {times // 2}); do {FAST} disable {UNIT} 2>/dev/null; "
               f"{FAST} enable {UNIT} 2>/dev/null; done", timeout=600)
    return time.monotonic() - started


def settled(host: MailHost, cursor: str, quiet: float = 3.0) -> list[dict[str, Any]]:
    """The live-update entries after ``cursor``, once no new one came for ``quiet`` s."""
    last, since = -1, time.monotonic()
    deadline = since + 60
    while True:
        count = len(events(host, cursor, "live-update"))
        now = time.monotonic()
        if count != last:
            last, since = count, now
        elif now - since >= quiet:
            return events(host, cursor, "live-update")
        assert now < deadline, "live updates did not stop after the toggles"
        time.sleep(0.2)


def updates_reach(host: MailHost, cursor: str, count: int) -> bool:
    return len(events(host, cursor, "live-update")) >= count


def test_100_toggles_make_few_generations_and_no_leak(host: MailHost) -> None:
    c = host.c
    host.reload()
    pid = host.main_pid()
    toggle(host, 20)  # warm up: the first live updates import and cache what they need
    settled(host, host.journal_cursor())
    rss_before, fds_before = process_size(host)
    cursor = host.journal_cursor()
    seconds = toggle(host, 100)
    updates = settled(host, cursor)
    generations = [int(e["MMD_GENERATION"]) for e in updates]
    print(f"\n[measured] 100 enable/disable toggles in {seconds:.1f} s: {len(generations)} "
          f"generations", file=sys.stderr)
    assert 1 <= len(generations) <= 5, updates  # a burst: gathered into a few
    assert generations == list(range(generations[0], generations[0] + len(generations)))
    # the final set is right: opendkim enabled and in use
    assert "opendkim" in updates[-1]["MMD_CHILDREN"], updates[-1]
    assert c.run(["systemctl", "is-enabled", UNIT]).stdout.strip() == "enabled"
    listed = c.run(["busctl", "call", BUS_NAME, OBJECT, BUS_NAME, "GetMilter", "s",
                    "opendkim"]).stdout
    assert '"opendkim" "unix:/run/opendkim/opendkim.sock" true "detected"' in listed, listed
    assert signs(host)
    # no leak, also over many generations: 40 toggles, each waited for (one generation each)
    rss_burst, fds_burst = process_size(host)
    cursor = host.journal_cursor()
    for count in range(1, 41):
        host.c.run(f"{FAST} {'disable' if count % 2 else 'enable'} {UNIT}")
        wait_for(functools.partial(updates_reach, host, cursor, count), f"live update {count}")
    rss_after, fds_after = process_size(host)
    print(f"[measured] RSS {rss_before} -> {rss_burst} (100 toggles) -> {rss_after} KiB "
          f"(40 more generations); fds {fds_before} -> {fds_burst} -> {fds_after}",
          file=sys.stderr)
    assert signs(host)
    assert max(fds_burst, fds_after) <= fds_before + 2, (fds_before, fds_burst, fds_after)
    assert max(rss_burst, rss_after) - rss_before < 4096, (rss_before, rss_burst, rss_after)
    assert host.main_pid() == pid


def milter_errors(host: MailHost, cursor: str) -> list[str]:
    return [str(e["MMD_REASON"]) for e in host.manager_entries(cursor)
            if e.get("MMD_EVENT") == "milter-error" and e.get("MMD_MILTER") == "opendkim"]


def test_a_refused_socket_names_the_missing_group(host: MailHost) -> None:
    """EACCES on a child's socket: the journal says which group is missing and what to do."""
    c = host.c
    group, sock = "mmd-test-sockets", "/run/opendkim/opendkim.sock"
    c.run(["groupadd", "--system", group])
    c.run(["chgrp", group, sock])
    try:
        cursor = host.journal_cursor()
        host.session()  # answered all the same: opendkim's fallback applies
        wait_for(lambda: milter_errors(host, cursor), "opendkim's milter-error entry")
        reason = milter_errors(host, cursor)[0]
        assert reason.startswith(f"cannot connect to unix:{sock}: Permission denied: "), reason
        assert f"user milter-manager is not in group {group}" in reason, reason
        assert f"usermod -a -G {group} milter-manager, then systemctl restart" in reason, reason
        # in the group now, but the running process is not: it says that instead
        c.run(["usermod", "-a", "-G", group, "milter-manager"])
        cursor = host.journal_cursor()
        host.session()
        wait_for(lambda: milter_errors(host, cursor), "opendkim's milter-error entry")
        reason = milter_errors(host, cursor)[0]
        assert f"is in group {group}, but this process started before it was added: " \
               "systemctl restart milter-manager" in reason, reason  # fmt: skip
    finally:
        c.run(["chgrp", "opendkim", sock])
        c.run(["gpasswd", "-d", "milter-manager", group], check=False)
        c.run(["groupdel", group])
    assert signs(host)


def groups_of(c: SystemdContainer, user: str) -> list[str]:
    return c.run(["id", "-nG", user]).stdout.split()


def answered_by_opendkim(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """opendkim's verdict entries of sessions in which it answered (a child that failed also
    gets one, with its fallback, after its milter-error entry)."""
    failed = {e["MMD_SESSION_ID"] for e in entries
              if e.get("MMD_EVENT") == "milter-error" and e.get("MMD_MILTER") == "opendkim"}
    return [e for e in entries if e.get("MMD_EVENT") == "milter-verdict"
            and e.get("MMD_MILTER") == "opendkim" and e["MMD_SESSION_ID"] not in failed]


def test_a_milter_package_installed_while_mail_flows_joins(
    host: MailHost, built_deb: Path
) -> None:
    """Last in this module (opendkim comes back with Debian's configuration: no signing).

    mmd is installed on a host without opendkim (no opendkim group yet), then `apt-get
    install opendkim` runs while sessions flow: live following takes the new unit in, and
    milter-manager's dpkg trigger adds the user to the new socket group and restarts the
    daemon (socket kept open); no reload, no session lost.
    """
    c = host.c
    c.run(["apt-get", "-y", "purge", "opendkim"], timeout=300)
    if c.run(["getent", "passwd", "opendkim"], check=False).returncode == 0:
        c.run(["userdel", "opendkim"])  # purge keeps the user: a host that never had it
    if c.run(["getent", "group", "opendkim"], check=False).returncode == 0:
        c.run(["groupdel", "opendkim"])
    checkout = stage_deb(built_deb, c.state_dir / "live-package-checkout")
    c.run(["apt-get", "-y", "purge", "milter-manager"], timeout=300)
    run_guide_blocks(c, "install", checkout)
    assert "opendkim" not in groups_of(c, "milter-manager")
    c.run(["systemctl", "start", SERVICE], timeout=90)
    pid = host.main_pid()
    cursor = host.journal_cursor()
    with flowing(c, MANAGER_SOCKET) as load:
        started = time.monotonic()
        apt = c.run(["apt-get", "-y", "install", "opendkim"], timeout=300).stdout
        installed = time.monotonic()

        def opendkim_verdicts() -> list[dict[str, Any]]:
            return answered_by_opendkim(host.manager_entries(cursor))

        wait_for(opendkim_verdicts, "a session with opendkim's verdict", timeout=30)
        joined = time.monotonic()
    refused = milter_errors(host, cursor)
    errors = [int(e["__MONOTONIC_TIMESTAMP"]) for e in host.manager_entries(cursor)
              if e.get("MMD_EVENT") == "milter-error" and e.get("MMD_MILTER") == "opendkim"]
    first = int(opendkim_verdicts()[0]["__MONOTONIC_TIMESTAMP"])
    window = f"{(first - errors[0]) / 1e6:.1f} s" if errors else "none"  # without opendkim
    print(f"\n[measured] apt-get install opendkim {installed - started:.1f} s; first opendkim "
          f"verdict {joined - installed:.1f} s after apt returned; {load}; {len(refused)} "
          f"sessions refused by its socket (first refusal to first verdict: {window})",
          file=sys.stderr)
    assert load.sent > 5 and load.answered == load.sent, f"{load}\n{load.failures}"
    assert "milter-manager: added to the milter socket group(s) opendkim" in apt, apt
    assert "opendkim" in groups_of(c, "milter-manager")
    assert events(host, cursor, "reload") == []  # nobody reloaded
    assert host.main_pid() != pid  # the trigger restarted it, to gain the group
    assert all("group opendkim" in reason for reason in refused), refused
    cursor = host.journal_cursor()
    host.session()
    assert host.verdicts_after(cursor).get("opendkim") in ("accept", "pass")
    assert answered_by_opendkim(host.manager_entries(cursor)), milter_errors(host, cursor)
