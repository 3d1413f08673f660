"""Issue 16 (first part): mmd follows systemd live, in the shared container with Debian's
opendkim, spamass-milter and clamav-milter: `systemctl disable --now opendkim` takes it out
of new sessions and `systemctl enable --now opendkim` brings it back, with no reload; a
stopped (enabled) unit is inactive at once; after `systemctl restart dbus` the daemon
subscribes again. Times are printed (pytest -s). How bursts are gathered is tested in
tests/unit/adapters/test_systemd_follow.py (here each systemctl takes seconds: no burst).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.container import SystemdContainer
from tests.support.mail_packages import SERVICE, MailHost
from tests.support.probes import wait_for

pytestmark = pytest.mark.system

UNIT = "opendkim.service"


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
    c = host.c
    pid = host.main_pid()
    cursor = host.journal_cursor()
    c.run(["systemctl", "restart", "dbus"], timeout=90)
    wait_for(lambda: [e for e in events(host, cursor, "dbus") if e["MMD_STATUS"] == "connected"],
             "control back on the bus")
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
