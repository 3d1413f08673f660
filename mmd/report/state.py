"""What persists between runs: the journal cursor, the totals, the open bucket, the time of each
database's newest point. Saved as one JSON document (written atomically by the caller) after the
databases were updated, so a run that dies half-way re-reads from the old cursor."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mmd.report.aggregate import DEFAULT_STEP, MilterTotals, Totals

VERSION = 1


@dataclass
class State:
    cursor: str | None = None
    step: int = DEFAULT_STEP
    totals: Totals = field(default_factory=Totals)
    open_bucket: int | None = None
    flushed: Totals | None = None  # totals when the open bucket opened
    last_update: dict[str, int] = field(default_factory=dict)


def _totals_to_json(totals: Totals) -> dict[str, Any]:
    return {
        "sessions": dict(sorted(totals.sessions.items())),
        "session_elapsed_us": totals.session_elapsed_us,
        "disconnected": totals.disconnected,
        "reports": dict(sorted(totals.reports.items())),
        "entries": totals.entries,
        "milters": {
            name: {
                "verdicts": dict(sorted(milter.verdicts.items())),
                "elapsed_us": milter.elapsed_us,
                "errors": milter.errors,
            }
            for name, milter in sorted(totals.milters.items())
        },
    }


def _counter(raw: Any) -> Counter[str]:
    if not isinstance(raw, dict):
        return Counter()
    return Counter({str(k): int(v) for k, v in raw.items()})


def _totals_from_json(raw: Any) -> Totals:
    if not isinstance(raw, dict):
        return Totals()
    milters = {
        str(name): MilterTotals(
            _counter(m.get("verdicts")), int(m.get("elapsed_us", 0)), int(m.get("errors", 0))
        )
        for name, m in (raw.get("milters") or {}).items()
    }
    return Totals(
        sessions=_counter(raw.get("sessions")),
        session_elapsed_us=int(raw.get("session_elapsed_us", 0)),
        disconnected=int(raw.get("disconnected", 0)),
        milters=milters,
        reports=_counter(raw.get("reports")),
        entries=int(raw.get("entries", 0)),
    )


def dumps(state: State) -> str:
    document = {
        "version": VERSION,
        "cursor": state.cursor,
        "step": state.step,
        "open_bucket": state.open_bucket,
        "last_update": dict(sorted(state.last_update.items())),
        "totals": _totals_to_json(state.totals),
        "flushed": None if state.flushed is None else _totals_to_json(state.flushed),
    }
    return json.dumps(document, indent=1) + "\n"


class StateError(ValueError):
    pass


def loads(text: str) -> State:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateError(f"not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise StateError("not a JSON object")
    if raw.get("version") != VERSION:
        raise StateError(f"unknown state version {raw.get('version')!r}")
    flushed = raw.get("flushed")
    open_bucket = raw.get("open_bucket")
    return State(
        cursor=raw.get("cursor") or None,
        step=int(raw.get("step", DEFAULT_STEP)),
        totals=_totals_from_json(raw.get("totals")),
        open_bucket=None if open_bucket is None else int(open_bucket),
        flushed=None if flushed is None else _totals_from_json(flushed),
        last_update={str(k): int(v) for k, v in (raw.get("last_update") or {}).items()},
    )
