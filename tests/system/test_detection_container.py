"""Issue 4 acceptance on a real host: Debian's spamass-milter, clamav-milter and opendkim,
detected by the installed ``/usr/sbin/milter-manager`` under a real systemd (the shared
throwaway container), used by the socket-activated daemon, followed through
``systemctl disable/enable`` + ``systemctl reload milter-manager``, and one unreadable milter
configuration costing one journal line while the other milters keep working.

Set-up and restoration of the packages: tests/system/mail_packages.py.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator

import pytest

from tests.system.container import SystemdContainer
from tests.system.mail_packages import (
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
