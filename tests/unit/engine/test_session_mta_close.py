"""The MTA closing the connection without QUIT: a normal end after accept, else a disconnect.

Postfix drops a milter that answered accept for the connection (at connect or
helo) without sending QUIT; that must not count as an SMTP client that went away.
"""

from __future__ import annotations

from mmd.engine import ChildSettings
from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage
from mmd.protocol import messages as m
from tests.unit.engine.driver import CONNECT, Driver, session_end, to_mta


class Never:
    name = "Never"

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        return Decision(apply=False, reason="never") if stage is Stage.CONNECT else None


def test_close_after_every_child_was_skipped_at_connect_is_accept() -> None:
    driver = Driver.start([ChildSettings("grey", conditions=(Never(),))])
    assert to_mta(driver.mta(CONNECT)) == [m.Accept()]

    out = driver.session.mta_closed()

    end = session_end(out)
    assert (end.status, end.disconnected) == ("accept", False)


def test_close_after_every_child_accepted_the_connection_is_accept() -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    driver.child(0, m.Accept())
    assert to_mta(driver.child(1, m.Accept())) == [m.Accept()]

    end = session_end(driver.session.mta_closed())

    assert (end.status, end.disconnected) == ("accept", False)


def test_close_while_a_child_is_still_in_the_connection_is_a_disconnect() -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    driver.child(0, m.Accept())
    driver.child(1, m.Continue())

    end = session_end(driver.session.mta_closed())

    assert (end.status, end.disconnected) == ("temporary-failure", True)
