"""The phases of one MTA connection and every transition between them, as one table.

Everything that moves ``Session`` from one phase to another is in ``TRANSITIONS``:
the session names what happened (a ``Trigger``), the table says where that leads
from where it is, and a trigger the table does not list for the current phase is
the engine's own bug (``PhaseError``), never the peer's: the peers' mistakes are
refused before they reach a transition.

::

    NEW --offer--> NEGOTIATING --negotiated--> IDLE <----------answered------+
                                                | \\                          |
                                         command  end_of_message              |
                                                v   v                         |
                                          ENVELOPE  REPLAY ------------------+
    any phase but CLOSED --close--> CLOSED        (ENVELOPE answered -> IDLE)

IDLE answers at once when no child owes a reply (``answered`` from IDLE).
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """Where one MTA connection is; readable from outside as ``Session.state``."""

    NEW = "new"  # waiting for the MTA's OPTNEG
    NEGOTIATING = "negotiating"  # the children answer OPTNEG
    IDLE = "idle"  # waiting for the MTA's next command
    ENVELOPE = "envelope"  # children answer an envelope stage, in parallel
    REPLAY = "replay"  # end-of-message: children one after another, then the MTA's answer
    CLOSED = "closed"  # QUIT, the MTA left or broke the protocol


class Trigger(enum.Enum):
    """What happened, as far as the phase is concerned."""

    OFFER = "offer"  # the MTA's OPTNEG went to the children
    NEGOTIATED = "negotiated"  # the MTA got the merged OPTNEG answer
    COMMAND = "command"  # an envelope command went out and replies are due
    END_OF_MESSAGE = "end-of-message"  # the replay began
    ANSWERED = "answered"  # the MTA got the stage's or the message's answer
    CLOSE = "close"  # the session is over


TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    Phase.NEW: {Trigger.OFFER: Phase.NEGOTIATING, Trigger.CLOSE: Phase.CLOSED},
    Phase.NEGOTIATING: {Trigger.NEGOTIATED: Phase.IDLE, Trigger.CLOSE: Phase.CLOSED},
    Phase.IDLE: {
        Trigger.COMMAND: Phase.ENVELOPE,
        Trigger.END_OF_MESSAGE: Phase.REPLAY,
        Trigger.ANSWERED: Phase.IDLE,
        Trigger.CLOSE: Phase.CLOSED,
    },
    Phase.ENVELOPE: {Trigger.ANSWERED: Phase.IDLE, Trigger.CLOSE: Phase.CLOSED},
    Phase.REPLAY: {Trigger.ANSWERED: Phase.IDLE, Trigger.CLOSE: Phase.CLOSED},
    Phase.CLOSED: {},
}

# phases in which the next MTA command is taken at once (others queue it)
READY = frozenset({Phase.NEW, Phase.IDLE})


class PhaseError(RuntimeError):
    """A transition the table does not allow: a bug in the engine."""


def next_phase(phase: Phase, trigger: Trigger) -> Phase:
    """Where ``trigger`` leads from ``phase``; ``PhaseError`` where it may not happen."""
    try:
        return TRANSITIONS[phase][trigger]
    except KeyError:
        raise PhaseError(f"{trigger.value} is not allowed in phase {phase.value}") from None
