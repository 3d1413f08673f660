"""What the session engine asks its adapter to do, and what it reports.

The engine returns a list of these, in order: packets for a child or the MTA
(``ToChild``, ``ToMta``), flow control (``CloseChild``, ``ReuseChild``, ``Drain``,
``MtaDrain``) and records to log (``MtaError``, ``ChildFinished``,
``ConditionSkipped``, ``SessionFinished``). They are the engine's events in the
h11 sense: small immutable values, no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmd.engine.reuse import NegotiatedOptions
from mmd.engine.stages import Stage
from mmd.protocol import messages as m

# The two made for nearly every packet (about 70 per session) are not frozen: a frozen
# dataclass sets each field through object.__setattr__, four times the cost to make
# (0.42 against 0.10 µs). They are immutable by convention, as the others by force.


@dataclass(slots=True)
class ToChild:
    """A packet for child ``index``; ``expect_reply`` arms its reply timeout for ``stage``."""

    index: int
    message: m.CommandMessage
    expect_reply: bool
    stage: Stage


@dataclass(slots=True)
class ToMta:
    """A packet for the MTA."""

    message: m.ReplyMessage


@dataclass(frozen=True, slots=True)
class CloseChild:
    """Close child ``index``'s connection: it is out of the session (no failure follows)."""

    index: int


@dataclass(frozen=True, slots=True)
class ReuseChild:
    """Child ``index``'s part in the MTA connection is over and its connection may serve
    another one (mmd.engine.reuse): send QUIT_NC first when ``quit_nc``, then keep it with
    ``options``. An adapter that cannot keep it sends QUIT and closes it, as for
    ``CloseChild`` (no failure follows either way)."""

    index: int
    options: NegotiatedOptions
    quit_nc: bool


@dataclass(frozen=True, slots=True)
class Drain:
    """Carry on with ``child_drained(index)`` once that child's socket took what was sent.

    A child that wants no reply per body chunk would otherwise get the whole body
    at once, held in memory; the adapter also lets other sessions run in between.
    """

    index: int


@dataclass(frozen=True, slots=True)
class MtaDrain:
    """Carry on with ``mta_drained()`` once the MTA's socket took what was sent."""


@dataclass(frozen=True, slots=True)
class MtaError:
    """Something the MTA side must log; ``fatal``: the session is over and the
    adapter closes the MTA connection (the MTA broke the protocol)."""

    reason: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class ChildFinished:
    """A child's part in one SMTP session is over: one statistics record.

    ``failed``: it left because it failed (whoever noticed: the adapter or the
    engine), so the adapter logs the reason as an error too.
    """

    index: int
    name: str
    stage: Stage
    status: str
    reason: str = ""
    failed: bool = False


@dataclass(frozen=True, slots=True)
class ConditionSkipped:
    """A condition kept a child out at ``stage``: a journal record for the report."""

    index: int
    name: str
    stage: Stage
    reason: str


@dataclass(frozen=True, slots=True)
class SessionFinished:
    """One SMTP session is over (QUIT, QUIT_NC or the MTA went away)."""

    stage: Stage
    status: str
    disconnected: bool = False


# everything the engine hands its adapter
Output = (
    ToChild
    | ToMta
    | CloseChild
    | ReuseChild
    | Drain
    | MtaDrain
    | MtaError
    | ChildFinished
    | ConditionSkipped
    | SessionFinished
)
