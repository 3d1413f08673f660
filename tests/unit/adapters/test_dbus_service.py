"""The D-Bus adapter on a real private dbus-daemon, driven by busctl and by a dbus-next client."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any
from xml.etree import ElementTree

import pytest
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageType
from dbus_next.errors import DBusError
from dbus_next.message import Message

from mmd.adapters.dbus_service import (
    BUS_NAME,
    ERROR_INVALID_CONFIGURATION,
    ERROR_NO_SUCH_MILTER,
    INTERFACE_NAME,
    OBJECT_PATH,
    BusNameUnavailable,
    DBusHandle,
    add_match,
    export_control,
    is_admin,
)
from mmd.control import Statistics
from tests.support.dbus import (
    DOCS_FILE,
    INTROSPECTION_FILE,
    SHOW_CONFIG_TEXT,
    FakeControl,
    LoopThread,
    PrivateBus,
    busctl,
    console_commands,
    name_has_owner,
    run_example,
    start_bus,
)

MEMBERS = ["Reload", "ListMilters", "GetMilter", "SetMilterEnabled", "GetStatistics",
           "ShowConfig", "Version", "State", "ActiveSessions", "TotalSessions",
           "ConfigurationFiles"]  # fmt: skip

_disconnect: Callable[[MessageBus], None] = MessageBus.disconnect  # untyped in dbus-next


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def service(bus: PrivateBus, loop: LoopThread, control: FakeControl) -> Iterator[DBusHandle]:
    handle = loop.run(export_control(control, bus.address))
    yield handle
    loop.run(handle.close())


def call(bus: PrivateBus, member: str, *args: str, check: bool = True) -> Any:
    """busctl call with JSON output; returns the decoded reply body."""
    result = busctl(
        bus.address,
        "--json=short",
        "call",
        BUS_NAME,
        OBJECT_PATH,
        INTERFACE_NAME,
        member,
        *args,
        check=check,
    )
    if result.returncode != 0:
        return result
    return json.loads(result.stdout) if result.stdout.strip() else None  # no reply body


def get_property(bus: PrivateBus, name: str) -> Any:
    result = busctl(bus.address, "--json=short", "get-property", BUS_NAME, OBJECT_PATH,
                    INTERFACE_NAME, name)  # fmt: skip
    return json.loads(result.stdout)


async def client_call(
    address: str, member: str, signature: str = "", body: list[Any] | None = None
) -> Message:
    client = await MessageBus(bus_address=address).connect()
    try:
        reply = await client.call(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface=INTERFACE_NAME,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        return reply
    finally:
        _disconnect(client)


async def signals_during(
    address: str, member: str, signature: str, body: list[Any], count: int
) -> tuple[Message, list[Message]]:
    """Call MEMBER and collect the first COUNT signals the service sends meanwhile."""
    client = await MessageBus(bus_address=address).connect()
    received: list[Message] = []
    done = asyncio.get_running_loop().create_future()

    def on_message(message: Message) -> None:
        if message.message_type == MessageType.SIGNAL and message.path == OBJECT_PATH:
            received.append(message)
            if len(received) == count and not done.done():
                done.set_result(None)

    try:
        client.add_message_handler(on_message)
        await add_match(client, f"type='signal',path='{OBJECT_PATH}'")
        reply = await client.call(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface=INTERFACE_NAME,
                member=member,
                signature=signature,
                body=body,
            )
        )
        await asyncio.wait_for(done, 5)
        assert reply is not None
        return reply, received
    finally:
        _disconnect(client)


# -- methods ------------------------------------------------------------------


@pytest.mark.usefixtures("service")
def test_list_milters_returns_every_field_in_order(bus: PrivateBus) -> None:
    reply = call(bus, "ListMilters")
    assert reply["type"] == "a(ssbsasbsta{st})"
    [milters] = reply["data"]
    assert milters == [
        ["clamav-milter", "unix:/run/clamav/clamav-milter.ctl", True, "detected", [], True, "",
         120, {"accept": 118, "reject": 2}],
        ["opendkim", "inet:8891@127.0.0.1", True, "configured", ["authentication"], False,
         "connect: connection refused", 0, {}],
    ]  # fmt: skip


@pytest.mark.usefixtures("service")
def test_get_milter_returns_one_struct(bus: PrivateBus) -> None:
    reply = call(bus, "GetMilter", "s", "opendkim")
    assert reply["type"] == "(ssbsasbsta{st})"
    assert reply["data"][0][:4] == ["opendkim", "inet:8891@127.0.0.1", True, "configured"]


@pytest.mark.usefixtures("service")
def test_get_milter_unknown_is_a_typed_error(bus: PrivateBus) -> None:
    failed = call(bus, "GetMilter", "s", "no-such", check=False)
    assert failed.returncode != 0
    assert "no milter named 'no-such'" in failed.stderr
    reply = asyncio.run(client_call(bus.address, "GetMilter", "s", ["no-such"]))
    assert reply.message_type == MessageType.ERROR
    assert reply.error_name == ERROR_NO_SUCH_MILTER


def test_set_milter_enabled_changes_the_control_and_signals(
    bus: PrivateBus, control: FakeControl, service: DBusHandle
) -> None:
    reply, signals = asyncio.run(
        signals_during(bus.address, "SetMilterEnabled", "sb", ["clamav-milter", False], 1)
    )
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body
    [(name, enabled, caller)] = control.set_calls
    assert (name, enabled) == ("clamav-milter", False)
    assert caller.startswith("uid 0 (root) via D-Bus :")
    [changed] = signals
    assert changed.member == "MilterStateChanged"
    assert changed.body == ["clamav-milter", False, f"disabled at runtime by {caller}"]
    # and busctl sees the new state
    assert call(bus, "GetMilter", "s", "clamav-milter")["data"][0][2] is False
    assert call(bus, "SetMilterEnabled", "sb", "clamav-milter", "true") is None
    assert control.set_calls[-1][:2] == ("clamav-milter", True)


def test_set_milter_enabled_unknown_is_a_typed_error(
    bus: PrivateBus, control: FakeControl, service: DBusHandle
) -> None:
    reply = asyncio.run(client_call(bus.address, "SetMilterEnabled", "sb", ["no-such", True]))
    assert reply.error_name == ERROR_NO_SUCH_MILTER
    assert control.set_calls == []


def test_reload_returns_when_done_and_signals(
    bus: PrivateBus, control: FakeControl, service: DBusHandle
) -> None:
    control.reload_seconds = 0.3
    started = time.monotonic()
    reply = call(bus, "Reload")
    assert time.monotonic() - started >= 0.3
    assert control.reloads_finished == 1
    assert reply == {"type": "s", "data": ["reloaded: 2 milters: clamav-milter, opendkim"]}

    control.reload_seconds = 0
    reply_message, signals = asyncio.run(signals_during(bus.address, "Reload", "", [], 2))
    assert reply_message.message_type == MessageType.METHOD_RETURN
    by_member = {s.member: s for s in signals}
    assert by_member["Reloaded"].body == [True, "reloaded: 2 milters: clamav-milter, opendkim"]
    changed = by_member["PropertiesChanged"].body
    assert changed[0] == INTERFACE_NAME
    assert changed[1]["ConfigurationFiles"].value == control.configuration_files()


def test_rejected_reload_is_a_typed_error_with_the_reason(
    bus: PrivateBus, control: FakeControl, service: DBusHandle
) -> None:
    reason = "/etc/milter-manager/milter-manager.toml:7: milter.fallback_status: 'maybe'"
    control.reject_reload_with = reason
    failed = call(bus, "Reload", check=False)
    assert failed.returncode != 0
    assert reason in failed.stderr

    control.reject_reload_with = reason
    reply, signals = asyncio.run(signals_during(bus.address, "Reload", "", [], 1))
    assert reply.error_name == ERROR_INVALID_CONFIGURATION
    assert reply.body == [reason]
    assert [(s.member, s.body) for s in signals] == [("Reloaded", [False, reason])]


@pytest.mark.usefixtures("service")
def test_get_statistics(bus: PrivateBus) -> None:
    reply = call(bus, "GetStatistics")
    assert reply["type"] == "tta{st}a{s(ta{st}dd)}"
    assert reply["data"] == [
        120,
        3,
        {"accept": 115, "reject": 2, "temporary-failure": 3},
        {
            "clamav-milter": [120, {"accept": 118, "reject": 2}, 0.042, 0.318],
            "opendkim": [0, {}, 0.0, 0.0],
        },
    ]


@pytest.mark.usefixtures("service")
def test_show_config_is_the_text(bus: PrivateBus) -> None:
    assert call(bus, "ShowConfig") == {"type": "s", "data": [SHOW_CONFIG_TEXT]}


# -- properties -----------------------------------------------------------------


def test_properties(bus: PrivateBus, control: FakeControl, service: DBusHandle) -> None:
    assert get_property(bus, "Version") == {"type": "s", "data": "0.1.0"}
    assert get_property(bus, "State") == {"type": "s", "data": "running"}
    assert get_property(bus, "ActiveSessions") == {"type": "t", "data": 3}
    assert get_property(bus, "TotalSessions") == {"type": "t", "data": 120}
    assert get_property(bus, "ConfigurationFiles") == {
        "type": "as",
        "data": ["/etc/milter-manager/milter-manager.toml"],
    }
    control.current_state = "stopping"
    assert get_property(bus, "State")["data"] == "stopping"


def test_properties_are_read_only(bus: PrivateBus, service: DBusHandle) -> None:
    result = busctl(bus.address, "set-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME,
                    "State", "s", "stopping", check=False)  # fmt: skip
    assert result.returncode != 0


# -- introspection ----------------------------------------------------------------


def _members(interface: ElementTree.Element) -> dict[str, list[tuple[str, ...]]]:
    """Each method/signal/property with its (name, type, direction) args and annotations."""
    members: dict[str, list[tuple[str, ...]]] = {}
    for element in interface:
        key = f"{element.tag} {element.get('name')}"
        if element.tag == "property":
            members[key] = [(element.get("type", ""), element.get("access", ""))]
        else:
            default = "in" if element.tag == "method" else "out"
            members[key] = [
                (arg.get("name", ""), arg.get("type", ""), arg.get("direction", default))
                for arg in element.findall("arg")
            ]
        members[key] += [
            (a.get("name", ""), a.get("value", "")) for a in element.findall("annotation")
        ]
    return members


@pytest.mark.usefixtures("service")
def test_live_introspection_matches_the_documented_xml(bus: PrivateBus) -> None:
    result = busctl(bus.address, "--json=short", "call", BUS_NAME, OBJECT_PATH,
                    "org.freedesktop.DBus.Introspectable", "Introspect")  # fmt: skip
    reply = json.loads(result.stdout)["data"][0]
    live = ElementTree.fromstring(reply).find(f"interface[@name='{INTERFACE_NAME}']")
    documented = (
        ElementTree.parse(INTROSPECTION_FILE).getroot().find(f"interface[@name='{INTERFACE_NAME}']")
    )
    assert live is not None
    assert documented is not None
    assert _members(live) == _members(documented)
    # every documented arg has a name: what busctl introspect and d-feet show
    assert all(arg.get("name") for arg in documented.iter("arg"))


# -- name handling -------------------------------------------------------------------


def test_a_second_daemon_cannot_take_the_name(
    bus: PrivateBus, loop: LoopThread, service: DBusHandle
) -> None:
    with pytest.raises(BusNameUnavailable):
        loop.run(export_control(FakeControl(), bus.address))


def test_close_gives_the_name_up(bus: PrivateBus, loop: LoopThread) -> None:
    handle = loop.run(export_control(FakeControl(), bus.address))
    assert _has_owner(bus) is True
    loop.run(handle.close())
    assert _has_owner(bus) is False
    loop.run(handle.close())  # twice is harmless


def _has_owner(bus: PrivateBus) -> bool:
    return name_has_owner(bus.address)


def test_export_on_a_bus_that_refuses_the_connection_raises(loop: LoopThread) -> None:
    with pytest.raises((OSError, DBusError)):
        loop.run(export_control(FakeControl(), "unix:path=/nonexistent/mmd-test-bus"))


# -- the in-daemon caller check -------------------------------------------------------


def test_is_admin_root_and_unprivileged() -> None:
    assert is_admin(0) is True
    assert is_admin(65534) is False  # nobody
    assert is_admin(2**31 - 7) is False  # a uid with no passwd entry


# -- the documentation -------------------------------------------------------------------


def test_docs_examples_are_real(bus: PrivateBus, service: DBusHandle) -> None:
    """Every ```console example in docs/dbus.md, replayed in order, prints what the doc says."""
    examples = console_commands(DOCS_FILE.read_text())
    assert len(examples) >= 12
    documented_members = {m for c, _ in examples for m in MEMBERS if f" {m}" in c}
    assert documented_members == set(MEMBERS)
    for command, documented in examples:
        if "| jq " in command and shutil.which("jq") is None:
            raise RuntimeError("docs/dbus.md pipes into jq: install the Debian package jq")
        assert run_example(command, bus.address) == documented, command


# -- failures inside the daemon --------------------------------------------------------------


class BrokenControl(FakeControl):
    def statistics(self) -> Statistics:
        raise RuntimeError("counters are gone")


def test_an_unexpected_error_is_logged_and_answered_without_a_traceback(
    bus: PrivateBus, loop: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    handle = loop.run(export_control(BrokenControl(), bus.address))
    try:
        with caplog.at_level(logging.ERROR):
            reply = asyncio.run(client_call(bus.address, "GetStatistics"))
    finally:
        loop.run(handle.close())
    assert reply.error_name == "org.freedesktop.DBus.Error.Failed"
    assert reply.body == ["GetStatistics failed: counters are gone"]
    [record] = caplog.records
    assert record.name == "mmd.adapters.dbus_service"
    assert record.exc_info is not None


@pytest.mark.usefixtures("service")
def test_typed_errors_are_not_logged_as_failures(
    bus: PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    """dbus-next alone logs a traceback for every DBusError raised by a method."""
    with caplog.at_level(logging.WARNING):
        assert call(bus, "GetMilter", "s", "no-such", check=False).returncode != 0
        assert call(bus, "SetMilterEnabled", "sb", "no-such", "true", check=False).returncode != 0
    assert caplog.records == []


def test_a_lost_bus_ends_the_handle_and_does_not_fail_the_daemon(loop: LoopThread) -> None:
    own_bus = start_bus("session")
    control = FakeControl()
    handle = loop.run(export_control(control, own_bus.address))
    own_bus.stop()  # dbus-daemon gone, e.g. restarted by an admin
    reason = loop.run(handle.wait_lost(), timeout=5)
    assert reason is not None  # what the daemon logs (mmd.adapters.control_link)
    assert not handle.bus.connected
    # the daemon's callbacks still fire and must not raise into reload / override
    assert loop.run(control.reload()) == "reloaded: 2 milters: clamav-milter, opendkim"
    loop.run(control.set_milter_enabled("opendkim", False, "test"))
    assert control.set_calls == [("opendkim", False, "test")]
    loop.run(handle.close())


# -- PropertiesChanged for State and the counters (issue 16) ----------------------------


async def property_signals(address: str, seconds: float, change: Callable[[], None]) -> list[
    dict[str, Any]
]:
    """PropertiesChanged bodies (changed properties) seen for ``seconds`` after ``change()``."""
    client = await MessageBus(bus_address=address).connect()
    seen: list[dict[str, Any]] = []

    def on_message(message: Message) -> None:
        if message.message_type == MessageType.SIGNAL and message.member == "PropertiesChanged":
            seen.append({key: variant.value for key, variant in message.body[1].items()})

    try:
        client.add_message_handler(on_message)
        await add_match(client, f"type='signal',path='{OBJECT_PATH}'")
        change()
        await asyncio.sleep(seconds)
        return seen
    finally:
        _disconnect(client)


def test_state_and_counters_are_signalled_at_most_once_a_period(
    bus: PrivateBus, loop: LoopThread, control: FakeControl
) -> None:
    handle = loop.run(export_control(control, bus.address, signal_properties=True))
    try:
        time.sleep(1.2)  # the first look: the values to compare with

        def many_sessions() -> None:
            for _ in range(50):  # fifty sessions within a moment: one signal, not fifty
                control.total += 1
            control.active = 7
            control.current_state = "reloading"

        seen = asyncio.run(property_signals(bus.address, 1.5, many_sessions))
        assert seen == [{"State": "reloading", "ActiveSessions": 7, "TotalSessions": 170}]
        quiet = asyncio.run(property_signals(bus.address, 1.5, lambda: None))
        assert quiet == []  # nothing changed: nothing sent
    finally:
        loop.run(handle.close())
