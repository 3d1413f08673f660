"""Negotiation merge (reference-behaviour.md §2)."""

from __future__ import annotations

from mmd.engine.negotiation import MTA_NO_REPLY, merge_answers, offer_to_children
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Action, MacroStage, Step
from mmd.protocol.messages import Negotiate

OFFER = Negotiate(6, ALL_ACTIONS, ALL_STEPS)


def test_symbol_lists_union_keeps_order_and_drops_duplicates() -> None:
    a = Negotiate(6, Action(0), Step(0), {MacroStage.CONNECT: "j {daemon_name}"})
    b = Negotiate(
        6,
        Action(0),
        Step(0),
        {MacroStage.CONNECT: "{daemon_name} _", MacroStage.MAIL: "{auth_type}"},
    )
    merged = merge_answers(OFFER, [a, b])
    assert merged.symbol_lists == {
        MacroStage.CONNECT: "j {daemon_name} _",
        MacroStage.MAIL: "{auth_type}",
    }


def test_condition_macros_join_only_lists_a_child_asked_for() -> None:
    a = Negotiate(6, Action(0), Step(0), {MacroStage.MAIL: "{mail_addr}"})
    merged = merge_answers(
        OFFER, [a], {MacroStage.MAIL: ("auth_type",), MacroStage.CONNECT: ("j",)}
    )
    assert merged.symbol_lists == {MacroStage.MAIL: "{mail_addr} {auth_type}"}


def test_nothing_is_asked_beyond_what_the_mta_offered() -> None:
    offer = Negotiate(6, Action.ADD_HEADERS, Step.NO_REPLY_RCPT)
    child = Negotiate(6, ALL_ACTIONS, Step.NO_REPLY_RCPT | Step.NO_REPLY_MAIL | Step.SKIP)
    merged = merge_answers(offer, [child])
    assert merged.actions == Action.ADD_HEADERS
    assert merged.steps == Step.NO_REPLY_RCPT


def test_no_children_asks_only_not_to_wait_on_message_stages() -> None:
    merged = merge_answers(OFFER, [])
    assert merged.actions == Action(0) and merged.steps == MTA_NO_REPLY


def test_message_stage_answers_are_never_awaited_when_the_mta_offers_it() -> None:
    """They are buffered and answered at once, so the MTA need not wait for them."""
    merged = merge_answers(OFFER, [Negotiate(6, ALL_ACTIONS, Step(0))])
    assert merged.steps & MTA_NO_REPLY == MTA_NO_REPLY
    old_mta = Negotiate(6, ALL_ACTIONS, Step(0))
    assert merge_answers(old_mta, [Negotiate(6, ALL_ACTIONS, Step(0))]).steps == Step(0)


def test_offer_to_children_clamps_version() -> None:
    assert offer_to_children(Negotiate(9, ALL_ACTIONS, ALL_STEPS)).version == 6
