"""The bus policy in dbus/ and the daemon's own caller check, on real dbus-daemons.

Needs root: it runs busctl as other users (setpriv) and, if missing, creates
the system user ``milter-manager`` and group ``milter-manager-admin`` (as a
package install would; they are left in place), plus a throwaway member of
that group, ``mmd-test-admin``, which it removes again.
"""

from __future__ import annotations

import configparser
import grp
import json
import os
import pwd
import subprocess
from collections.abc import Iterator

import pytest

from mmd.adapters.dbus_service import (
    ADMIN_GROUP,
    BUS_NAME,
    ERROR_ACCESS_DENIED,
    INTERFACE_NAME,
    OBJECT_PATH,
    is_admin,
)
from tests.support.dbus import (
    ACTIVATION_FILE,
    PrivateBus,
    busctl,
    dbus_send,
    start_bus,
    start_fake_daemon,
    stop_fake_daemon,
)

DAEMON_USER = "milter-manager"
TEST_ADMIN = "mmd-test-admin"
NOBODY = "nobody"

READ_ONLY_CALLS = [
    ("ListMilters",),
    ("GetMilter", "s", "clamav-milter"),
    ("GetStatistics",),
    ("ShowConfig",),
]
MUTATING_CALLS = [
    ("Reload",),
    ("SetMilterEnabled", "sb", "clamav-milter", "true"),
]
PROPERTIES = ["Version", "State", "ActiveSessions", "TotalSessions", "ConfigurationFiles"]
# dbus-send spelling of the mutating calls, to see the error *name*
MUTATING_DBUS_SEND = [
    (f"{INTERFACE_NAME}.Reload",),
    (f"{INTERFACE_NAME}.SetMilterEnabled", "string:clamav-milter", "boolean:true"),
]


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def _exists(database: str, name: str) -> bool:
    return subprocess.run(["getent", database, name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def accounts() -> Iterator[None]:
    if os.geteuid() != 0:
        raise RuntimeError("the D-Bus policy tests need root (setpriv, useradd)")
    if not _exists("group", ADMIN_GROUP):
        _run("groupadd", "--system", ADMIN_GROUP)
    if not _exists("passwd", DAEMON_USER):
        _run("useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", DAEMON_USER)  # fmt: skip
    created_admin = not _exists("passwd", TEST_ADMIN)
    if created_admin:
        _run("useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             "/nonexistent", "--shell", "/usr/sbin/nologin", "--groups", ADMIN_GROUP,
             TEST_ADMIN)  # fmt: skip
    yield
    if created_admin:
        _run("userdel", TEST_ADMIN)


@pytest.fixture(scope="module")
def system_bus(accounts: None) -> Iterator[PrivateBus]:
    bus = start_bus("system")
    daemon = start_fake_daemon(bus.address, user=DAEMON_USER)
    yield bus
    stop_fake_daemon(daemon)
    bus.stop()


@pytest.fixture(scope="module")
def permissive_bus(accounts: None) -> Iterator[PrivateBus]:
    """A bus whose policy lets everyone call everything: only the daemon's check is left."""
    bus = start_bus("session")
    daemon = start_fake_daemon(bus.address, user=DAEMON_USER)
    yield bus
    stop_fake_daemon(daemon)
    bus.stop()


def call(
    bus: PrivateBus, member: str, *args: str, user: str | None
) -> subprocess.CompletedProcess[str]:
    return busctl(bus.address, "call", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, member, *args,
                  user=user, check=False)  # fmt: skip


def bus_call(bus: PrivateBus, member: str, *args: str, user: str | None = None) -> str:
    result = busctl(bus.address, "--json=short", "call", "org.freedesktop.DBus",
                    "/org/freedesktop/DBus", "org.freedesktop.DBus", member, *args,
                    user=user, check=False)  # fmt: skip
    return result.stdout if result.returncode == 0 else f"FAILED: {result.stderr}"


# -- who may own the name --------------------------------------------------------------


@pytest.mark.parametrize("user", [None, NOBODY, TEST_ADMIN])
def test_only_the_daemon_user_may_own_the_name(accounts: None, user: str | None) -> None:
    bus = start_bus("system")  # nobody owns the name here yet
    try:
        refused = dbus_send(bus.address, "org.freedesktop.DBus.RequestName",
                            f"string:{BUS_NAME}", "uint32:4", user=user,
                            destination="org.freedesktop.DBus",
                            path="/org/freedesktop/DBus")  # fmt: skip
        assert refused.returncode != 0
        assert refused.stderr.startswith("Error org.freedesktop.DBus.Error.AccessDenied:")
        assert "is not allowed to own the service" in refused.stderr, refused.stderr
        granted = bus_call(bus, "RequestName", "su", BUS_NAME, "4", user=DAEMON_USER)
        assert json.loads(granted)["data"] == [1]  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
    finally:
        bus.stop()


def test_the_running_owner_is_the_daemon_user(system_bus: PrivateBus) -> None:
    owner = json.loads(bus_call(system_bus, "GetNameOwner", "s", BUS_NAME))["data"][0]
    uid = json.loads(bus_call(system_bus, "GetConnectionUnixUser", "s", owner))["data"][0]
    assert pwd.getpwuid(uid).pw_name == DAEMON_USER


# -- who may call what -------------------------------------------------------------------


@pytest.mark.parametrize("user", [None, TEST_ADMIN], ids=["root", "admin-group"])
@pytest.mark.parametrize("member_args", READ_ONLY_CALLS + MUTATING_CALLS, ids=lambda c: c[0])
def test_root_and_admins_may_call_everything(
    system_bus: PrivateBus, user: str | None, member_args: tuple[str, ...]
) -> None:
    result = call(system_bus, *member_args, user=user)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("member_args", MUTATING_CALLS, ids=lambda c: c[0])
def test_the_policy_refuses_mutating_calls_from_others(
    system_bus: PrivateBus, member_args: tuple[str, ...]
) -> None:
    result = call(system_bus, *member_args, user=NOBODY)
    assert result.returncode != 0
    assert "Call failed: Access denied" in result.stderr, result.stderr


@pytest.mark.parametrize("member_args", MUTATING_DBUS_SEND, ids=lambda c: c[0])
def test_the_policy_denial_is_the_bus_access_denied_error(
    system_bus: PrivateBus, member_args: tuple[str, ...]
) -> None:
    result = dbus_send(system_bus.address, *member_args, user=NOBODY)
    assert result.returncode != 0
    assert result.stderr.startswith("Error org.freedesktop.DBus.Error.AccessDenied:"), result.stderr


@pytest.mark.parametrize("member_args", READ_ONLY_CALLS, ids=lambda c: c[0])
def test_anyone_may_call_the_read_only_methods(
    system_bus: PrivateBus, member_args: tuple[str, ...]
) -> None:
    result = call(system_bus, *member_args, user=NOBODY)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", PROPERTIES)
def test_anyone_may_read_the_properties(system_bus: PrivateBus, name: str) -> None:
    result = busctl(system_bus.address, "get-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME,
                    name, user=NOBODY, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_anyone_may_introspect(system_bus: PrivateBus) -> None:
    result = busctl(system_bus.address, "introspect", BUS_NAME, OBJECT_PATH, user=NOBODY,
                    check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert ".SetMilterEnabled" in result.stdout


# -- the daemon's own check, with the policy out of the way ---------------------------------


@pytest.mark.parametrize("member_args", MUTATING_DBUS_SEND, ids=lambda c: c[0])
def test_the_daemon_refuses_mutating_calls_when_the_policy_does_not(
    permissive_bus: PrivateBus, member_args: tuple[str, ...]
) -> None:
    result = dbus_send(permissive_bus.address, *member_args, user=NOBODY)
    assert result.returncode != 0
    assert result.stderr.startswith(f"Error {ERROR_ACCESS_DENIED}:"), result.stderr
    assert "uid 65534 (nobody)" in result.stderr


@pytest.mark.parametrize("user", [None, TEST_ADMIN], ids=["root", "admin-group"])
@pytest.mark.parametrize("member_args", MUTATING_CALLS, ids=lambda c: c[0])
def test_the_daemon_lets_root_and_admins_through(
    permissive_bus: PrivateBus, user: str | None, member_args: tuple[str, ...]
) -> None:
    result = call(permissive_bus, *member_args, user=user)
    assert result.returncode == 0, result.stderr


def test_the_daemon_user_itself_is_not_an_admin(permissive_bus: PrivateBus) -> None:
    result = call(permissive_bus, "Reload", user=DAEMON_USER)
    assert result.returncode != 0
    assert "needs root or membership in group milter-manager-admin" in result.stderr


def test_is_admin_reads_the_group_database(accounts: None) -> None:
    assert is_admin(pwd.getpwnam(TEST_ADMIN).pw_uid) is True
    assert is_admin(pwd.getpwnam(DAEMON_USER).pw_uid) is False
    assert TEST_ADMIN in grp.getgrnam(ADMIN_GROUP).gr_mem


# -- bus activation ----------------------------------------------------------------------------


def test_the_activation_file_points_at_the_systemd_service() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ACTIVATION_FILE)
    section = parser["D-BUS Service"]
    assert section["Name"] == BUS_NAME
    assert section["SystemdService"] == "milter-manager.service"
    assert section["User"] == DAEMON_USER


def test_dbus_daemon_accepts_the_activation_file(system_bus: PrivateBus) -> None:
    names = json.loads(bus_call(system_bus, "ListActivatableNames"))["data"][0]
    assert BUS_NAME in names
