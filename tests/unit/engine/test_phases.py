"""The phase table, and the session's phase as seen from outside (``Session.state``)."""

from __future__ import annotations

import pytest

from mmd.engine import ChildSettings, Session
from mmd.engine.phases import TRANSITIONS, Phase, PhaseError, Trigger, next_phase
from mmd.protocol import messages as m
from tests.unit.engine.driver import CONNECT, MTA_OFFER, answer


def test_every_phase_has_a_row_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.CLOSED] == {}
    for phase in set(Phase) - {Phase.CLOSED}:
        assert next_phase(phase, Trigger.CLOSE) is Phase.CLOSED


def test_a_transition_the_table_does_not_list_is_an_engine_bug() -> None:
    with pytest.raises(PhaseError, match="negotiated is not allowed in phase idle"):
        next_phase(Phase.IDLE, Trigger.NEGOTIATED)


def test_the_session_walks_the_table() -> None:
    session = Session([ChildSettings("a")])
    seen = [session.state]
    session.from_mta(MTA_OFFER)
    seen.append(session.state)
    session.from_child(0, answer())
    seen.append(session.state)
    session.from_mta(CONNECT)
    seen.append(session.state)
    session.from_child(0, m.Continue())
    seen.append(session.state)
    session.from_mta(m.EndOfMessage(b""))
    seen.append(session.state)
    replies = 0
    while session.state is Phase.REPLAY and replies < 5:  # DATA, end-of-header, end-of-message
        session.from_child(0, m.Continue())
        replies += 1
    seen.append(session.state)
    session.from_mta(m.Quit())
    seen.append(session.state)
    assert seen == [Phase.NEW, Phase.NEGOTIATING, Phase.IDLE, Phase.ENVELOPE, Phase.IDLE,
                    Phase.REPLAY, Phase.IDLE, Phase.CLOSED]
    assert replies == 3 and session.finished
