"""The session's last stage in its statistics record is the last protocol stage.

Postfix sends ABORT after every message and before QUIT; the classic manager's
``[session][end][LAST_STATE]...`` line ignores ABORT (and QUIT), so ours does too.
"""

from __future__ import annotations

from mmd.engine.stages import Stage
from mmd.protocol import messages as m
from tests.unit.engine.driver import CONNECT, Driver, session_end, to_mta


def test_abort_then_quit_after_a_message_keeps_end_of_message() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    driver.mta(m.Header("Subject", "x"))
    driver.mta(m.EndOfMessage())
    answered: list[m.ReplyMessage] = []
    for _ in range(5):  # the replay (header, end-of-header), then end-of-message
        answered = to_mta(driver.child(0, m.Continue()))
        if answered:
            break
    assert answered == [m.Continue()]
    driver.mta(m.Abort())

    end = session_end(driver.mta(m.Quit()))

    assert end.stage is Stage.END_OF_MESSAGE


def test_reject_at_connect_then_abort_keeps_connect() -> None:
    driver = Driver.start(["a"])
    driver.mta(CONNECT)
    driver.child(0, m.Reject())
    driver.mta(m.Abort())

    end = session_end(driver.mta(m.Quit()))

    assert (end.stage, end.status) == (Stage.CONNECT, "reject")
