"""Connection reuse (QUIT_NC) in the engine: which child connections may serve another
session, with which options, and which packet they get last (mmd.engine.reuse)."""

from __future__ import annotations

import weakref

import pytest

from mmd.engine import ChildSettings, Session
from mmd.engine.outputs import Output, ReuseChild
from mmd.engine.reuse import NegotiatedOptions, Rest, rest_after_answer, reusable
from mmd.engine.stages import Stage
from mmd.protocol import messages as m
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Step
from tests.unit.engine.driver import (
    CONNECT,
    MTA_OFFER,
    Driver,
    answer,
    closed,
    commands,
    message,
    run_child_through_eom,
    to_child,
    to_mta,
)

CHILD_OFFER = m.Negotiate(6, ALL_ACTIONS, ALL_STEPS)


class Kept:
    """The adapter's side: which children have a kept connection, and who asked."""

    def __init__(self, options: dict[int, NegotiatedOptions]) -> None:
        self.options = options
        self.asked: list[tuple[int, m.Negotiate]] = []

    def __call__(self, index: int, offer: m.Negotiate) -> NegotiatedOptions | None:
        self.asked.append((index, offer))
        kept = self.options.get(index)
        return kept if kept is not None and kept.fits(offer) else None


def start(
    names: list[str], kept: dict[int, NegotiatedOptions] | None = None
) -> tuple[Driver, Kept, list[Output]]:
    source = Kept(kept or {})
    driver = Driver(Session([ChildSettings(n) for n in names], links=source))
    out = driver.mta(MTA_OFFER)
    return driver, source, out


def reuses(actions: list[Output]) -> dict[int, ReuseChild]:
    return {a.index: a for a in actions if isinstance(a, ReuseChild)}


def full_message(driver: Driver, count: int, eom: m.ReplyMessage) -> list[Output]:
    driver.envelope()
    out = message(driver, [("Subject", "hello")], b"body\r\n")
    out += driver.mta(m.EndOfMessage(b""))
    for index in range(count):
        out += run_child_through_eom(driver, index, eom)
    return out


# ---------------------------------------------------------------- the rules


def test_only_protocol_6_keeps_options() -> None:
    assert reusable(CHILD_OFFER, answer()) == NegotiatedOptions(CHILD_OFFER, answer())
    assert reusable(CHILD_OFFER, m.Negotiate(2, ALL_ACTIONS, Step(0))) is None
    assert reusable(m.Negotiate(4, ALL_ACTIONS, ALL_STEPS), answer()) is None


@pytest.mark.parametrize(
    ("stage", "reply", "rest"),
    [
        (Stage.END_OF_MESSAGE, m.Continue(), Rest.ANSWERED),
        (Stage.END_OF_MESSAGE, m.Accept(), Rest.BUSY),
        (Stage.END_OF_MESSAGE, m.Reject(), Rest.BUSY),
        (Stage.END_OF_MESSAGE, m.ReplyCode("550 5.7.1 no"), Rest.BUSY),
        (Stage.UNKNOWN, m.Reject(), Rest.ANSWERED),
        (Stage.UNKNOWN, m.Continue(), Rest.ANSWERED),
        (Stage.UNKNOWN, m.Accept(), Rest.BUSY),
        (Stage.RCPT, m.Continue(), Rest.BUSY),
    ],
)
def test_where_libmilter_stands_after_an_answer(
    stage: Stage, reply: m.ReplyMessage, rest: Rest
) -> None:
    assert rest_after_answer(stage, reply) is rest


def test_fresh_answer_must_match_the_kept_one() -> None:
    options = NegotiatedOptions(CHILD_OFFER, answer())
    assert options.same_child(answer())
    assert not options.same_child(answer(Step.NO_HEADERS))
    assert not options.same_child(m.Continue())
    assert options.fits(CHILD_OFFER)
    assert not options.fits(m.Negotiate(6, ALL_ACTIONS, Step(0)))


# ---------------------------------------------------------------- negotiation


def test_kept_connection_is_not_negotiated_again() -> None:
    kept = NegotiatedOptions(CHILD_OFFER, answer(Step.NO_HEADERS))
    driver, source, out = start(["a", "b"], {0: kept})
    assert source.asked == [(0, CHILD_OFFER), (1, CHILD_OFFER)]
    assert to_child(out, 0) == []  # no OPTNEG for the kept connection
    assert to_child(out, 1) == [CHILD_OFFER]
    out = driver.child(1, answer())
    (merged,) = to_mta(out)
    assert isinstance(merged, m.Negotiate)
    # the kept answer counts as if the child had given it now
    assert driver.session.conversations[0].steps == int(Step.NO_HEADERS)
    assert driver.session.conversations[0].options == kept


def test_all_kept_answers_the_mta_at_once() -> None:
    kept = NegotiatedOptions(CHILD_OFFER, answer())
    fresh = Driver.start(["a"])
    _, _, out = start(["a"], {0: kept})
    assert to_mta(out) == to_mta(fresh.log)
    assert to_child(out, 0) == []


def test_options_are_kept_only_when_reuse_is_on() -> None:
    plain = Driver.start(["a"])
    assert plain.session.conversations[0].options is None
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    assert driver.session.conversations[0].options == NegotiatedOptions(CHILD_OFFER, answer())


def test_child_opted_out_is_neither_taken_nor_kept() -> None:
    """``reuse_connection = false``: a fresh OPTNEG and QUIT, even with reuse on and a
    kept connection on offer."""
    kept = NegotiatedOptions(CHILD_OFFER, answer())
    source = Kept({0: kept, 1: kept})
    settings = [ChildSettings("a", reuse=False), ChildSettings("b")]
    driver = Driver(Session(settings, links=source))
    out = driver.mta(MTA_OFFER)
    assert source.asked == [(1, CHILD_OFFER)]
    assert to_child(out, 0) == [CHILD_OFFER]
    assert to_child(out, 1) == []
    driver.child(0, answer())
    assert driver.session.conversations[0].options is None
    full_message(driver, 2, m.Continue())
    out = driver.mta(m.Quit())
    assert set(reuses(out)) == {1}
    assert closed(out) == {0}
    assert commands(out, 0) == [m.Quit()]


# ---------------------------------------------------------------- the end of a session


def test_continue_at_eom_ends_with_quit_nc_and_reuse() -> None:
    driver, _, _ = start(["a", "b"])
    driver.child(0, answer())
    driver.child(1, answer())
    full_message(driver, 2, m.Continue())
    out = driver.mta(m.Quit())
    assert set(reuses(out)) == {0, 1}
    assert all(r.quit_nc for r in reuses(out).values())
    assert closed(out) == set()
    assert commands(out, 0) == []  # the adapter sends QUIT_NC, or QUIT when it cannot keep it
    assert driver.session.finished


def test_verdict_at_eom_closes_that_child() -> None:
    driver, _, _ = start(["a", "b"])
    driver.child(0, answer())
    driver.child(1, answer())
    driver.envelope()
    message(driver, [("Subject", "hello")], b"body\r\n")
    driver.mta(m.EndOfMessage(b""))
    run_child_through_eom(driver, 0, m.Accept())
    run_child_through_eom(driver, 1, m.Continue())
    out = driver.mta(m.Quit())
    assert set(reuses(out)) == {1}
    assert closed(out) == {0}
    assert commands(out, 0) == [m.Quit()]


def test_session_without_a_message_closes_the_children() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    driver.mta(CONNECT)
    driver.child(0, m.Continue())
    out = driver.mta(m.Quit())
    assert reuses(out) == {}
    assert closed(out) == {0}


def test_child_untouched_since_negotiation_is_kept_without_quit_nc() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    out = driver.mta(m.Quit())
    assert reuses(out)[0].quit_nc is False
    assert to_child(out, 0) == []


def test_kept_connection_untouched_again_goes_back_without_quit_nc() -> None:
    kept = NegotiatedOptions(CHILD_OFFER, answer())
    driver, _, _ = start(["a"], {0: kept})
    out = driver.mta(m.Quit())
    assert reuses(out) == {0: ReuseChild(0, kept, False)}


def test_unknown_answered_is_a_place_to_quit_nc() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    driver.mta(CONNECT)
    driver.child(0, m.Continue())
    driver.mta(m.Unknown("XYZZY"))
    driver.child(0, m.Reject())
    out = driver.mta(m.Quit())
    assert reuses(out)[0].quit_nc is True


def test_mta_leaving_mid_message_closes_the_children() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    driver.envelope()
    out = driver.session.mta_closed()
    assert reuses(out) == {}
    assert commands(out, 0) == [m.Abort(), m.Quit()]


def test_mta_leaving_after_a_message_reuses() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    full_message(driver, 1, m.Continue())
    out = driver.session.mta_closed()
    assert reuses(out)[0].quit_nc is True


def test_failed_child_is_not_reused() -> None:
    driver, _, _ = start(["a", "b"])
    driver.child(0, answer())
    driver.child(1, answer())
    driver.fail(0, "connection closed by the child")
    out = driver.mta(m.Quit())
    assert set(reuses(out)) == {1}


def test_protocol_2_child_is_closed() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, m.Negotiate(2, ALL_ACTIONS, Step(0)))
    out = driver.mta(m.Quit())
    assert reuses(out) == {}
    assert closed(out) == {0}


def test_without_a_link_source_nothing_is_reused() -> None:
    driver = Driver.start(["a"])
    full_message(driver, 1, m.Continue())
    out = driver.mta(m.Quit())
    assert reuses(out) == {}
    assert commands(out, 0) == [m.Quit()]


def test_outcome_is_the_same_with_reuse_on_and_off() -> None:
    plain = Driver.start(["a", "b"])
    pooled, _, _ = start(["a", "b"])
    pooled.child(0, answer())
    pooled.child(1, answer())
    for driver in (plain, pooled):
        driver.log.clear()
        full_message(driver, 2, m.Continue())
    assert to_mta(plain.log) == to_mta(pooled.log)
    assert [a for a in plain.log if not isinstance(a, ReuseChild)] == pooled.log


# ---------------------------------------------------------------- QUIT_NC from the MTA


def test_mta_quit_nc_is_not_sent_to_an_untouched_child() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    out = driver.mta(m.QuitNewConnection())
    assert commands(out, 0) == []  # libmilter would fall back to HELO and ignore CONNECT
    assert commands(driver.mta(CONNECT), 0) == [CONNECT]


def test_quit_nc_where_libmilter_ignores_it_leaves_the_connection_busy() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    driver.mta(CONNECT)
    driver.child(0, m.Continue())
    out = driver.mta(m.QuitNewConnection())
    assert commands(out, 0) == [m.QuitNewConnection()]  # as before: no other way on
    assert driver.session.conversations[0].rest is Rest.BUSY
    driver.mta(CONNECT)
    driver.child(0, m.Continue())
    out = driver.mta(m.Quit())
    assert reuses(out) == {}  # never handed on from a state libmilter could not leave


def test_quit_nc_after_a_message_then_quit_reuses() -> None:
    driver, _, _ = start(["a"])
    driver.child(0, answer())
    full_message(driver, 1, m.Continue())
    out = driver.mta(m.QuitNewConnection())
    assert commands(out, 0) == [m.QuitNewConnection()]
    out = driver.mta(m.Quit())
    assert reuses(out)[0].quit_nc is False


def test_finished_session_lets_go_of_the_link_source() -> None:
    # the adapter's source is a bound method of the object that holds the session: kept
    # after the end, the pair would be garbage only the cyclic collector frees
    source = Kept({})
    held = weakref.ref(source)
    driver = Driver(Session([ChildSettings("a")], links=source))
    del source
    driver.mta(MTA_OFFER)
    driver.child(0, answer())
    assert held() is not None
    driver.mta(m.Quit())
    assert held() is None
