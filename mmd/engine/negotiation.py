"""Merging the children's OPTNEG answers into one answer for the MTA.

Rules (reference-behaviour.md §2): actions are OR-ed (we must be allowed
every change any child may make); "no reply" step flags are AND-ed (a skip
survives only if every child asked for it); "yes" flags are OR-ed; "no
event" flags are cleared toward the MTA because conditions need every event;
macro symbol lists are unioned per stage, order kept, duplicates dropped.

One departure from the classic manager: the message stages (header,
end-of-header, body) are buffered and answered with "continue" at once, so
we ask the MTA not to wait for those answers at all when it offers that
(``MTA_NO_REPLY``): fewer round trips, the same outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmd.protocol.constants import (
    MAX_VERSION,
    NO_REPLY_STEPS,
    YES_STEPS,
    Action,
    MacroStage,
    Step,
)
from mmd.protocol.messages import Negotiate

# answered at once by the manager anyway (message stages are replayed at end-of-message)
MTA_NO_REPLY = Step.NO_REPLY_HEADER | Step.NO_REPLY_END_OF_HEADERS | Step.NO_REPLY_BODY


def offer_to_children(mta_offer: Negotiate) -> Negotiate:
    """What each child is offered: the MTA's offer, version clamped to ours."""
    return Negotiate(
        version=min(mta_offer.version, MAX_VERSION),
        actions=mta_offer.actions,
        steps=mta_offer.steps,
    )


def merge_answers(
    mta_offer: Negotiate,
    answers: Sequence[Negotiate],
    needed_macros: Mapping[MacroStage, Sequence[str]] | None = None,
) -> Negotiate:
    """``needed_macros`` (for conditions) join a stage's list only where a child asked
    for a list: a negotiated list replaces the MTA's own defaults for that stage."""
    actions = Action(0)
    yes = Step(0)
    no_reply = NO_REPLY_STEPS if answers else Step(0)
    symbols: dict[MacroStage, list[str]] = {}
    for answer in answers:
        actions |= answer.actions
        yes |= answer.steps & YES_STEPS
        no_reply &= answer.steps
        for stage, names in answer.symbol_lists.items():
            merged = symbols.setdefault(stage, [])
            for name in names.split():
                if name not in merged:
                    merged.append(name)
    for stage, wanted in (needed_macros or {}).items():
        if stage in symbols:
            for name in wanted:
                wire = name if len(name) == 1 or name.startswith("{") else "{" + name + "}"
                if wire not in symbols[stage]:
                    symbols[stage].append(wire)
    return Negotiate(
        version=min(mta_offer.version, MAX_VERSION),
        actions=actions & mta_offer.actions,
        steps=(yes | no_reply | MTA_NO_REPLY) & mta_offer.steps,
        symbol_lists={stage: " ".join(names) for stage, names in sorted(symbols.items())},
    )
