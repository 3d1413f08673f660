"""The session engine: one test per rule of reference-behaviour.md §2–§3."""

from __future__ import annotations

import pytest

from mmd.engine import (
    ChildSettings,
    ConditionSkipped,
    Output,
    Session,
    SessionSettings,
    ToChild,
)
from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage
from mmd.engine.verdict import Verdict
from mmd.protocol import messages as m
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Action, Step
from tests.unit.engine.driver import (
    CONNECT,
    MTA_OFFER,
    Driver,
    answer,
    closed,
    commands,
    finished,
    message,
    run_child_through_eom,
    session_end,
    to_child,
    to_mta,
)

MAIL = m.Mail(("<sender@example.com>",))
RCPT1 = m.Rcpt(("<a@example.org>",))
RCPT2 = m.Rcpt(("<b@example.org>",))


def reply_all(
    driver: Driver, sent: list[Output], reply: m.ReplyMessage
) -> list[Output]:
    out: list[Output] = []
    for index in sorted({a.index for a in sent if isinstance(a, ToChild) and a.expect_reply}):
        out.extend(driver.child(index, reply))
    return out


# ---------------------------------------------------------------- negotiation


def test_offer_goes_to_every_child_and_mta_waits_for_last_answer() -> None:
    driver = Driver(Session([ChildSettings("a"), ChildSettings("b")]))
    sent = driver.mta(MTA_OFFER)
    assert to_child(sent, 0) == [MTA_OFFER] and to_child(sent, 1) == [MTA_OFFER]
    assert to_mta(driver.child(0, answer())) == []
    (reply,) = to_mta(driver.child(1, answer()))
    assert isinstance(reply, m.Negotiate)


def test_version_above_six_is_clamped() -> None:
    driver = Driver(Session([ChildSettings("a")]))
    (offer,) = to_child(driver.mta(m.Negotiate(7, ALL_ACTIONS, ALL_STEPS)), 0)
    assert isinstance(offer, m.Negotiate) and offer.version == 6


def test_negotiation_merge_flags() -> None:
    a = answer(
        Step.NO_HELO | Step.NO_REPLY_MAIL | Step.NO_REPLY_RCPT | Step.SKIP,
        actions=Action.ADD_HEADERS,
    )
    b = answer(Step.NO_REPLY_MAIL, actions=Action.CHANGE_BODY)
    driver = Driver.start(["a", "b"], answers=[a, b])
    (merged,) = [r for r in to_mta(driver.log) if isinstance(r, m.Negotiate)]
    # no-event flags cleared toward the MTA; no-reply AND-ed; yes flags and actions OR-ed
    assert not merged.steps & Step.NO_HELO
    assert merged.steps & Step.NO_REPLY_MAIL
    assert not merged.steps & Step.NO_REPLY_RCPT
    assert merged.steps & Step.SKIP
    assert merged.actions == Action.ADD_HEADERS | Action.CHANGE_BODY


# ---------------------------------------------------------------- envelope stages


def test_envelope_stage_sent_to_all_children_in_parallel() -> None:
    driver = Driver.start(["a", "b", "c"])
    sent = driver.mta(CONNECT)
    assert [commands(sent, i) for i in range(3)] == [[CONNECT]] * 3
    assert to_mta(sent) == []


def test_mta_gets_one_reply_when_the_last_child_answered() -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    assert to_mta(driver.child(1, m.Continue())) == []
    assert to_mta(driver.child(0, m.Continue())) == [m.Continue()]


@pytest.mark.parametrize(
    ("first", "second", "merged"),
    [
        (m.Discard(), m.Reject(), m.Discard()),
        (m.Reject(), m.Tempfail(), m.Reject()),
        (m.Tempfail(), m.Continue(), m.Tempfail()),
        (m.Continue(), m.Accept(), m.Continue()),
        (m.Skip(), m.Accept(), m.Continue()),
        (m.Accept(), m.Accept(), m.Accept()),
    ],
)
def test_merge_priority(
    first: m.ReplyMessage, second: m.ReplyMessage, merged: m.ReplyMessage
) -> None:
    """discard > reject > tempfail > continue > skip > accept."""
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    driver.child(0, m.Continue())
    driver.child(1, m.Continue())
    driver.mta(m.Helo("x"))
    driver.child(0, m.Continue())
    driver.child(1, m.Continue())
    driver.mta(MAIL)
    driver.child(0, first)
    assert to_mta(driver.child(1, second)) == [merged]


def test_accept_of_one_child_does_not_accept_for_the_others() -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    driver.child(0, m.Accept())
    assert to_mta(driver.child(1, m.Continue())) == [m.Continue()]
    sent = driver.mta(m.Helo("x"))
    assert commands(sent, 0) == [] and commands(sent, 1) == [m.Helo("x")]


def test_reject_at_rcpt_concerns_that_recipient_only() -> None:
    driver = Driver.start(["a", "b"])
    for command in (CONNECT, m.Helo("x"), MAIL):
        driver.mta(command)
        driver.child(0, m.Continue())
        driver.child(1, m.Continue())
    driver.mta(RCPT1)
    driver.child(0, m.Reject())
    sent = driver.child(1, m.Continue())
    assert to_mta(sent) == [m.Reject()]
    assert not any(isinstance(c, m.Abort) for i in (0, 1) for c in to_child(sent, i))
    sent = driver.mta(RCPT2)
    assert commands(sent, 0) == [RCPT2] and commands(sent, 1) == [RCPT2]
    assert driver.session.facts.recipients == ["b@example.org"]


@pytest.mark.parametrize(
    ("reply", "status"), [(m.Reject(), "reject"), (m.Tempfail(), "temporary-failure")]
)
def test_refused_recipient_is_the_session_status(reply: m.ReplyMessage, status: str) -> None:
    """A session whose recipient was refused (then RSET/QUIT) ends as refused, not as pass."""
    driver = Driver.start(["a", "b"])
    for command in (CONNECT, m.Helo("x"), MAIL):
        driver.mta(command)
        driver.child(0, m.Continue())
        driver.child(1, m.Continue())
    driver.mta(RCPT1)
    driver.child(0, reply)
    driver.child(1, m.Continue())
    driver.mta(m.Abort())
    out = driver.mta(m.Quit())
    assert session_end(out).status == status
    assert [(f.name, f.status) for f in finished(out)] == [("a", status), ("b", "pass")]


def test_message_after_a_refused_recipient_decides_the_session_status() -> None:
    driver = Driver.start(["a"])
    for command in (CONNECT, m.Helo("x"), MAIL):
        driver.mta(command)
        driver.child(0, m.Continue())
    driver.mta(RCPT1)
    driver.child(0, m.Reject())
    driver.mta(RCPT2)
    driver.child(0, m.Continue())
    driver.mta(m.Data())
    driver.child(0, m.Continue())
    driver.mta(m.EndOfHeaders())
    driver.mta(m.EndOfMessage())
    driver.child(0, m.Continue())
    driver.child(0, m.Accept())
    out = driver.mta(m.Quit())
    assert session_end(out).status == "accept"


def test_reject_outside_rcpt_aborts_the_transaction_for_all() -> None:
    driver = Driver.start(["a", "b"])
    for command in (CONNECT, m.Helo("x"), MAIL, RCPT1):
        driver.mta(command)
        driver.child(0, m.Continue())
        driver.child(1, m.Continue())
    driver.mta(m.Data())
    driver.child(0, m.Tempfail())
    sent = driver.child(1, m.Continue())
    assert to_mta(sent) == [m.Tempfail()]
    assert m.Abort() in to_child(sent, 0) and m.Abort() in to_child(sent, 1)


def test_discard_at_rcpt_ends_the_message() -> None:
    driver = Driver.start(["a"])
    for command in (CONNECT, m.Helo("x"), MAIL):
        driver.mta(command)
        driver.child(0, m.Continue())
    driver.mta(RCPT1)
    sent = driver.child(0, m.Discard())
    assert to_mta(sent) == [m.Discard()] and m.Abort() in to_child(sent, 0)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (
            (m.ReplyCode("550 5.7.1 Blocked by SpamAssassin"), m.Continue()),
            m.ReplyCode("550 5.7.1 Blocked by SpamAssassin"),
        ),
        ((m.ReplyCode("451 4.7.1 Greylisted"), m.Continue()), m.ReplyCode("451 4.7.1 Greylisted")),
        # class does not match the merged status: the plain status goes out
        ((m.ReplyCode("451 4.7.1 Greylisted"), m.Reject()), m.Reject()),
    ],
)
def test_reply_code_passed_when_its_class_matches(
    verdicts: tuple[m.ReplyMessage, m.ReplyMessage], expected: m.ReplyMessage
) -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    driver.child(0, verdicts[0])
    assert to_mta(driver.child(1, verdicts[1])) == [expected]


def test_children_with_different_step_sets_get_only_their_events() -> None:
    clamav = answer(Step.NO_HELO | Step.NO_END_OF_HEADERS)
    opendkim = answer(Step.NO_HELO)
    driver = Driver.start(["clamav", "opendkim", "plain"], answers=[clamav, opendkim, answer()])
    driver.mta(CONNECT)
    for i in range(3):
        driver.child(i, m.Continue())
    sent = driver.mta(m.Helo("x"))
    assert (
        commands(sent, 0) == [] and commands(sent, 1) == [] and commands(sent, 2) == [m.Helo("x")]
    )
    assert to_mta(driver.child(2, m.Continue())) == [m.Continue()]


def test_no_reply_steps_do_not_wait() -> None:
    driver = Driver.start(["a"], answers=[answer(Step.NO_REPLY_CONNECT)])
    sent = driver.mta(CONNECT)
    assert commands(sent, 0) == [CONNECT]
    assert to_mta(sent) == []  # merged no-reply toward the MTA too


def test_macros_go_before_their_command_to_children_that_get_it() -> None:
    driver = Driver.start(["a"])
    driver.mta(m.Macro(b"C", (("j", "mx.local"), ("{daemon_name}", "smtpd"))))
    sent = driver.mta(CONNECT)
    assert to_child(sent, 0) == [
        m.Macro(b"C", (("j", "mx.local"), ("{daemon_name}", "smtpd"))),
        CONNECT,
    ]
    assert driver.session.facts.macros["daemon_name"] == "smtpd"


def test_commands_sent_while_children_answer_are_queued() -> None:
    driver = Driver.start(["a"])
    driver.mta(CONNECT)
    assert commands(driver.mta(m.Helo("x")), 0) == []
    sent = driver.child(0, m.Continue())
    assert to_mta(sent) == [m.Continue()] and commands(sent, 0) == [m.Helo("x")]


# ---------------------------------------------------------------- message stages


def test_message_stages_are_answered_at_once_and_replayed_at_eom() -> None:
    driver = Driver(Session([ChildSettings("a"), ChildSettings("b")]))
    driver.mta(m.Negotiate(6, ALL_ACTIONS, Step(0)))  # an MTA that wants every answer
    driver.child(0, answer())
    driver.child(1, answer())
    driver.envelope()
    sent = message(driver, [("Subject", "hi")], b"body\r\n")
    assert to_mta(sent) == [m.Continue(), m.Continue(), m.Continue()]
    assert all(commands(sent, i) == [] for i in (0, 1))
    sent = driver.mta(m.EndOfMessage())
    assert commands(sent, 0) == [m.Header("Subject", "hi")]
    assert commands(sent, 1) == []


def test_message_stages_are_not_answered_when_the_mta_does_not_wait() -> None:
    driver = Driver.start(["a"])  # the MTA offers every no-reply step, as Postfix does
    driver.envelope()
    assert to_mta(message(driver, [("Subject", "hi")], b"body\r\n")) == []


def test_later_child_sees_message_as_changed_by_earlier_ones() -> None:
    driver = Driver.start(["a", "b"])
    driver.envelope()
    message(driver, [("Subject", "hi"), ("X-Old", "1")], b"original\r\n")
    driver.mta(m.EndOfMessage())
    start = len(driver.log)
    run_child_through_eom(
        driver,
        0,
        m.AddHeader("X-Spam-Flag", "YES"),
        m.ChangeHeader(1, "X-Old", ""),
        m.ReplaceBody(b"replaced\r\n"),
        m.Continue(),
    )
    run_child_through_eom(driver, 1, m.Continue())
    got = commands(driver.log[start:], 1)
    assert got[:3] == [m.Header("Subject", "hi"), m.Header("X-Spam-Flag", "YES"), m.EndOfHeaders()]
    assert m.Body(b"replaced\r\n") in got


def test_net_changes_are_sent_to_the_mta_at_eom() -> None:
    driver = Driver.start(["a", "b"])
    driver.envelope()
    message(driver, [("Subject", "hi"), ("X-Old", "1"), ("X-Keep", "k")], b"body\r\n")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(
        driver,
        0,
        m.InsertHeader(0, "Received", "by a"),
        m.ChangeHeader(1, "Subject", "[spam] hi"),
        m.Continue(),
    )
    out = run_child_through_eom(
        driver, 1, m.ChangeHeader(1, "X-Old", ""), m.AddHeader("X-B", "b"), m.Continue()
    )
    assert to_mta(out) == [
        m.ChangeHeader(1, "Subject", "[spam] hi"),
        m.ChangeHeader(1, "X-Old", ""),
        m.InsertHeader(0, "Received", "by a"),
        m.AddHeader("X-B", "b"),
        m.Continue(),
    ]


def test_replaced_body_is_rechunked_for_the_mta() -> None:
    driver = Driver.start(["a"], settings=SessionSettings(chunk_size=4))
    driver.envelope()
    message(driver, [], b"x")
    driver.mta(m.EndOfMessage())
    out = run_child_through_eom(
        driver, 0, m.ReplaceBody(b"abcde"), m.ReplaceBody(b"fgh"), m.Continue()
    )
    assert to_mta(out) == [m.ReplaceBody(b"abcd"), m.ReplaceBody(b"efgh"), m.Continue()]


def test_change_from_quarantine_last_wins_and_recipients_forwarded() -> None:
    driver = Driver.start(["a", "b"])
    driver.envelope()
    message(driver, [], b"x")
    driver.mta(m.EndOfMessage())
    first = run_child_through_eom(
        driver, 0, m.Quarantine("first"), m.AddRecipient("<c@x>"), m.Continue()
    )
    assert to_mta(first) == [m.AddRecipient("<c@x>")]
    out = run_child_through_eom(
        driver,
        1,
        m.ChangeFrom("<new@x>"),
        m.Quarantine("second"),
        m.DeleteRecipient("<a@x>"),
        m.Continue(),
    )
    assert to_mta(out) == [
        m.DeleteRecipient("<a@x>"),
        m.ChangeFrom("<new@x>"),
        m.Quarantine("second"),
        m.Continue(),
    ]


def test_progress_is_forwarded_during_eom() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    message(driver, [], b"x")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0)
    assert to_mta(driver.child(0, m.Progress())) == [m.Progress()]


def test_modification_outside_eom_drops_the_child() -> None:
    driver = Driver.start([ChildSettings("a"), ChildSettings("b")])
    driver.mta(CONNECT)
    out = driver.child(0, m.AddHeader("X", "y"))
    assert closed(out) == {0}
    assert to_mta(driver.child(1, m.Continue())) == [m.Continue()]
    assert commands(driver.mta(m.Helo("x")), 0) == []


def test_skip_during_body_stops_body_for_that_child() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    driver.mta(m.EndOfHeaders())
    driver.mta(m.Body(b"1" * 10))
    driver.session.settings = SessionSettings(chunk_size=5)
    driver.mta(m.EndOfMessage())
    sent = driver.child(0, m.Continue())  # EOH
    assert commands(sent, 0) == [m.Body(b"11111")]
    sent = driver.child(0, m.Skip())
    assert commands(sent, 0) == [m.EndOfMessage()]


def test_evaluation_mode_counts_negative_as_accept_and_ignores_changes() -> None:
    driver = Driver.start([ChildSettings("trial", evaluation_mode=True), "b"])
    driver.envelope()
    message(driver, [], b"x")
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0, m.AddHeader("X-Trial", "1"), m.ReplyCode("550 5.7.1 no"))
    out = run_child_through_eom(driver, 1, m.Continue())
    assert to_mta(out) == [m.Continue()]
    driver.mta(m.Quit())
    (trial, _) = finished(driver.log)
    assert trial.status == "reject" and "evaluation mode" in trial.reason


def test_abort_ends_the_message_and_another_follows() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    sent = driver.mta(m.Abort())
    assert commands(sent, 0) == [m.Abort()] and to_mta(sent) == []
    sent = driver.mta(MAIL)
    assert commands(sent, 0) == [MAIL]


def test_child_accept_at_mail_returns_for_the_next_message() -> None:
    driver = Driver.start(["a", "b"])
    for command in (CONNECT, m.Helo("x")):
        driver.mta(command)
        driver.child(0, m.Continue())
        driver.child(1, m.Continue())
    driver.mta(MAIL)
    driver.child(0, m.Accept())
    driver.child(1, m.Continue())
    assert commands(driver.mta(RCPT1), 0) == []
    driver.child(1, m.Continue())
    driver.mta(m.Abort())
    assert commands(driver.mta(MAIL), 0) == [MAIL]


# ---------------------------------------------------------------- failures and fallbacks


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        (Verdict.ACCEPT, m.Continue()),
        (Verdict.REJECT, m.Reject()),
        (Verdict.TEMPFAIL, m.Tempfail()),
    ],
)
def test_failed_child_contributes_its_fallback_and_others_go_on(
    fallback: Verdict, expected: m.ReplyMessage
) -> None:
    driver = Driver.start([ChildSettings("a", fallback=fallback), "b"])
    driver.mta(CONNECT)
    out = driver.fail(0, "timeout after 7 s")
    assert closed(out) == {0}
    assert to_mta(driver.child(1, m.Continue())) == [expected]


def test_unreachable_child_contributes_own_fallback_rest_keep_working() -> None:
    """The reference dropped every child here (upstream #1); we do not."""
    driver = Driver.start(
        [ChildSettings("down", fallback=Verdict.TEMPFAIL), "up"], answers=[None, answer()]
    )
    assert isinstance(to_mta(driver.log)[-1], m.Negotiate)
    sent = driver.mta(CONNECT)
    assert commands(sent, 1) == [CONNECT] and commands(sent, 0) == []
    assert to_mta(driver.child(1, m.Continue())) == [m.Tempfail()]


def test_unreachable_child_with_accept_fallback_is_simply_left_out() -> None:
    driver = Driver.start(["down", "up"], answers=[None, answer()])
    driver.mta(CONNECT)
    assert to_mta(driver.child(1, m.Continue())) == [m.Continue()]


def test_manager_fallback_when_no_child_is_left() -> None:
    driver = Driver.start(["a"], settings=SessionSettings(fallback=Verdict.REJECT), answers=[None])
    assert to_mta(driver.mta(CONNECT)) == [m.Reject()]


def test_child_failing_during_eom_counts_and_next_child_runs() -> None:
    driver = Driver.start([ChildSettings("a", fallback=Verdict.ACCEPT), "b"])
    driver.envelope()
    message(driver, [], b"x")
    sent = driver.mta(m.EndOfMessage())
    assert commands(sent, 0)
    out = driver.fail(0, "closed mid-session")
    assert commands(out, 1)  # b's replay started


def test_fallback_at_disconnect_is_the_session_status() -> None:
    driver = Driver.start(["a"])
    driver.envelope()
    out = driver.session.mta_closed()
    assert session_end(out).status == "temporary-failure" and session_end(out).disconnected
    assert commands(out, 0) == [m.Abort(), m.Quit()] and closed(out) == {0}


def test_nonsense_reply_drops_child() -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    out = driver.child(0, m.Negotiate(6, answer().actions, Step(0)))
    assert closed(out) == {0}


# ---------------------------------------------------------------- connection reuse, quit


def test_quit_closes_children_and_reports_each() -> None:
    driver = Driver.start(["a", "b"])
    driver.mta(CONNECT)
    driver.child(0, m.Reject())
    driver.child(1, m.Continue())
    out = driver.mta(m.Quit())
    assert closed(out) == {0, 1}
    assert [(f.name, f.status) for f in finished(out)] == [("a", "reject"), ("b", "pass")]
    assert session_end(out).status == "reject"
    assert driver.session.finished


def test_quit_nc_starts_a_new_smtp_session_on_the_same_connection() -> None:
    driver = Driver.start(["a"])
    driver.mta(CONNECT)
    driver.child(0, m.Accept())
    out = driver.mta(m.QuitNewConnection())
    assert commands(out, 0) == [m.QuitNewConnection()]
    session_end(out)
    assert commands(driver.mta(CONNECT), 0) == [CONNECT]


# ---------------------------------------------------------------- conditions


class Never:
    name = "Never"

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        return Decision(apply=False, reason="never") if stage is Stage.CONNECT else None


class Trusted:
    name = "Trusted Domain"

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is Stage.MAIL and facts.sender.endswith("@example.com"):
            return Decision(macros=(("{trusted_domain}", "yes"),))
        return None


def test_condition_keeps_child_out_and_says_why() -> None:
    driver = Driver.start([ChildSettings("grey", conditions=(Never(),)), "b"])
    out = driver.mta(CONNECT)
    assert commands(out, 0) == []
    (skip,) = [a for a in out if isinstance(a, ConditionSkipped)]
    assert skip.name == "grey" and skip.reason == "never"


def test_condition_macros_go_to_that_child_alone() -> None:
    driver = Driver.start([ChildSettings("grey", conditions=(Trusted(),)), "b"])
    for command in (CONNECT, m.Helo("x")):
        driver.mta(command)
        driver.child(0, m.Continue())
        driver.child(1, m.Continue())
    out = driver.mta(MAIL)
    assert to_child(out, 0)[0] == m.Macro(b"M", (("{trusted_domain}", "yes"),))
    assert to_child(out, 1) == [MAIL]


# ---------------------------------------------------------------- adaptations


def test_data_is_synthesised_for_children_when_the_mta_skipped_it() -> None:
    driver = Driver.start(["a"])
    for command in (CONNECT, m.Helo("x"), MAIL, RCPT1):
        driver.mta(command)
        driver.child(0, m.Continue())
    driver.mta(m.Header("Subject", "x"))
    sent = driver.mta(m.EndOfMessage())
    assert commands(sent, 0) == [m.Data()]


def test_leading_space_is_adapted_per_child() -> None:
    mta_wants = answer(Step.HEADER_LEADING_SPACE)
    driver = Driver.start(["spacey", "plain"], answers=[mta_wants, answer()])
    driver.envelope()
    driver.mta(m.Header("Subject", " hi"))
    driver.mta(m.EndOfMessage())
    run_child_through_eom(driver, 0, m.Continue())
    plain = [c for c in commands(driver.log, 1) if isinstance(c, m.Header)]
    assert plain == [m.Header("Subject", "hi")]


class NoDataDecision:
    name = "Restrict Accounts"

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        return Decision(apply=False, reason="no listed recipient") if stage is Stage.DATA else None


def test_data_conditions_decide_when_data_is_synthesised() -> None:
    driver = Driver.start([ChildSettings("a", conditions=(NoDataDecision(),))])
    for command in (CONNECT, m.Helo("x"), MAIL, RCPT1):
        driver.mta(command)
        driver.child(0, m.Continue())
    driver.mta(m.Header("Subject", "x"))
    sent = driver.mta(m.EndOfMessage())
    assert commands(sent, 0) == [m.Abort()]
    assert to_mta(sent) == [m.Accept()]


def test_child_kept_out_from_the_start_is_not_reported() -> None:
    """Per-milter statistics count only sessions the child took part in."""
    driver = Driver.start([ChildSettings("grey", conditions=(Never(),)), "b"])
    driver.mta(CONNECT)
    driver.child(1, m.Continue())
    out = driver.mta(m.Quit())
    assert [f.name for f in finished(out)] == ["b"]
