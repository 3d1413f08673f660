"""Issue 4 acceptance on a real host: Debian's spamass-milter, clamav-milter and opendkim,
detected by the installed ``/usr/sbin/milter-manager`` under a real systemd (the shared
throwaway container), used by the socket-activated daemon, followed through
``systemctl disable/enable`` + ``systemctl reload milter-manager``, and one unreadable milter
configuration costing one journal line while the other milters keep working.

Set-up and restoration of the packages: tests/support/mail_packages.py.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Iterator

import pytest

from tests.support.container import SystemdContainer
from tests.support.mail_packages import (
    OPENDKIM_CONF,
    SERVICE,
    MailHost,
    milter_blocks,
    origin_of,
)

pytestmark = pytest.mark.system

EXPECTED = {
    # name: (connection_spec, origin of the socket)
    "clamav-milter": (
        "unix:/var/run/clamav/clamav-milter.ctl",
        "detected: clamav-milter.service, /etc/clamav/clamav-milter.conf",
    ),
    "spamass-milter": (
        # Debian's /etc/default/spamass-milter sets no SOCKET; its init script then uses the
        # Postfix location because /usr/sbin/postfix exists: detection's packaged default.
        "unix:/var/spool/postfix/spamass/spamass.sock",
        "detected: spamass-milter.service, packaged default",
    ),
    "opendkim": (
        "unix:/run/opendkim/opendkim.sock",
        "detected: opendkim.service, /etc/opendkim.conf",
    ),
}


@pytest.fixture(scope="module")
def host(installed_mmd: SystemdContainer) -> Iterator[MailHost]:
    c = installed_mmd
    probe = c.run(["/usr/sbin/milter-manager", "--help"], check=False)
    assert probe.returncode == 0, probe.stderr
    c.run(["test", "-x", "/usr/bin/milter-test-server"])
    mail = MailHost(c)
    before = mail.postfix_checksum()
    try:
        mail.set_up()
        yield mail
    finally:
        mail.restore()
    assert mail.postfix_checksum() == before, "/etc/postfix changed"


def _has_header(message: str, name: str, value: str) -> bool:
    """An added header in milter-test-server's output. One space or two after the colon:
    with opendkim in the chain the MTA side negotiates leading spaces, so values keep theirs."""
    return re.search(rf"^\+ {re.escape(name)}: +{re.escape(value)}$", message, re.M) is not None


def _enabled(block: list[str]) -> bool:
    value = tomllib.loads("\n".join(line for line in block if not line.startswith("#")))
    enabled = value["enabled"]
    assert isinstance(enabled, bool)
    return enabled


def _check_listed(output: str, enabled: dict[str, bool]) -> None:
    tomllib.loads(output)  # valid TOML as a whole
    blocks = milter_blocks(output)
    for name, (spec, origin) in EXPECTED.items():
        assert name in blocks, f"{name} not listed:\n{output}"
        block = blocks[name]
        assert f'connection_spec = "{spec}"' in block, block
        assert origin_of(block, "connection_spec") == origin
        assert origin_of(block, "name") == origin
        assert origin_of(block, "enabled").startswith(f"detected: {name}.service, ")
        assert _enabled(block) is enabled[name], (name, block)


ALL_ON = {"clamav-milter": True, "spamass-milter": True, "opendkim": True}


def test_show_config_lists_the_real_milters(host: MailHost) -> None:
    as_root = host.show_config()
    _check_listed(as_root, ALL_ON)
    # the install guide's options change nothing in what is detected
    with_user = host.show_config("-u", "milter-manager", "-g", "milter-manager")
    _check_listed(with_user, ALL_ON)
    assert with_user == as_root


def test_show_config_as_the_daemon_user(host: MailHost) -> None:
    # what the daemon itself sees after dropping privileges: same milters, same sockets
    result = host.c.run(["/usr/sbin/milter-manager", "--show-config"], user="milter-manager")
    _check_listed(result.stdout, ALL_ON)


def test_masked_milter_is_listed_as_disabled(host: MailHost) -> None:
    c = host.c
    c.run(["systemctl", "mask", "clamav-milter.service"])
    try:
        output = host.show_config()
        _check_listed(output, {**ALL_ON, "clamav-milter": False})
    finally:
        c.run(["systemctl", "unmask", "clamav-milter.service"])
        c.run(["systemctl", "daemon-reload"])
    _check_listed(host.show_config(), ALL_ON)


def test_a_session_reaches_all_three(host: MailHost) -> None:
    host.reload()
    cursor = host.journal_cursor()
    message = host.session()
    assert "+ DKIM-Signature:" in message and "s=mmdtest" in message, message
    assert "+ X-Spam-Checker-Version:" in message, message
    assert _has_header(message, "X-Virus-Status", "Clean"), message
    verdicts = host.verdicts_after(cursor)
    assert set(verdicts) == set(EXPECTED), verdicts


def test_daemon_runs_as_milter_manager_with_child_socket_groups(host: MailHost) -> None:
    c = host.c
    host.reload()
    pid = host.main_pid()
    assert pid > 0
    status = dict(
        line.split(":", 1) for line in c.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines()
    )
    uid = c.run(["id", "-u", "milter-manager"]).stdout.strip()
    assert status["Uid"].split() == [uid] * 4
    groups = set(status["Groups"].split())
    for group in ("opendkim", "postfix", "clamav"):  # the install guide's usermod lines
        members = c.run(["getent", "group", group]).stdout.strip()
        assert "milter-manager" in members.split(":")[-1].split(","), members
        gid = members.split(":")[2]
        assert gid in groups, (group, status["Groups"])
    # and through them it reaches the sockets: opendkim's is 0770 group opendkim,
    # spamass-milter's 0660 owner and group postfix
    cursor = host.journal_cursor()
    host.session()
    entries = host.manager_entries(cursor)
    assert not [e for e in entries if e.get("MMD_EVENT") == "milter-error"], entries


def test_disable_and_enable_opendkim_with_reload(host: MailHost) -> None:
    c = host.c
    postfix_before = host.postfix_checksum()
    host.reload()
    assert "+ DKIM-Signature:" in host.session()
    c.run(["systemctl", "disable", "--now", "opendkim.service"])
    try:
        host.reload()
        cursor = host.journal_cursor()
        message = host.session()
        assert "DKIM-Signature" not in message, message
        assert "+ X-Spam-Checker-Version:" in message, message
        verdicts = host.verdicts_after(cursor)
        assert set(verdicts) == {"clamav-milter", "spamass-milter"}, verdicts
        _check_listed(host.show_config(), {**ALL_ON, "opendkim": False})
    finally:
        c.run(["systemctl", "enable", "--now", "opendkim.service"])
    host.reload()
    cursor = host.journal_cursor()
    message = host.session()
    assert "+ DKIM-Signature:" in message, message
    assert set(host.verdicts_after(cursor)) == set(EXPECTED)
    _check_listed(host.show_config(), ALL_ON)
    assert host.postfix_checksum() == postfix_before


BREAKAGES = {
    # kind: (shell commands that break /etc/opendkim.conf, its packaged copy at $ASIDE; what
    # the journal line says)
    "directory": ("mkdir {conf}", "it is a directory"),
    "invalid-bytes": ("cp -a $ASIDE {conf} && printf '# caf\\351\\n' >> {conf}", "not UTF-8"),
    # root may read it (systemctl, --show-config as root), the daemon's user may not
    "no-permission": ("cp -a $ASIDE {conf} && chmod 0600 {conf}", "Permission denied"),
}


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_unreadable_opendkim_conf_costs_one_line(host: MailHost, kind: str) -> None:
    c = host.c
    aside = "/var/tmp/mmd-sysdetect-opendkim.conf.aside"
    breaking, reason = BREAKAGES[kind]
    host.reload()
    c.run(["mv", OPENDKIM_CONF, aside])
    try:
        c.run(f"ASIDE={aside}; " + breaking.format(conf=OPENDKIM_CONF))
        cursor = host.journal_cursor()
        host.reload()
        message = host.session()
        verdicts = host.verdicts_after(cursor)
        lines = [
            str(e.get("MESSAGE"))
            for e in host.manager_entries(cursor)
            if OPENDKIM_CONF in str(e.get("MESSAGE"))
        ]
        assert len(lines) == 1, lines
        assert lines[0].startswith("detection of opendkim: "), lines
        assert reason in lines[0], lines
        # the other milters are still used
        assert "+ X-Spam-Checker-Version:" in message, message
        assert _has_header(message, "X-Virus-Status", "Clean"), message
        assert "DKIM-Signature" not in message, message
        assert set(verdicts) == {"clamav-milter", "spamass-milter"}, verdicts
        # and journalctl -u milter-manager, the command an admin runs, shows that line
        unit_log = c.run(["journalctl", "-u", SERVICE, "--no-pager", "-o", "cat",
                          f"--after-cursor={cursor}"]).stdout
        assert lines[0] in unit_log.splitlines()
        # --show-config as the daemon's user says the same on stderr, and leaves opendkim out
        shown = c.run(["/usr/sbin/milter-manager", "--show-config"], user="milter-manager",
                      check=False)
        assert shown.returncode == 0, shown.stderr
        assert lines[0] in shown.stderr, shown.stderr
        assert set(milter_blocks(shown.stdout)) == {"clamav-milter", "spamass-milter"}
    finally:
        c.run(["rm", "-rf", OPENDKIM_CONF])
        c.run(["mv", aside, OPENDKIM_CONF])
    host.reload()
    cursor = host.journal_cursor()
    assert "+ DKIM-Signature:" in host.session()
    assert set(host.verdicts_after(cursor)) == set(EXPECTED)


def test_without_the_group_the_child_socket_is_refused(host: MailHost) -> None:
    """The group membership is what reaches opendkim's 0770 socket: without it, errors."""
    c = host.c
    c.run(["gpasswd", "-d", "milter-manager", "opendkim"])
    try:
        c.run(["systemctl", "restart", SERVICE], timeout=90)  # groups are taken at start
        cursor = host.journal_cursor()
        message = host.session()
        assert "DKIM-Signature" not in message, message
        host.verdicts_after(cursor)
        errors = [
            e for e in host.manager_entries(cursor)
            if e.get("MMD_EVENT") == "milter-error" and e.get("MMD_MILTER") == "opendkim"
        ]
        assert errors, host.manager_entries(cursor)
        assert "ermission denied" in str(errors[0].get("MMD_REASON")), errors[0]
    finally:
        c.run(["gpasswd", "-a", "milter-manager", "opendkim"])
        c.run(["systemctl", "restart", SERVICE], timeout=90)
    cursor = host.journal_cursor()
    assert "+ DKIM-Signature:" in host.session()
    assert set(host.verdicts_after(cursor)) == set(EXPECTED)


ROOT_STARTED = "mmd-sysdetect-root-started.service"
ROOT_STARTED_SOCKET = "/var/tmp/mmd-sysdetect-root-started.sock"


def test_started_as_root_with_user_option(host: MailHost) -> None:
    """The install guide's ``milter-manager -u milter-manager -g milter-manager`` as root: the
    files are read with the user's rights from the start, so the set of children does not
    change at the first reload (a milter file only root may read is reported at once)."""
    c = host.c
    c.run(["chmod", "0600", OPENDKIM_CONF])
    try:
        cursor = host.journal_cursor()
        c.run(["systemd-run", f"--unit={ROOT_STARTED}", "-p", "Type=notify",
               "/usr/sbin/milter-manager", "-u", "milter-manager", "-g", "milter-manager",
               "-s", f"unix:{ROOT_STARTED_SOCKET}", "--no-dbus"], timeout=90)
        pid = c.run(["systemctl", "show", "-pMainPID", "--value", ROOT_STARTED]).stdout.strip()
        status = c.run(["grep", "-E", "^(Uid|Gid):", f"/proc/{pid}/status"]).stdout.split()
        uid = c.run(["id", "-u", "milter-manager"]).stdout.strip()
        gid = c.run(["id", "-g", "milter-manager"]).stdout.strip()
        assert status == ["Uid:", *[uid] * 4, "Gid:", *[gid] * 4], status

        def log() -> list[str]:
            return c.run(["journalctl", "-u", ROOT_STARTED, "-o", "cat", "--no-pager",
                          f"--after-cursor={cursor}"]).stdout.splitlines()

        started = log()
        assert [line for line in started if OPENDKIM_CONF in line] == [
            f"detection of opendkim: cannot read {OPENDKIM_CONF}: Permission denied; skipped"
        ], started
        ready = [line for line in started if line.startswith("ready: ")]
        assert ready and ready[0].endswith("milters: clamav-milter, spamass-milter"), started
        message = c.run(["milter-test-server", "-s", f"unix:{ROOT_STARTED_SOCKET}",
                         "--connect-address", "203.0.113.7", "--output-message",
                         "-h", "From: <sender@example.com>"], timeout=120).stdout
        assert "+ X-Spam-Checker-Version:" in message, message
        assert _has_header(message, "X-Virus-Status", "Clean"), message
        c.run(["systemctl", "kill", "--kill-whom=main", "--signal=HUP", ROOT_STARTED])
        deadline = time.monotonic() + 30
        while not any(line.startswith("reloaded: ") for line in log()):
            assert time.monotonic() < deadline, log()
            time.sleep(0.1)
        reloaded = [line for line in log() if line.startswith("reloaded: ")]
        assert reloaded == ["reloaded: 2 milters: clamav-milter, spamass-milter"], log()
    finally:
        c.run(["chmod", "0644", OPENDKIM_CONF])
        c.run(["systemctl", "stop", ROOT_STARTED], check=False, timeout=120)
        c.run(["systemctl", "reset-failed", ROOT_STARTED], check=False)
        c.run(["rm", "-f", ROOT_STARTED_SOCKET])


def test_unreadable_config_folder_is_reported_not_fatal(host: MailHost) -> None:
    """/etc/milter-manager that the daemon's user may not enter: one problem line and the
    daemon keeps running (it used to crash and restart in a loop), failing closed (issue 13):
    every session gets temporary-failure until the folder is fixed and mmd reloads."""
    c = host.c
    folder = "/etc/milter-manager"
    existed = c.run(["test", "-d", folder], check=False).returncode == 0
    mode = c.run(["stat", "-c", "%a", folder]).stdout.strip() if existed else ""
    c.run(["mkdir", "-p", folder])
    c.run(["chmod", "0700", folder])
    try:
        cursor = host.journal_cursor()
        c.run(["systemctl", "restart", SERVICE], timeout=90)
        lines = [str(e.get("MESSAGE")) for e in host.manager_entries(cursor)
                 if folder in str(e.get("MESSAGE"))]
        problem = f"{folder}: cannot read: Permission denied"
        assert lines == [f"configuration: {problem}",
                         f"ready: configuration refused, every session gets temporary-failure: "
                         f"{problem}; fix it, then: systemctl reload milter-manager"], lines
        assert c.run(["systemctl", "is-active", SERVICE], check=False).stdout.strip() == "active"
        refused = host.session()
        assert "status: temporary-failure" in refused and "DKIM-Signature" not in refused
        c.run(["chmod", mode or "0755", folder])
        host.reload()
        cursor = host.journal_cursor()
        assert "+ DKIM-Signature:" in host.session()
        assert set(host.verdicts_after(cursor)) == set(EXPECTED)
    finally:
        if existed:
            c.run(["chmod", mode, folder])
        else:
            c.run(["rmdir", folder], check=False)
        c.run(["systemctl", "restart", SERVICE], timeout=90)


def test_disable_and_enable_a_sysv_milter_with_reload(host: MailHost) -> None:
    """spamass-milter has only a SysV script on Debian 12: `systemctl disable` removes its rc
    links and the generated unit is no longer wanted; a reload follows that too."""
    c = host.c
    c.run(["systemctl", "disable", "--now", "spamass-milter.service"], timeout=120)
    try:
        host.reload()
        cursor = host.journal_cursor()
        message = host.session()
        assert "X-Spam-" not in message, message
        assert "+ DKIM-Signature:" in message, message
        assert set(host.verdicts_after(cursor)) == {"clamav-milter", "opendkim"}
        _check_listed(host.show_config(), {**ALL_ON, "spamass-milter": False})
    finally:
        c.run(["systemctl", "enable", "--now", "spamass-milter.service"], timeout=120)
    host.reload()
    cursor = host.journal_cursor()
    assert "+ X-Spam-Checker-Version:" in host.session()
    assert set(host.verdicts_after(cursor)) == set(EXPECTED)
    _check_listed(host.show_config(), ALL_ON)


def _list_milters(c: SystemdContainer) -> dict[str, list[object]]:
    reply = c.run(["busctl", "--json=short", "call", "org.miltermanager.Manager1",
                   "/org/miltermanager/Manager1", "org.miltermanager.Manager1", "ListMilters"])
    return {m[0]: m for m in json.loads(reply.stdout)["data"][0]}


def test_enabled_but_stopped_milter_is_inactive_not_tried(host: MailHost) -> None:
    """Issue 12 item 5: listed as inactive, no connect per session, one line per change."""
    c = host.c
    host.reload()
    cursor = host.journal_cursor()  # before the stop: mmd may see it live (issue 16)
    c.run(["systemctl", "stop", "opendkim.service"])  # still enabled
    try:
        host.reload()
        milters = _list_milters(c)
        assert milters["opendkim"][2:7] == [False, "detected", [], False,
                                            "inactive: opendkim.service is inactive"]
        assert milters["clamav-milter"][2] is True
        block = milter_blocks(host.show_config())["opendkim"]
        assert origin_of(block, "enabled").startswith(
            "inactive: opendkim.service is inactive; sessions skip it until it is active"
        ), block
        assert "enabled = false" in block
        for _ in range(3):
            session_cursor = host.journal_cursor()
            assert "DKIM-Signature" not in host.session()
            assert set(host.verdicts_after(session_cursor)) == {"clamav-milter", "spamass-milter"}
        host.reload()  # still stopped: no second warning
        entries = host.manager_entries(cursor)
        assert not [e for e in entries if e.get("MMD_EVENT") == "milter-error"], entries
        states = [(e["MMD_MILTER"], e["MMD_STATUS"], e.get("PRIORITY")) for e in entries
                  if e.get("MMD_EVENT") == "milter-state"]
        assert states == [("opendkim", "inactive", "4")], states
        cursor = host.journal_cursor()
    finally:
        c.run(["systemctl", "start", "opendkim.service"])
    host.reload()
    message = host.session()
    assert "+ DKIM-Signature:" in message, message
    assert _list_milters(c)["opendkim"][2:7] == [True, "detected", [], True, ""]
    back = [(e["MMD_MILTER"], e["MMD_STATUS"]) for e in host.manager_entries(cursor)
            if e.get("MMD_EVENT") == "milter-state"]
    assert back == [("opendkim", "active")], back
    _check_listed(host.show_config(), ALL_ON)
