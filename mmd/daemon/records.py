"""Journal records and statistics for finished sessions and children's verdicts.

One journal entry per finished SMTP session and one per child verdict, with
documented structured fields, so statistics can be rebuilt from
``journalctl -o json`` alone. MESSAGE keeps the classic manager's statistics
line format so its log readers recognise it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from mmd.adapters.session_records import ChildVerdictRecord, SessionRecord
from mmd.engine.applicability import SessionFacts
from mmd.engine.outputs import ConditionSkipped

log = logging.getLogger("mmd.session")


@dataclass
class MilterCounters:
    sessions: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    elapsed_total: float = 0.0
    elapsed_max: float = 0.0
    last_error: str = ""
    errors: int = 0


@dataclass
class Statistics:
    total_sessions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    milters: dict[str, MilterCounters] = field(default_factory=dict)

    def milter(self, name: str) -> MilterCounters:
        counters = self.milters.get(name)
        if counters is None:
            counters = self.milters[name] = MilterCounters()
        return counters


class JournalRecorder:
    def __init__(self, statistics: Statistics) -> None:
        self.statistics = statistics

    def session_started(self, session_id: int, active: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "[session][start](%d) active=%d",
                session_id,
                active,
                extra={
                    "fields": {
                        "MMD_EVENT": "session-start",
                        "MMD_SESSION_ID": str(session_id),
                    }
                },
            )

    def child_finished(self, record: ChildVerdictRecord) -> None:
        counters = self.statistics.milter(record.milter)
        counters.sessions += 1
        counters.verdicts[record.status] += 1
        counters.elapsed_total += record.elapsed
        counters.elapsed_max = max(counters.elapsed_max, record.elapsed)
        log.info(
            "[milter][end][%s][%s][%.3f](%d): %s%s",
            record.stage,
            record.status,
            record.elapsed,
            record.session_id,
            record.milter,
            f" ({record.reason})" if record.reason else "",
            extra={
                "fields": {
                    "MMD_EVENT": "milter-verdict",
                    "MMD_SESSION_ID": str(record.session_id),
                    "MMD_MILTER": record.milter,
                    "MMD_STAGE": record.stage,
                    "MMD_STATUS": record.status,
                    "MMD_ELAPSED": f"{record.elapsed:.6f}",
                    "MMD_REASON": record.reason,
                    "MMD_QUEUE_ID": record.queue_id,
                    "MMD_CLIENT_ADDRESS": record.client_address,
                    "MMD_CLIENT_NAME": record.client_name,
                }
            },
        )

    def condition_skipped(
        self, session_id: int, facts: SessionFacts, event: ConditionSkipped
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "[condition][skip][%s](%d): %s: %s",
                event.stage.value,
                session_id,
                event.name,
                event.reason,
                extra={
                    "fields": {
                        "MMD_EVENT": "condition-skip",
                        "MMD_SESSION_ID": str(session_id),
                        "MMD_MILTER": event.name,
                        "MMD_STAGE": event.stage.value,
                        "MMD_REASON": event.reason,
                        "MMD_CLIENT_ADDRESS": facts.client_address,
                        "MMD_CLIENT_NAME": facts.client_name,
                    }
                },
            )

    def session_finished(self, record: SessionRecord) -> None:
        self.statistics.total_sessions += 1
        self.statistics.statuses[record.status] += 1
        if record.disconnected:
            log.info(
                "[session][disconnected][%.3f](%d)",
                record.elapsed,
                record.session_id,
                extra={
                    "fields": {
                        "MMD_EVENT": "session-disconnected",
                        "MMD_SESSION_ID": str(record.session_id),
                    }
                },
            )
        log.info(
            "[session][end][%s][%s][%.3f](%d)",
            record.stage,
            record.status,
            record.elapsed,
            record.session_id,
            extra={
                "fields": {
                    "MMD_EVENT": "session-end",
                    "MMD_SESSION_ID": str(record.session_id),
                    "MMD_STAGE": record.stage,
                    "MMD_STATUS": record.status,
                    "MMD_ELAPSED": f"{record.elapsed:.6f}",
                    "MMD_QUEUE_ID": record.queue_id,
                    "MMD_CLIENT_ADDRESS": record.client_address,
                    "MMD_CLIENT_NAME": record.client_name,
                }
            },
        )

    def child_error(self, session_id: int, milter: str, reason: str) -> None:
        counters = self.statistics.milter(milter)
        counters.errors += 1
        counters.last_error = reason
        log.warning(
            "[milter][error](%d): %s: %s",
            session_id,
            milter,
            reason,
            extra={
                "fields": {
                    "MMD_EVENT": "milter-error",
                    "MMD_SESSION_ID": str(session_id),
                    "MMD_MILTER": milter,
                    "MMD_REASON": reason,
                }
            },
        )

    def header_added(self, session_id: int, name: str, value: str) -> None:
        """A header a child added (net change at end-of-message), for the report's counts."""
        log.info(
            "[session][header][add](%d): %s=%s",
            session_id,
            name,
            value,
            extra={
                "fields": {
                    "MMD_EVENT": "header-add",
                    "MMD_SESSION_ID": str(session_id),
                    "MMD_HEADER_NAME": name,
                    "MMD_HEADER_VALUE": value,
                }
            },
        )

    def mta_error(self, session_id: int, reason: str) -> None:
        log.warning(
            "[session][error](%d): %s",
            session_id,
            reason,
            extra={
                "fields": {
                    "MMD_EVENT": "mta-error",
                    "MMD_SESSION_ID": str(session_id),
                    "MMD_REASON": reason,
                }
            },
        )
