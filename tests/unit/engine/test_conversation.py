"""ChildConversation on its own: step flags, what a reply means, failure and records."""

from __future__ import annotations

import pytest

from mmd.engine.conversation import ChildConversation, ChildProtocolError, ChildSettings, Left
from mmd.engine.stages import STAGES, Stage
from mmd.engine.verdict import Verdict
from mmd.protocol import messages as m
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Action, Step

NO_STEPS = Step(0)


def negotiated(steps: Step = NO_STEPS, actions: Action = ALL_ACTIONS,
               settings: ChildSettings | None = None) -> ChildConversation:
    child = ChildConversation(2, settings or ChildSettings("spam"))
    child.awaiting = Stage.NEGOTIATE
    child.negotiated(m.Negotiate(6, actions, steps), int(ALL_ACTIONS))
    return child


def test_negotiation_takes_steps_and_the_actions_both_sides_allow() -> None:
    child = ChildConversation(0, ChildSettings("a"))
    child.awaiting = Stage.NEGOTIATE
    child.negotiated(m.Negotiate(6, Action.ADD_HEADERS | Action.QUARANTINE,
                                 Step.HEADER_LEADING_SPACE),
                     int(Action.ADD_HEADERS))
    assert child.awaiting is None
    assert child.actions == int(Action.ADD_HEADERS)
    assert child.leading_space


def test_a_negotiation_answered_with_something_else_breaks_the_protocol() -> None:
    child = ChildConversation(0, ChildSettings("a"))
    with pytest.raises(ChildProtocolError, match="answered OPTNEG with Continue") as caught:
        child.negotiated(m.Continue(), int(ALL_ACTIONS))
    assert caught.value.kind == "negotiate"


def test_step_flags_say_which_events_are_sent_and_answered() -> None:
    child = negotiated(Step.NO_HELO | Step.NO_REPLY_MAIL | Step.RCPT_REJECTED)
    assert not child.wants(STAGES[m.Helo])
    assert child.wants(STAGES[m.Mail]) and not child.replies(STAGES[m.Mail])
    assert child.wants(STAGES[m.Rcpt]) and child.replies(STAGES[m.Rcpt])
    assert child.wants_rejected_recipients()
    everything_off = negotiated(ALL_STEPS)
    # end-of-message cannot be refused: no flag names it
    assert everything_off.wants(STAGES[m.EndOfMessage])
    assert everything_off.replies(STAGES[m.EndOfMessage])


@pytest.mark.parametrize(("reply", "verdict"), [
    (m.Continue(), Verdict.CONTINUE),
    (m.Accept(), Verdict.ACCEPT),
    (m.Reject(), Verdict.REJECT),
    (m.Tempfail(), Verdict.TEMPFAIL),
    (m.Discard(), Verdict.DISCARD),
    (m.Skip(), Verdict.SKIP),
    (m.ConnectionFail(), Verdict.TEMPFAIL),
    (m.ReplyCode("451 4.7.1 later"), Verdict.TEMPFAIL),
    (m.ReplyCode("550 5.7.1 no"), Verdict.REJECT),
])
def test_a_verdict_ends_the_wait(reply: m.ReplyMessage, verdict: Verdict) -> None:
    child = negotiated()
    child.awaiting = Stage.HELO
    assert child.answer(Stage.HELO, reply) is verdict
    assert child.awaiting is None


def test_progress_and_changes_at_end_of_message_let_the_wait_go_on() -> None:
    child = negotiated()
    child.awaiting = Stage.END_OF_MESSAGE
    for reply in (m.Progress(), m.AddHeader("X", "1"), m.Quarantine("why")):
        assert child.answer(Stage.END_OF_MESSAGE, reply) is None
        assert ChildConversation.keeps_waiting(child.awaiting, reply)
    assert child.awaiting is Stage.END_OF_MESSAGE
    assert not ChildConversation.keeps_waiting(Stage.END_OF_MESSAGE, m.Continue())
    assert not ChildConversation.keeps_waiting(Stage.HELO, m.Progress())


def test_a_change_before_end_of_message_breaks_the_protocol() -> None:
    child = negotiated()
    with pytest.raises(ChildProtocolError, match=r"^sent AddHeader at envelope-from$") as caught:
        child.answer(Stage.MAIL, m.AddHeader("X", "1"))
    assert (caught.value.kind, caught.value.reply, caught.value.stage) == (
        "outside", "AddHeader", Stage.MAIL)


def test_a_change_without_its_action_breaks_the_protocol() -> None:
    child = negotiated(actions=Action.ADD_HEADERS)
    assert child.answer(Stage.END_OF_MESSAGE, m.InsertHeader(0, "X", "1")) is None
    with pytest.raises(ChildProtocolError, match="without the change-from action") as caught:
        child.answer(Stage.END_OF_MESSAGE, m.ChangeFrom("<a@b>"))
    assert caught.value.kind == "action"


def test_a_reply_that_answers_nothing_breaks_the_protocol() -> None:
    child = negotiated()
    with pytest.raises(ChildProtocolError, match=r"^unexpected Continue reply$"):
        child.answered_stage(m.Continue())
    with pytest.raises(ChildProtocolError, match=r"^sent Negotiate at helo$"):
        child.answer(Stage.HELO, m.Negotiate(6, ALL_ACTIONS, Step(0)))


def test_a_verdict_in_a_body_it_does_not_answer_counts_for_the_body() -> None:
    child = negotiated(Step.NO_REPLY_BODY)
    child.draining = True
    assert child.answered_stage(m.Reject()) is Stage.BODY
    assert not child.draining


def test_evaluation_mode_counts_a_refusal_as_accept_and_says_so() -> None:
    child = negotiated(settings=ChildSettings("eval", evaluation_mode=True))
    assert child.count(Stage.RCPT, Verdict.REJECT) is Verdict.ACCEPT
    assert child.result is Verdict.REJECT
    assert child.reason == "evaluation mode: reject at envelope-recipient not applied"
    assert child.count(Stage.HELO, Verdict.CONTINUE) is Verdict.CONTINUE
    assert child.result is Verdict.REJECT  # continue does not overwrite what it said


def test_leaving_at_connect_is_for_the_connection_later_for_the_message() -> None:
    child = negotiated()
    child.leave(Stage.MAIL, Left.ACCEPTED)
    assert child.in_connection() and not child.in_message()
    child.new_message()
    assert child.in_message()
    child.leave(Stage.HELO, Left.CONDITION)
    assert not child.in_connection()
    child.new_connection()
    assert child.in_message()


def test_failing_gives_back_what_it_owed_and_records_the_fallback_once() -> None:
    child = negotiated(settings=ChildSettings("spam", fallback=Verdict.TEMPFAIL))
    child.awaiting = Stage.RCPT
    child.last_stage = Stage.RCPT
    child.in_transaction = True
    child.hold_change(m.AddHeader("X", "1"))
    assert child.fail("timeout") == (Stage.RCPT, False)
    assert child.failed and not child.in_transaction and not child.changes
    record = child.record()
    assert record is not None
    assert (record.index, record.name, record.stage, record.status, record.reason,
            record.failed) == (2, "spam", Stage.RCPT, "temporary-failure", "timeout", True)
    assert child.record() is None  # once


def test_a_child_kept_out_before_its_first_stage_leaves_no_record() -> None:
    child = negotiated()
    child.leave(Stage.CONNECT, Left.CONDITION)
    assert child.record() is None
