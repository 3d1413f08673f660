"""The contract between the session engine and the applicable conditions.

Before the engine sends a stage's command to a child, it asks each of that
child's conditions for a decision. A condition sees only ``SessionFacts``
(what the MTA has told us so far) and answers with a ``Decision`` or ``None``
("no opinion at this stage"). The engine does not know S25R from DNSBL; the
``mmd.conditions`` package does not know sockets or packets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Stage(enum.Enum):
    """Milter stages, in the order a session goes through them."""

    NEGOTIATE = "negotiate"
    CONNECT = "connect"
    HELO = "helo"
    MAIL = "envelope-from"
    RCPT = "envelope-recipient"
    DATA = "data"
    UNKNOWN = "unknown"
    HEADER = "header"
    END_OF_HEADERS = "end-of-header"
    BODY = "body"
    END_OF_MESSAGE = "end-of-message"
    ABORT = "abort"
    QUIT = "quit"


ENVELOPE_STAGES = frozenset(
    {Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.UNKNOWN}
)
MESSAGE_STAGES = frozenset({Stage.HEADER, Stage.END_OF_HEADERS, Stage.BODY, Stage.END_OF_MESSAGE})
# a child stopped by a condition at one of these is out for the whole connection
CONNECTION_STAGES = frozenset({Stage.CONNECT, Stage.HELO})


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
    name: str

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        """Answer for ``stage`` (called just before that stage's command)."""
        ...
