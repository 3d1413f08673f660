"""The contract between the session engine and the applicable conditions.

Before the engine sends a stage's command to a child, it asks each of that
child's conditions for a decision. A condition sees only ``SessionFacts``
(what the MTA has told us so far) and answers with a ``Decision`` or ``None``
("no opinion at this stage"). The engine does not know S25R from DNSBL; the
``mmd.conditions`` package does not know sockets or packets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mmd.engine.stages import CONNECTION_STAGES, ENVELOPE_STAGES, MESSAGE_STAGES, Stage

__all__ = [
    "CONNECTION_STAGES",
    "ENVELOPE_STAGES",
    "MESSAGE_STAGES",
    "ChildCondition",
    "Decision",
    "SessionFacts",
]


@dataclass(slots=True)
class SessionFacts:
    """What is known about the SMTP session when a condition is asked.

    Filled in by the engine as commands arrive; reset per message where noted.
    ``macros`` holds every macro the MTA sent so far (names without braces,
    e.g. ``auth_type`` for ``{auth_type}``; single letters stay as they are).
    """

    client_name: str = ""
    client_address: str = ""
    client_port: int = 0
    family: str = ""  # "unix", "inet", "inet6", "unknown"
    helo: str = ""
    macros: dict[str, str] = field(default_factory=dict)
    # per message
    sender: str = ""
    recipients: list[str] = field(default_factory=list)  # accepted so far, current one last
    headers: list[tuple[str, str]] = field(default_factory=list)
    # global, supplied by the server adapter
    active_sessions: int = 0

    def reset_message(self) -> None:
        """Forget the per-message facts (a new message begins)."""
        self.sender = ""
        self.recipients = []
        self.headers = []


@dataclass(frozen=True, slots=True)
class Decision:
    """``apply`` False takes the child out; ``macros`` are given to that child only."""

    apply: bool = True
    macros: tuple[tuple[str, str], ...] = ()
    reason: str = ""


class ChildCondition(Protocol):
    """What the engine asks of a condition; mmd.conditions implements it."""

    name: str

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        """Answer for ``stage`` (called just before that stage's command)."""
        ...
