"""Negotiation merge (reference-behaviour.md §2)."""

from __future__ import annotations

from mmd.engine.negotiation import merge_answers, offer_to_children
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
    offer = Negotiate(6, Action.ADD_HEADERS, Step.NO_REPLY_HEADER)
    child = Negotiate(6, ALL_ACTIONS, Step.NO_REPLY_HEADER | Step.NO_REPLY_BODY | Step.SKIP)
    merged = merge_answers(offer, [child])
    assert merged.actions == Action.ADD_HEADERS
    assert merged.steps == Step.NO_REPLY_HEADER


def test_no_children_asks_for_nothing() -> None:
    merged = merge_answers(OFFER, [])
    assert merged.actions == Action(0) and merged.steps == Step(0)


def test_offer_to_children_clamps_version() -> None:
    assert offer_to_children(Negotiate(9, ALL_ACTIONS, ALL_STEPS)).version == 6
