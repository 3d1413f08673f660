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

from mmd.adapters.journal import sole_journal
from mmd.adapters.session_records import ChildVerdictRecord, SessionRecord
from mmd.engine.applicability import SessionFacts
from mmd.engine.outputs import ConditionSkipped
from mmd.journal_schema import Event, Field, extra

log = logging.getLogger("mmd.session")


def _write(levelno: int, text: str, args: tuple[object, ...], fields: dict[str, str]) -> None:
    """One entry: straight to the journal when it is the only listener (as the daemon
    runs; several per session, so the logging machinery is worth skipping), else through
    ``logging`` with the same text and fields (stderr, tests' handlers)."""
    journal = sole_journal(log, levelno)
    if journal is not None:
        try:
            journal.send_entry(log.name, levelno, text % args, fields)
            return
        except Exception:  # the logging path below reports it, as emit would
            pass  # (the handler's own fields it added are dropped there)
    log.log(levelno, text, *args, extra=extra(fields[Field.EVENT], fields))


@dataclass
class MilterCounters:
    sessions: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    elapsed_total: float = 0.0
    elapsed_max: float = 0.0
    last_error: str = ""
    errors: int = 0


@dataclass
class Counters:
    """What the daemon counted since it started (``GetStatistics`` takes a snapshot of it)."""

    total_sessions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    milters: dict[str, MilterCounters] = field(default_factory=dict)

    def milter(self, name: str) -> MilterCounters:
        counters = self.milters.get(name)
        if counters is None:
            counters = self.milters[name] = MilterCounters()
        return counters


class JournalRecorder:
    def __init__(self, statistics: Counters) -> None:
        self.statistics = statistics

    def session_started(self, session_id: int, active: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "[session][start](%d) active=%d",
                session_id,
                active,
                extra=extra(Event.SESSION_START, {Field.SESSION_ID: str(session_id)}),
            )

    def child_finished(self, record: ChildVerdictRecord) -> None:
        counters = self.statistics.milter(record.milter)
        counters.sessions += 1
        counters.verdicts[record.status] += 1
        counters.elapsed_total += record.elapsed
        counters.elapsed_max = max(counters.elapsed_max, record.elapsed)
        _write(
            logging.INFO,
            "[milter][end][%s][%s][%.3f](%d): %s%s",
            (
                record.stage,
                record.status,
                record.elapsed,
                record.session_id,
                record.milter,
                f" ({record.reason})" if record.reason else "",
            ),
            {
                Field.EVENT: Event.MILTER_VERDICT,
                Field.SESSION_ID: str(record.session_id),
                Field.MILTER: record.milter,
                Field.STAGE: record.stage,
                Field.STATUS: record.status,
                Field.ELAPSED: f"{record.elapsed:.6f}",
                Field.REASON: record.reason,
                Field.QUEUE_ID: record.queue_id,
                Field.CLIENT_ADDRESS: record.client_address,
                Field.CLIENT_NAME: record.client_name,
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
                extra=extra(
                    Event.CONDITION_SKIP,
                    {
                        Field.SESSION_ID: str(session_id),
                        Field.MILTER: event.name,
                        Field.STAGE: event.stage.value,
                        Field.REASON: event.reason,
                        Field.CLIENT_ADDRESS: facts.client_address,
                        Field.CLIENT_NAME: facts.client_name,
                    },
                ),
            )

    def session_finished(self, record: SessionRecord) -> None:
        self.statistics.total_sessions += 1
        self.statistics.statuses[record.status] += 1
        session_id = str(record.session_id)
        if record.disconnected:
            _write(
                logging.INFO,
                "[session][disconnected][%.3f](%d)",
                (record.elapsed, record.session_id),
                {Field.EVENT: Event.SESSION_DISCONNECTED, Field.SESSION_ID: session_id},
            )
        _write(
            logging.INFO,
            "[session][end][%s][%s][%.3f](%d)",
            (record.stage, record.status, record.elapsed, record.session_id),
            {
                Field.EVENT: Event.SESSION_END,
                Field.SESSION_ID: session_id,
                Field.STAGE: record.stage,
                Field.STATUS: record.status,
                Field.ELAPSED: f"{record.elapsed:.6f}",
                Field.QUEUE_ID: record.queue_id,
                Field.CLIENT_ADDRESS: record.client_address,
                Field.CLIENT_NAME: record.client_name,
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
            extra=extra(
                Event.MILTER_ERROR,
                {
                    Field.SESSION_ID: str(session_id),
                    Field.MILTER: milter,
                    Field.REASON: reason,
                },
            ),
        )

    def header_added(self, session_id: int, name: str, value: str) -> None:
        """A header a child added (net change at end-of-message), for the report's counts."""
        _write(
            logging.INFO,
            "[session][header][add](%d): %s=%s",
            (session_id, name, value),
            {
                Field.EVENT: Event.HEADER_ADD,
                Field.SESSION_ID: str(session_id),
                Field.HEADER_NAME: name,
                Field.HEADER_VALUE: value,
            },
        )

    def mta_error(self, session_id: int, reason: str) -> None:
        log.warning(
            "[session][error](%d): %s",
            session_id,
            reason,
            extra=extra(
                Event.MTA_ERROR,
                {
                    Field.SESSION_ID: str(session_id),
                    Field.REASON: reason,
                },
            ),
        )
