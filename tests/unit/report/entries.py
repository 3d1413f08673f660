"""Journal entries as ``journalctl -o json`` prints them, for the report's pure tests."""

from __future__ import annotations

import itertools
from typing import Any

T0 = 1_800_000_000  # a minute boundary (divisible by 60)
_serial = itertools.count(1)


def entry(seconds: float, event: str, pid: str = "100", **fields: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "__CURSOR": f"s=test;i={next(_serial):x}",
        "__REALTIME_TIMESTAMP": str(round(seconds * 1_000_000)),
        "MMD_EVENT": event,
        "_PID": pid,
    }
    record.update({f"MMD_{name.upper()}": value for name, value in fields.items()})
    return record


def session(seconds: float, session_id: int, status: str, elapsed: str = "1.000000",
            pid: str = "100") -> dict[str, Any]:
    return entry(seconds, "session-end", pid, session_id=str(session_id), status=status,
                 elapsed=elapsed, stage="end-of-message")


def verdict(seconds: float, session_id: int, milter: str, status: str,
            elapsed: str = "0.250000") -> dict[str, Any]:
    return entry(seconds, "milter-verdict", session_id=str(session_id), milter=milter,
                 status=status, elapsed=elapsed, stage="end-of-message")


def header(seconds: float, session_id: int, name: str, value: str,
           pid: str = "100") -> dict[str, Any]:
    return entry(seconds, "header-add", pid, session_id=str(session_id), header_name=name,
                 header_value=value)


def mix() -> list[dict[str, Any]]:
    """A known mix over three minutes (T0 .. T0+180), with a quiet minute in between."""
    return [
        # minute 0: two sessions, one spam (two headers say so), SPF pass twice (one message)
        verdict(T0 + 1, 1, "spamass", "accept"),
        header(T0 + 1, 1, "X-Spam-Flag", "YES"),
        header(T0 + 1, 1, "X-Spam-Status", "Yes, score=12.0 required=5.0"),
        header(T0 + 1, 1, "Received-SPF", "pass (mx.example.org: domain of a@example.com)"),
        header(T0 + 1, 1, "Authentication-Results", "mx.example.org; spf=pass smtp.mailfrom=a"),
        verdict(T0 + 2, 1, "clamav", "pass", "0.500000"),
        session(T0 + 2, 1, "accept", "2.500000"),
        verdict(T0 + 30, 2, "spamass", "reject"),
        verdict(T0 + 30, 2, "clamav", "pass"),
        session(T0 + 30, 2, "reject", "0.125000"),
        # minute 2 (minute 1 is quiet): a virus, a greylisted message, DKIM, a disconnect
        header(T0 + 121, 3, "X-Virus-Status", "Infected (Eicar-Test-Signature)"),
        header(T0 + 121, 3, "X-Greylist", "Delayed for 00:05:00 by milter-greylist-4.6"),
        header(T0 + 121, 3, "DKIM-Signature", "v=1; a=rsa-sha256; d=example.org; s=s1"),
        header(T0 + 121, 3, "Authentication-Results",
               "mx; dkim=pass header.d=example.org; dkim=fail header.d=x.example"),
        verdict(T0 + 121, 3, "clamav", "reject", "0.750000"),
        entry(T0 + 122, "session-disconnected", session_id="3"),
        session(T0 + 122, 3, "temporary-failure", "3.000000"),
        entry(T0 + 150, "milter-error", session_id="4", milter="clamav", reason="timeout"),
        session(T0 + 150, 4, "pass", "0.375000"),
        session(T0 + 179, 5, "quarantine", "1.000000"),
        session(T0 + 179.5, 6, "pass", "1.000000"),
        entry(T0 + 179.9, "session-start", session_id="7"),  # not read by the report
    ]
