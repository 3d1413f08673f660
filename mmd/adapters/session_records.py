"""What the MTA side reports about finished sessions, and who it reports to.

``mmd.adapters.server`` builds these records from the engine's outputs (adding
the session id, the time taken and the queue id); the daemon's recorder
(``mmd.daemon.records``) writes them to the journal and counts them. They sit
in this small module so that both sides can name them without the daemon
reaching into the server and without the adapters importing the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mmd.engine.applicability import SessionFacts
from mmd.engine.outputs import ConditionSkipped


class Recorder(Protocol):
    """Where finished sessions and children's verdicts go (journal + statistics)."""

    def session_started(self, session_id: int, active: int) -> None: ...

    def child_finished(self, record: ChildVerdictRecord) -> None: ...

    def condition_skipped(
        self, session_id: int, facts: SessionFacts, event: ConditionSkipped
    ) -> None: ...

    def session_finished(self, record: SessionRecord) -> None: ...

    def child_error(self, session_id: int, milter: str, reason: str) -> None: ...

    def mta_error(self, session_id: int, reason: str) -> None: ...

    def header_added(self, session_id: int, name: str, value: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ChildVerdictRecord:
    """A child's part in one SMTP session is over: a journal entry and statistics."""

    session_id: int
    milter: str
    stage: str
    status: str
    elapsed: float
    reason: str
    queue_id: str
    client_address: str
    client_name: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One SMTP session is over: a journal entry and statistics."""

    session_id: int
    stage: str
    status: str
    elapsed: float
    disconnected: bool
    queue_id: str
    client_address: str
    client_name: str
