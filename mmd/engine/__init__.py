"""Session state machines, sans-IO: commands and replies in, outputs out.

``Session`` (one MTA connection) drives a ``Transaction`` per message and a
``ChildConversation`` per child; see docs/architecture.md for who owns which rule.
"""

from mmd.engine.applicability import ChildCondition, Decision, SessionFacts
from mmd.engine.conversation import ChildConversation, ChildProtocolError, ChildSettings, Left
from mmd.engine.message import BodyStore, HeaderError, MemoryBody, WorkingHeaders
from mmd.engine.outputs import (
    ChildFinished,
    CloseChild,
    ConditionSkipped,
    Drain,
    MtaDrain,
    MtaError,
    Output,
    ReuseChild,
    SessionFinished,
    ToChild,
    ToMta,
)
from mmd.engine.phases import Phase, PhaseError, Trigger
from mmd.engine.reuse import NegotiatedOptions
from mmd.engine.session import LinkSource, Session, SessionSettings
from mmd.engine.stages import Stage
from mmd.engine.transaction import Transaction
from mmd.engine.verdict import Verdict

__all__ = [
    "BodyStore",
    "ChildCondition",
    "ChildConversation",
    "ChildFinished",
    "ChildProtocolError",
    "ChildSettings",
    "CloseChild",
    "ConditionSkipped",
    "Decision",
    "Drain",
    "HeaderError",
    "Left",
    "LinkSource",
    "MemoryBody",
    "MtaDrain",
    "MtaError",
    "NegotiatedOptions",
    "Output",
    "Phase",
    "PhaseError",
    "ReuseChild",
    "Session",
    "SessionFacts",
    "SessionFinished",
    "SessionSettings",
    "Stage",
    "ToChild",
    "ToMta",
    "Transaction",
    "Trigger",
    "Verdict",
    "WorkingHeaders",
]
