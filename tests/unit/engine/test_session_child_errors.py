"""A child's failure is marked as such in its statistics record, whoever noticed it.

The adapter logs ``[milter][error]`` from that mark, so a reply that breaks the
protocol (seen only by the engine) is logged like a timeout or a closed socket.
"""

from __future__ import annotations

from mmd.engine import ChildSettings
from mmd.protocol import messages as m
from tests.unit.engine.driver import CONNECT, Driver, finished


def test_nonsense_reply_is_reported_as_a_failure() -> None:
    driver = Driver.start([ChildSettings("odd"), "fine"])
    driver.envelope()  # CONNECT .. DATA, both continue
    driver.mta(m.Abort())
    driver.mta(m.Mail(("<a@example.com>",)))

    out = driver.child(0, m.AddHeader("X-Early", "too early"))

    (record,) = finished(out)
    assert (record.name, record.failed) == ("odd", True)
    assert record.reason == "sent AddHeader at envelope-from"


def test_adapter_reported_failure_is_marked_failed() -> None:
    driver = Driver.start(["a"])
    driver.mta(CONNECT)

    (record,) = finished(driver.fail(0, "timeout: no reply at connect within 7 s"))

    assert record.failed and record.reason.startswith("timeout")


def test_normal_end_is_not_a_failure() -> None:
    driver = Driver.start(["a"])
    driver.mta(CONNECT)
    driver.child(0, m.Continue())

    records = finished(driver.mta(m.Quit()))

    assert [(r.name, r.failed) for r in records] == [("a", False)]
