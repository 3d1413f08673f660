"""Issue 13, defect 9: calls any local user may make that the daemon refuses (an unknown
property or interface, a Set of a read-only property) get their typed error and cost at most
one short log line per minute, never an ERROR with a traceback each.
"""

from __future__ import annotations

import logging

import pytest

from mmd.adapters.dbus_service import BUS_NAME, RefusalLog, export_control
from tests.support.dbus import FakeControl, LoopThread, PrivateBus, dbus_send

PROPERTIES = "org.freedesktop.DBus.Properties"

# (member, arguments, the typed error the caller gets)
REFUSED = [
    (f"{PROPERTIES}.Get", ("string:org.miltermanager.Manager1", "string:Nope"),
     "org.freedesktop.DBus.Error.UnknownProperty"),
    (f"{PROPERTIES}.Get", ("string:org.example.Nope", "string:State"),
     "org.freedesktop.DBus.Error.UnknownInterface"),
    (f"{PROPERTIES}.GetAll", ("string:org.example.Nope",),
     "org.freedesktop.DBus.Error.UnknownInterface"),
    (f"{PROPERTIES}.Set", ("string:org.miltermanager.Manager1", "string:State",
                           "variant:string:x"), "org.freedesktop.DBus.Error.PropertyReadOnly"),
    ("org.example.Nope.Foo", (), "org.freedesktop.DBus.Error.UnknownMethod"),
]  # fmt: skip


def test_refused_calls_get_typed_errors_and_one_short_line(
    bus: PrivateBus, loop: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    handle = loop.run(export_control(FakeControl(), bus.address))
    handle.bus.refusals = RefusalLog()  # type: ignore[attr-defined]  # a fresh minute
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(4):
                for member, args, error_name in REFUSED:
                    result = dbus_send(bus.address, member, *args, user="nobody",
                                       destination=BUS_NAME)  # fmt: skip
                    assert result.returncode != 0
                    assert result.stderr.startswith(f"Error {error_name}: "), result.stderr
            # and the daemon still answers
            state = dbus_send(bus.address, f"{PROPERTIES}.Get",
                              "string:org.miltermanager.Manager1", "string:State", user="nobody")
            assert 'variant       string "running"' in state.stdout, state
    finally:
        loop.run(handle.close())
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
    lines = [r.getMessage() for r in caplog.records if r.name == "mmd.adapters.dbus_service"]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"D-Bus: refused {PROPERTIES}.Get from :1."), lines
    assert "UnknownProperty" in lines[0] and "\n" not in lines[0] and len(lines[0]) < 300


def test_the_next_line_counts_what_was_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    refusals = RefusalLog(interval=60, clock=lambda: now[0])
    from dbus_next.message import Message

    call = Message(destination=BUS_NAME, path="/org/miltermanager/Manager1",
                   interface=PROPERTIES, member="Get", sender=":1.7")  # fmt: skip
    with caplog.at_level(logging.INFO):
        for step in range(10):
            now[0] = 100.0 + step  # ten refusals within the minute
            refusals.refused(call, "org.freedesktop.DBus.Error.UnknownProperty", "x " * 200)
        now[0] = 161.0
        refusals.refused(call, "org.freedesktop.DBus.Error.UnknownProperty", "no such")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].endswith("…") and len(lines[0]) < 300  # a long text is cut short
    assert lines[1] == (f"D-Bus: refused {PROPERTIES}.Get from :1.7: "
                        "org.freedesktop.DBus.Error.UnknownProperty: no such "
                        "(9 more since the last line)")  # fmt: skip
