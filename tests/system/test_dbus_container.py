"""Issue 5 acceptance on the REAL system bus of the container: the installed daemon, started by
its socket unit, serving one child milter (tests/support/children/scripted_milter.py as a transient
unit), driven with ``busctl``/``dbus-send`` as root, as ``nobody`` and as a member of
``milter-manager-admin``; docs/dbus.md is the contract for structure (values depend on the run).
Detection also finds the milters installed on the host (opendkim, spamass-milter, ...): the
tests look at the configured child only.

The module fixture changes shared state of the one container (the configuration file, a user,
a transient unit, the service) and puts every piece back when the module ends.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.container import SystemdContainer
from tests.support.dbus import user_policy
from tests.support.held_session import held_session
from tests.support.probes import journal_cursor, show, wait_for
from tests.support.probes import manager_entries as entries
from tests.support.scripted import CHILD as SCRIPTED_CHILD

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "milter-manager.service"
SOCKET_UNIT = "milter-manager.socket"
MTA_SOCKET = "/run/milter-manager/milter-manager.sock"
CONFIG = "/etc/milter-manager/milter-manager.toml"
TEST_SERVER = "/usr/bin/milter-test-server"

BUS_NAME = "org.miltermanager.Manager1"
OBJECT = "/org/miltermanager/Manager1"
INTERFACE = "org.miltermanager.Manager1"
TARGET = (BUS_NAME, OBJECT, INTERFACE)

CHILD_NAME = "scripted"
CHILD_UNIT = "mmd-sysdbus-child.service"
CHILD_DIR = "/run/mmd-sysdbus-child"  # RuntimeDirectory= of the transient unit, mode 0755
CHILD_SOCKET = f"{CHILD_DIR}/milter.sock"  # the child's umask 0: every user may connect
CHILD_RECORD = f"{CHILD_DIR}/record.jsonl"
CHILD_SCRIPT = "/var/tmp/mmd-sysdbus/scripted_milter.py"
CHILD_SPEC = f"unix:{CHILD_SOCKET}"

ADMIN_GROUP = "milter-manager-admin"
OPERATOR = "mmd-sysdbus-op"  # created in the admin group for this module

GOOD_CONFIG = f"""\
# written by tests/system/test_dbus_container.py
[[milter]]
name = "{CHILD_NAME}"
connection_spec = "{CHILD_SPEC}"
"""

# Line 3 opens a string that never closes: a TOML syntax error with a line number.
BROKEN_CONFIG = f"""\
# written by tests/system/test_dbus_container.py (broken on purpose)
[[milter]]
name = "{CHILD_NAME}
connection_spec = "{CHILD_SPEC}"
"""

# A bus policy that lets the user nobody call every method: only the daemon's own check is left.
OPEN_POLICY = "/etc/dbus-1/system.d/zz-mmd-sysdbus-open.conf"
OPEN_POLICY_TEXT = user_policy("nobody", f'<allow send_destination="{BUS_NAME}"/>')


@dataclass
class Bench:
    """The container with the daemon serving the child; the admin member's uid."""

    c: SystemdContainer
    operator_uid: int


# ---------------------------------------------------------------- helpers


def busctl(
    c: SystemdContainer, verb: str, *args: str, user: str | None = None, check: bool = True,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return c.run(["busctl", *options, verb, *TARGET, *args], user=user, check=check)


def call(c: SystemdContainer, method: str, *args: str, user: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    return busctl(c, "call", method, *args, user=user, check=check)


def call_json(c: SystemdContainer, method: str, *args: str) -> dict[str, Any]:
    result = busctl(c, "call", method, *args, options=("--json=short",))
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def dbus_send(c: SystemdContainer, method: str, *args: str,
              user: str | None = None) -> subprocess.CompletedProcess[str]:
    """dbus-send names the error of a failed call (busctl prints only its message)."""
    return c.run(["dbus-send", "--system", "--print-reply", f"--dest={BUS_NAME}", OBJECT,
                  f"{INTERFACE}.{method}", *args], user=user, check=False, timeout=130)


def reload_bus_config(c: SystemdContainer) -> None:
    c.run(["busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
           "org.freedesktop.DBus", "ReloadConfig"])


def wait_for_entries(c: SystemdContainer, cursor: str, count: int,
                     **matches: str) -> list[dict[str, Any]]:
    """Exactly ``count`` entries; journald may store an entry just after the call returned."""
    wait_for(lambda: len(entries(c, cursor, **matches)) >= count,
             f"{count} journal entries with {matches}", timeout=10)
    time.sleep(0.3)  # and no more than that
    found = entries(c, cursor, **matches)
    assert len(found) == count, found
    return found


def child_connects(c: SystemdContainer) -> int:
    """How many sessions reached the child: one ``connect`` line per session in its record."""
    text = c.run(["cat", CHILD_RECORD], check=False).stdout
    return sum(1 for line in text.splitlines() if line and json.loads(line)["event"] == "connect")


def mta_session(c: SystemdContainer) -> str:
    """One whole SMTP session from the MTA side (as Postfix's user); returns the status line.

    The final status depends on the children detection finds in the container too (opendkim,
    spamass-milter, ...): the tests look at the child's record, not at the status.
    """
    result = c.run([TEST_SERVER, "--connection-spec", f"unix:{MTA_SOCKET}"], user="postfix",
                   timeout=120)
    status = [line for line in result.stdout.splitlines() if line.startswith("status: ")]
    assert status, result.stdout
    return status[0]


def write_config(c: SystemdContainer, text: str) -> None:
    c.write_file(CONFIG, text, mode=0o644)


def docs_block(command_prefix: str) -> list[str]:
    """The output lines docs/dbus.md shows for the first command starting with the prefix."""
    lines = (ROOT / "docs" / "dbus.md").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"$ {command_prefix}"):
            output = []
            for following in lines[index + 1:]:
                if following.startswith(("$ ", "```")):
                    break
                output.append(following)
            return output
    raise AssertionError(f"docs/dbus.md shows no `{command_prefix}`")


def introspect_rows(lines: list[str]) -> dict[str, tuple[str, ...]]:
    """Member -> (type, signature, result or '', flags); property values are left out."""
    rows: dict[str, tuple[str, ...]] = {}
    for line in lines[1:]:  # the header line
        words = line.split()
        if not words or not words[0].startswith("."):
            continue
        name, kind, signature = words[:3]
        result = words[3] if kind in ("method", "signal") else ""
        rows[name] = (kind, signature, result, words[-1])
    return rows


# ---------------------------------------------------------------- the bench


@pytest.fixture(scope="module")
def bench(installed_mmd: SystemdContainer) -> Iterator[Bench]:
    c = installed_mmd
    for tool in (TEST_SERVER, "/usr/sbin/milter-manager", "/usr/bin/busctl", "/usr/bin/dbus-send"):
        c.run(["test", "-x", tool])
    c.run(["getent", "group", ADMIN_GROUP])
    saved_config = c.run(["cat", CONFIG], check=False)
    had_config = saved_config.returncode == 0
    was_active = show(c, SERVICE, "ActiveState")["ActiveState"] == "active"

    c.write_file(CHILD_SCRIPT, SCRIPTED_CHILD.read_text(),
                 mode=0o755)
    c.run(["systemd-run", f"--unit={CHILD_UNIT}", "-p", "RuntimeDirectory=mmd-sysdbus-child",
           "-p", "RuntimeDirectoryMode=0755", "/usr/bin/python3", CHILD_SCRIPT,
           "--socket", CHILD_SPEC, "--record", CHILD_RECORD, "--script",
           json.dumps({"name": CHILD_NAME})])
    c.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
           "--groups", ADMIN_GROUP, OPERATOR])
    try:
        operator_uid = int(c.run(["id", "-u", OPERATOR]).stdout)
        wait_for(lambda: c.run(["test", "-S", CHILD_SOCKET], check=False).returncode == 0,
                 f"the child's socket {CHILD_SOCKET}")
        write_config(c, GOOD_CONFIG)
        # a fresh daemon, started the way Postfix starts it: the first connection to the socket
        c.run(["systemctl", "stop", SERVICE])
        c.run(["systemctl", "reset-failed", SERVICE], check=False)
        c.run(["systemctl", "start", SOCKET_UNIT])
        assert show(c, SERVICE, "ActiveState")["ActiveState"] == "inactive"
        mta_session(c)
        state = show(c, SERVICE, "ActiveState", "SubState", "TriggeredBy")
        assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
        assert SOCKET_UNIT in state["TriggeredBy"]
        assert child_connects(c) == 1, "the first session did not reach the child"
        yield Bench(c, operator_uid)
    finally:
        if had_config:
            write_config(c, saved_config.stdout)
        else:
            c.run(["rm", "-f", CONFIG])
        # a restart forgets runtime overrides; a stop leaves it as it was (socket listening)
        c.run(["systemctl", "restart" if was_active else "stop", SERVICE], check=False,
              timeout=120)
        c.run(["userdel", OPERATOR], check=False)
        c.run(["systemctl", "stop", CHILD_UNIT], check=False)
        c.run(["systemctl", "reset-failed", CHILD_UNIT], check=False)
        c.run(["rm", "-rf", str(Path(CHILD_SCRIPT).parent)], check=False)


# ---------------------------------------------------------------- read-only calls


def test_introspect_matches_the_documented_interface(bench: Bench) -> None:
    c = bench.c
    whole = c.run(["busctl", "introspect", BUS_NAME, OBJECT]).stdout
    for interface in (INTERFACE, "org.freedesktop.DBus.Properties",
                      "org.freedesktop.DBus.Introspectable"):
        assert re.search(rf"^{re.escape(interface)}\s+interface\s", whole, re.M), interface
    ours = c.run(["busctl", "introspect", *TARGET]).stdout.splitlines()
    documented = docs_block(f"busctl introspect {BUS_NAME} {OBJECT} {INTERFACE}")
    assert ours[0].split() == documented[0].split()  # the header
    assert introspect_rows(ours) == introspect_rows(documented)
    # property values are live: the one configuration file, the running state
    assert re.search(rf'^\.ConfigurationFiles\s+property\s+as\s+1 "{CONFIG}"\s+emits-change$',
                     "\n".join(ours), re.M)
    assert re.search(r'^\.State\s+property\s+s\s+"running"\s+emits-change$', "\n".join(ours), re.M)


def test_list_milters_shows_the_child(bench: Bench) -> None:
    c = bench.c
    before = call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][7]
    reached = child_connects(c)
    mta_session(c)
    assert child_connects(c) == reached + 1
    sessions = before + 1  # counted since the daemon started
    plain = call(c, "ListMilters").stdout.strip()
    documented = docs_block(f"busctl call {BUS_NAME} {OBJECT} {INTERFACE} ListMilters")
    assert plain.split(" ", 1)[0] == documented[0].split(" ", 1)[0] == "a(ssbsasbsta{st})"
    # the child's struct printed as in the docs: name spec enabled source conditions reachable
    # last_error sessions verdicts (it continues at every stage: "pass", as the tools say)
    expected = (f'"{CHILD_NAME}" "{CHILD_SPEC}" true "configured" 0 true "" {sessions} '
                f'1 "pass" {sessions}')
    assert expected in plain, plain

    reply = call_json(c, "ListMilters")
    assert reply["type"] == "a(ssbsasbsta{st})"
    milters = {m[0]: m for m in reply["data"][0]}
    assert milters[CHILD_NAME] == [CHILD_NAME, CHILD_SPEC, True, "configured", [], True, "",
                                   sessions, {"pass": sessions}]


def test_properties_as_documented(bench: Bench) -> None:
    c = bench.c
    mta_session(c)
    names = ("Version", "State", "ActiveSessions", "TotalSessions", "ConfigurationFiles")
    lines = busctl(c, "get-property", *names).stdout.splitlines()
    documented = docs_block(f"busctl get-property {BUS_NAME} {OBJECT} {INTERFACE} Version")
    assert [line.split(" ", 1)[0] for line in lines] == [
        line.split(" ", 1)[0] for line in documented
    ] == ["s", "s", "t", "t", "as"]
    version = c.run(["/usr/sbin/milter-manager", "--version"]).stdout.split()[-1]
    assert lines[0] == f's "{version}"'
    assert lines[1] == 's "running"'
    assert lines[2] == "t 0"
    assert int(lines[3].split()[1]) >= 1
    assert lines[4] == f'as 1 "{CONFIG}"'


def test_show_config_says_where_each_value_came_from(bench: Bench) -> None:
    c = bench.c
    result = c.run(["busctl", "--json=short", "call", *TARGET, "ShowConfig"], user="nobody")
    reply = json.loads(result.stdout)
    assert reply["type"] == "s"
    text: str = reply["data"][0]
    assert f"# Files read, in order: {CONFIG}\n" in text
    # socket-activated as user milter-manager: the socket is the unit's, not a per-user default
    assert f'[manager]\n# default\nconnection_spec = "unix:{MTA_SOCKET}"\n' in text, text
    assert "/tmp/" not in text
    assert (f"[[milter]]\n# {CONFIG}:3\nname = \"{CHILD_NAME}\"\n"
            f"# {CONFIG}:4\nconnection_spec = \"{CHILD_SPEC}\"\n") in text, text


def test_active_sessions_counts_a_session_in_flight(bench: Bench) -> None:
    c = bench.c
    with held_session(c, MTA_SOCKET, connect=False):
        assert busctl(c, "get-property", "ActiveSessions").stdout.strip() == "t 1"
    wait_for(lambda: busctl(c, "get-property", "ActiveSessions").stdout.strip() == "t 0",
             "the session to end")


# ---------------------------------------------------------------- who may do what


def test_nobody_reads_but_may_not_change(bench: Bench) -> None:
    c = bench.c
    listed = call(c, "ListMilters", user="nobody").stdout
    assert f'"{CHILD_NAME}" "{CHILD_SPEC}" true' in listed
    assert busctl(c, "get-property", "State", user="nobody").stdout.strip() == 's "running"'
    assert call(c, "GetMilter", "s", CHILD_NAME, user="nobody").returncode == 0

    for method, args in (("Reload", ()), ("SetMilterEnabled", ("sb", CHILD_NAME, "false"))):
        refused = call(c, method, *args, user="nobody", check=False)
        assert refused.returncode != 0, refused.stdout
        assert "Access denied" in refused.stderr, refused.stderr
    named = dbus_send(c, "SetMilterEnabled", f"string:{CHILD_NAME}", "boolean:false",
                      user="nobody")
    assert named.returncode != 0
    assert "Error org.freedesktop.DBus.Error.AccessDenied" in named.stderr, named.stderr
    # nothing changed
    assert call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][2] is True


def test_admin_member_may_reload(bench: Bench) -> None:
    c = bench.c
    cursor = journal_cursor(c)
    reply = call(c, "Reload", user=OPERATOR).stdout.strip()
    assert reply.startswith('s "') and CHILD_NAME in reply, reply
    wait_for_entries(c, cursor, 1, MMD_EVENT="reload", MMD_STATUS="success")


def test_disabled_milter_is_skipped_and_the_journal_says_who(bench: Bench) -> None:
    c = bench.c
    cursor = journal_cursor(c)
    assert call(c, "SetMilterEnabled", "sb", CHILD_NAME, "false", user=OPERATOR).stdout == ""
    try:
        assert call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][2] is False
        before = child_connects(c)
        mta_session(c)
        assert child_connects(c) == before, "a disabled child still got the session"

        (event,) = wait_for_entries(c, cursor, 1, MMD_EVENT="milter-state")
        assert event["MMD_MILTER"] == CHILD_NAME
        assert event["_SYSTEMD_UNIT"] == SERVICE  # what `journalctl -u milter-manager` shows
        assert event["MMD_STATUS"] == "disabled"
        assert f"uid {bench.operator_uid} ({OPERATOR})" in event["MMD_REASON"], event
        assert "via D-Bus :" in event["MMD_REASON"]
    finally:
        call(c, "SetMilterEnabled", "sb", CHILD_NAME, "true", user=OPERATOR)
    assert call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][2] is True
    before = child_connects(c)
    mta_session(c)
    assert child_connects(c) == before + 1
    (enabled,) = wait_for_entries(c, cursor, 1, MMD_EVENT="milter-state", MMD_STATUS="enabled")
    assert f"uid {bench.operator_uid} ({OPERATOR})" in enabled["MMD_REASON"]


def test_the_daemon_checks_the_caller_itself(bench: Bench) -> None:
    """The second lock: with a bus policy that lets nobody through, the daemon refuses."""
    c = bench.c
    c.write_file(OPEN_POLICY, OPEN_POLICY_TEXT)
    reload_bus_config(c)
    try:
        for method, args in (("Reload", ()),
                             ("SetMilterEnabled", (f"string:{CHILD_NAME}", "boolean:false"))):
            refused = dbus_send(c, method, *args, user="nobody")
            assert refused.returncode != 0
            assert refused.stderr.strip() == (
                f"Error org.miltermanager.Error.AccessDenied: {method} needs root or membership "
                f"in group {ADMIN_GROUP}; caller is uid 65534 (nobody)"
            ), refused.stderr
    finally:
        c.run(["rm", "-f", OPEN_POLICY])
        reload_bus_config(c)
    assert call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][2] is True
    closed = dbus_send(c, "Reload", user="nobody")
    assert "Error org.freedesktop.DBus.Error.AccessDenied" in closed.stderr, closed.stderr


def test_leaving_the_admin_group_takes_the_right_away(bench: Bench) -> None:
    c = bench.c
    c.run(["gpasswd", "--delete", OPERATOR, ADMIN_GROUP])
    try:
        reload_bus_config(c)  # dbus-daemon caches group lists until it reloads
        refused = dbus_send(c, "SetMilterEnabled", f"string:{CHILD_NAME}", "boolean:false",
                            user=OPERATOR)
        assert refused.returncode != 0
        assert re.match(r"Error org\.(freedesktop\.DBus|miltermanager)\.Error\.AccessDenied: ",
                        refused.stderr), refused.stderr
        assert call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][2] is True
    finally:
        c.run(["gpasswd", "--add", OPERATOR, ADMIN_GROUP])
        reload_bus_config(c)
    assert call(c, "SetMilterEnabled", "sb", CHILD_NAME, "true", user=OPERATOR).returncode == 0


# ---------------------------------------------------------------- reload


def test_reload_of_a_broken_configuration_keeps_the_old_one(bench: Bench) -> None:
    c = bench.c
    main_pid = show(c, SERVICE, "MainPID")["MainPID"]
    cursor = journal_cursor(c)
    write_config(c, BROKEN_CONFIG)
    try:
        refused = call(c, "Reload", check=False)
        assert refused.returncode != 0
        reason = re.search(rf"{re.escape(CONFIG)}:(\d+)", refused.stderr)
        assert reason, refused.stderr
        assert refused.stderr.startswith("Call failed: ")
        named = dbus_send(c, "Reload")
        assert "Error org.miltermanager.Error.InvalidConfiguration: " in named.stderr, named
        assert f"{CONFIG}:{reason.group(1)}" in named.stderr

        # the old configuration keeps serving
        before = child_connects(c)
        mta_session(c)
        assert child_connects(c) == before + 1
        assert call_json(c, "GetMilter", "s", CHILD_NAME)["data"][0][:2] == [CHILD_NAME,
                                                                              CHILD_SPEC]

        # `systemctl reload` goes the same way, and fails
        reload_cursor = journal_cursor(c)
        through_systemd = c.run(["systemctl", "reload", SERVICE], check=False, timeout=130)
        assert through_systemd.returncode != 0
        (failed,) = wait_for_entries(c, reload_cursor, 1, MMD_EVENT="reload",
                                     MMD_STATUS="failed")
        assert f"{CONFIG}:{reason.group(1)}" in failed["MMD_REASON"]
        assert failed["MMD_REASON"] in refused.stderr
        wait_for_entries(c, cursor, 3, MMD_EVENT="reload", MMD_STATUS="failed")
        state = show(c, SERVICE, "ActiveState", "SubState", "MainPID")
        assert state == {"ActiveState": "active", "SubState": "running", "MainPID": main_pid}
    finally:
        write_config(c, GOOD_CONFIG)
    good_cursor = journal_cursor(c)
    c.run(["systemctl", "reload", SERVICE], timeout=130)
    wait_for_entries(c, good_cursor, 1, MMD_EVENT="reload", MMD_STATUS="success")
    assert show(c, SERVICE, "MainPID")["MainPID"] == main_pid


def test_reloaded_signal_after_a_good_reload(bench: Bench) -> None:
    c = bench.c
    match = f"type='signal',sender='{BUS_NAME}',path='{OBJECT}',member='Reloaded'"
    monitor = c.popen(f"exec timeout 60 busctl --json=short monitor --match={shlex.quote(match)}")
    assert monitor.stdout is not None
    try:
        time.sleep(1)  # the match must be in place before the reload
        reply = call(c, "Reload").stdout.strip()
        message = json.loads(reply.removeprefix("s ")) if reply.startswith("s ") else None
        assert message, reply
        line = monitor.stdout.readline()
        assert line, "busctl monitor saw no Reloaded signal"
        signal = json.loads(line)
        assert signal["member"] == "Reloaded"
        assert signal["payload"] == {"type": "bs", "data": [True, message]}
    finally:
        monitor.kill()
        monitor.wait()


# ---------------------------------------------------------------- bus activation


def test_a_call_starts_the_stopped_daemon(bench: Bench) -> None:
    """dbus/org.miltermanager.Manager1.service: the bus asks systemd for milter-manager.service."""
    c = bench.c
    c.run(["systemctl", "stop", SERVICE])
    assert show(c, SERVICE, "ActiveState")["ActiveState"] == "inactive"
    cursor = journal_cursor(c)
    listed = call(c, "ListMilters", user="nobody").stdout  # anyone's call may activate it
    assert f'"{CHILD_NAME}" "{CHILD_SPEC}" true "configured" 0 true "" 0 0' in listed, listed
    state = show(c, SERVICE, "ActiveState", "SubState")
    assert state == {"ActiveState": "active", "SubState": "running"}
    activation = c.run(["journalctl", f"--after-cursor={cursor}", "-o", "cat", "--no-pager"])
    assert f"Activating via systemd: service name='{BUS_NAME}'" in activation.stdout
    # and it still serves the MTA side through the socket unit
    reached = child_connects(c)
    mta_session(c)
    assert child_connects(c) == reached + 1


# ---------------------------------------------------------------- refused calls (issue 13, 9)


def test_unknown_property_or_interface_cannot_fill_the_log(bench: Bench) -> None:
    """Any local user may ask; each gets the typed error; the journal gets one short line."""
    c = bench.c
    cursor = journal_cursor(c)
    # busctl as the unprivileged user, as a reader would type it; dbus-send names the errors
    script = (
        "for i in $(seq 25); do "
        f"busctl get-property {BUS_NAME} {OBJECT} {INTERFACE} Nope; "
        f"busctl get-property {BUS_NAME} {OBJECT} org.example.Nope State; "
        "done 2>&1 | sort | uniq -c"
    )
    said = c.run(["sh", "-c", script], user="nobody").stdout
    assert said.split("\n")[0].split(None, 1) == [
        "25", f"Failed to get property Nope on interface {INTERFACE}: interface "
        f'"{INTERFACE}" does not have property "Nope"'
    ], said
    assert "25 Failed to get property State on interface org.example.Nope: " in said, said
    for args, error_name in (
        ((f"string:{INTERFACE}", "string:Nope"), "UnknownProperty"),
        (("string:org.example.Nope", "string:State"), "UnknownInterface"),
    ):
        named = c.run(["dbus-send", "--system", "--print-reply", f"--dest={BUS_NAME}", OBJECT,
                       "org.freedesktop.DBus.Properties.Get", *args], user="nobody", check=False)
        assert named.stderr.startswith(f"Error org.freedesktop.DBus.Error.{error_name}: ")
    assert busctl(c, "get-property", "State", user="nobody").stdout.strip() == 's "running"'
    time.sleep(0.5)  # journald stores what came last
    ours = entries(c, cursor)
    assert not [e for e in ours if int(e.get("PRIORITY", "6")) <= 4], ours  # no WARNING/ERROR
    assert not [e for e in ours if "Traceback" in e["MESSAGE"]]
    refused = [e for e in ours if e.get("MMD_EVENT") == "dbus-refused"]
    assert len(refused) == 1, refused  # one a minute at most; none came before in this daemon
    assert len(refused[0]["MESSAGE"]) < 300 and "\n" not in refused[0]["MESSAGE"]
    assert refused[0]["MESSAGE"].startswith("D-Bus: refused org.freedesktop.DBus.Properties.Get")
