"""Issue 13 in the engine: bounded streaming, undeclared changes, protocol errors from the
MTA, the spool released at every end, a full temporary disk, a child cut off mid-message."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from mmd.engine import (
    ChildSettings,
    Drain,
    MtaDrain,
    MtaError,
    Output,
    Session,
    SessionSettings,
    ToChild,
)
from mmd.engine.message import MemoryBody
from mmd.engine.stages import Stage
from mmd.engine.verdict import Verdict
from mmd.protocol import messages as m
from mmd.protocol.constants import ALL_STEPS, Step
from mmd.protocol.constants import Action as Act
from tests.unit.engine.driver import (
    MTA_OFFER,
    Driver,
    answer,
    closed,
    commands,
    finished,
    message,
    run_child_through_eom,
    session_end,
    to_mta,
)

NO_REPLY_BODY = answer(Step.NO_REPLY_BODY)


def body_chunks(actions: list[Output], index: int) -> int:
    return sum(isinstance(c, m.Body) for c in commands(actions, index))


# ---------------------------------------------------------------- flow control


def test_body_for_a_no_reply_child_goes_a_window_at_a_time() -> None:
    settings = SessionSettings(chunk_size=10, window=3)
    driver = Driver.start(["quiet"], settings=settings, answers=[NO_REPLY_BODY])
    driver.envelope()
    message(driver, [], b"x" * 100)  # ten chunks to replay
    out = driver.mta(m.EndOfMessage())
    while not isinstance(commands(out, 0)[-1], m.EndOfHeaders):
        out = driver.child(0, m.Continue())
    out = driver.child(0, m.Continue())
    sent = 0
    rounds = 0
    while Drain(0) in out:
        assert body_chunks(out, 0) <= 3, out
        assert not any(isinstance(c, m.EndOfMessage) for c in commands(out, 0))
        sent += body_chunks(out, 0)
        out = driver.session.child_drained(0)
        rounds += 1
    sent += body_chunks(out, 0)
    assert sent == 10
    assert rounds == 3
    assert isinstance(commands(out, 0)[-1], m.EndOfMessage)
    assert to_mta(driver.child(0, m.Continue())) == [m.Continue()]


def test_a_drain_after_the_child_failed_sends_nothing() -> None:
    settings = SessionSettings(chunk_size=10, window=2)
    driver = Driver.start(["quiet", "other"], settings=settings,
                          answers=[NO_REPLY_BODY, answer()])
    driver.envelope()
    message(driver, [], b"x" * 100)
    out = driver.mta(m.EndOfMessage())
    while Drain(0) not in out:
        out = driver.child(0, m.Continue())
    out = driver.fail(0, "timeout: could not write within 1 s")
    # the next child's turn comes at once
    assert commands(out, 1) == [m.EndOfHeaders()]
    assert commands(driver.session.child_drained(0), 0) == []


def test_a_verdict_in_the_middle_of_an_unanswered_body_is_the_childs_answer() -> None:
    settings = SessionSettings(chunk_size=10, window=2)
    driver = Driver.start(["quiet"], settings=settings, answers=[NO_REPLY_BODY])
    driver.envelope()
    message(driver, [], b"x" * 100)
    out = driver.mta(m.EndOfMessage())
    while Drain(0) not in out:
        out = driver.child(0, m.Continue())
    assert to_mta(driver.child(0, m.Reject())) == [m.Reject()]


def test_a_new_body_goes_to_the_mta_a_window_at_a_time() -> None:
    settings = SessionSettings(chunk_size=4, window=2)
    driver = Driver.start(["a"], settings=settings)
    driver.envelope()
    message(driver, [], b"x")
    driver.mta(m.EndOfMessage())
    out = run_child_through_eom(driver, 0, m.ReplaceBody(b"abcdefghijklmnopq"), m.Continue())
    got = to_mta(out)
    assert got == [m.ReplaceBody(b"abcd"), m.ReplaceBody(b"efgh")]
    assert MtaDrain() in out
    # the MTA's commands wait for the whole answer
    assert to_mta(driver.mta(m.Abort())) == []
    out = driver.session.mta_drained()
    got += to_mta(out)
    out = driver.session.mta_drained()
    got += to_mta(out)
    assert got == [m.ReplaceBody(b"abcd"), m.ReplaceBody(b"efgh"), m.ReplaceBody(b"ijkl"),
                   m.ReplaceBody(b"mnop"), m.ReplaceBody(b"q"), m.Continue()]
    assert MtaDrain() not in out


# ---------------------------------------------------------------- undeclared changes

UNDECLARED = [
    m.AddHeader("X-Sneaky", "1"),
    m.InsertHeader(0, "X-Sneaky", "1"),
    m.ChangeHeader(1, "Subject", "changed"),
    m.ChangeFrom("<thief@example.net>"),
    m.AddRecipient("<thief@example.net>"),
    m.AddRecipientWithArgs("<thief@example.net>", "NOTIFY=NEVER"),
    m.DeleteRecipient("<receiver@example.org>"),
    m.ReplaceBody(b"another body\r\n"),
    m.Quarantine("held"),
]


@pytest.mark.parametrize("change", UNDECLARED, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("fallback", [Verdict.ACCEPT, Verdict.REJECT])
def test_an_undeclared_change_fails_the_child_and_none_of_its_changes_pass(
    change: m.Modification, fallback: Verdict
) -> None:
    children = [ChildSettings("honest"), ChildSettings("sneaky", fallback=fallback)]
    driver = Driver.start(children, answers=[answer(actions=Act.ADD_HEADERS),
                                             answer(actions=Act.ADD_HEADERS & 0)])
    driver.envelope()
    message(driver, [("Subject", "hi")], b"body\r\n")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0, m.AddHeader("X-Honest", "yes"), m.Continue())
    out = run_child_through_eom(driver, 1, change, m.AddHeader("X-After", "1"), m.Continue())

    assert 1 in closed(out)
    (record,) = [r for r in finished(driver.log) if r.name == "sneaky"]
    assert record.failed
    assert "protocol violation" in record.reason and type(change).__name__ in record.reason
    expected: list[m.ReplyMessage] = (
        [m.Reject()] if fallback is Verdict.REJECT
        else [m.AddHeader("X-Honest", "yes"), m.Continue()]
    )
    assert to_mta(out) == expected


def test_declared_changes_before_an_undeclared_one_do_not_pass_either() -> None:
    driver = Driver.start(["sneaky"], answers=[answer(actions=Act.ADD_HEADERS)])
    driver.envelope()
    message(driver, [("Subject", "hi")], b"body\r\n")
    driver.mta(m.EndOfMessage())
    out = run_child_through_eom(driver, 0, m.AddHeader("X-Allowed", "1"),
                                m.AddRecipient("<thief@example.net>"))
    assert finished(out)[0].failed
    assert to_mta(out) == [m.Accept()]  # its fallback, accept, and nothing else


def test_a_child_cut_off_after_some_changes_gets_none_through() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    message(driver, [("Subject", "hi")], b"body\r\n")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0, m.AddHeader("X-Half", "1"), m.ReplaceBody(b"new"))
    out = driver.fail(0, "connection closed by the child")
    assert to_mta(out) == [m.Accept()]
    assert finished(out)[0].failed


# ---------------------------------------------------------------- the MTA breaks the protocol


def test_a_second_option_negotiation_ends_the_session_at_once() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    out = driver.mta(MTA_OFFER)
    (error,) = [a for a in out if isinstance(a, MtaError)]
    assert error.fatal and "second option negotiation" in error.reason
    assert not any(isinstance(a, ToChild) and isinstance(a.message, m.Negotiate) for a in out)
    assert m.Quit() in commands(out, 0)
    assert driver.session.finished
    assert session_end(out).disconnected


@pytest.mark.parametrize("version", [0, 1])
def test_an_offer_of_protocol_version_0_or_1_is_refused(version: int) -> None:
    driver = Driver(Session([ChildSettings("a")]))
    out = driver.mta(m.Negotiate(version, MTA_OFFER.actions, ALL_STEPS))
    (error,) = [a for a in out if isinstance(a, MtaError)]
    assert error.fatal and f"version {version}" in error.reason
    assert commands(out, 0) == [m.Quit()]
    assert driver.session.finished


def test_a_command_before_the_option_negotiation_is_refused_and_logged() -> None:
    driver = Driver(Session([ChildSettings("a")]))
    out = driver.mta(m.Helo("early"))
    assert to_mta(out) == [m.Tempfail()]
    (error,) = [a for a in out if isinstance(a, MtaError)]
    assert error.fatal and "Helo before the option negotiation" in error.reason
    assert driver.session.finished


# ---------------------------------------------------------------- the spool


class Store(MemoryBody):
    """A body store that says when it is closed, and can be made to fail like a full disk."""

    made: list[Store] = []  # noqa: RUF012

    def __init__(self, fail_after: int = -1) -> None:
        super().__init__()
        self.closed = False
        self.fail_after = fail_after
        Store.made.append(self)

    def append(self, chunk: bytes) -> None:
        if self.fail_after == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.fail_after -= 1
        super().append(chunk)

    def chunks(self, size: int) -> Iterator[bytes]:
        yield from super().chunks(size)

    def close(self) -> None:
        self.closed = True
        super().close()


def started_with_stores(fail_after: int = -1) -> Driver:
    Store.made = []
    driver = Driver(Session([ChildSettings("a")], body_factory=lambda: Store(fail_after)))
    driver.mta(MTA_OFFER)
    driver.child(0, answer())
    driver.envelope()
    return driver


@pytest.mark.parametrize("end", ["mta-closed", "quit", "second-negotiation"])
def test_the_spooled_body_is_released_when_the_session_ends_mid_message(end: str) -> None:
    driver = started_with_stores()
    message(driver, [("Subject", "hi")], b"body\r\n")
    if end == "mta-closed":
        driver.session.mta_closed()
    elif end == "quit":
        driver.mta(m.Quit())
    else:
        driver.mta(MTA_OFFER)
    assert [s.closed for s in Store.made] == [True]


def test_the_spooled_body_is_released_when_the_mta_leaves_during_end_of_message() -> None:
    driver = started_with_stores()
    message(driver, [("Subject", "hi")], b"body\r\n")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0, m.ReplaceBody(b"new"))
    driver.session.mta_closed()
    assert len(Store.made) == 2
    assert all(s.closed for s in Store.made)


def test_a_full_temporary_disk_is_logged_and_answered_with_tempfail() -> None:
    driver = started_with_stores(fail_after=1)
    out = message(driver, [("Subject", "hi")], b"one\r\n")
    out += driver.mta(m.Body(b"two\r\n"))
    out += driver.mta(m.Body(b"three\r\n"))
    errors = [a for a in out if isinstance(a, MtaError)]
    assert len(errors) == 1, errors
    assert "No space left on device" in errors[0].reason and not errors[0].fatal
    out = driver.mta(m.EndOfMessage())
    assert to_mta(out) == [m.Tempfail()]
    assert commands(out, 0) == [m.Abort()]
    assert Store.made[0].closed
    end = session_end(driver.mta(m.Quit()))
    assert end.status == "temporary-failure"


# ---------------------------------------------------------------- a child cut off


def test_a_child_cut_off_at_end_of_message_by_the_mta_leaving_is_recorded_as_failed() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    message(driver, [("Subject", "hi")], b"body\r\n")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0, m.AddHeader("X-Half", "1"))
    out = driver.session.mta_closed()
    (record,) = finished(out)
    assert record.stage is Stage.END_OF_MESSAGE
    assert record.failed and record.status != "pass"
    assert "cut off at end-of-message" in record.reason
