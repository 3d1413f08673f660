"""Verdicts and the priority merge, as tables.

A verdict is what one child said at one stage. The merged verdict toward the
MTA is the one with the highest priority among the children that took part:
discard > reject > tempfail > continue > skip > accept > (no change). So one
child's accept never accepts the mail for the others.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from mmd.protocol import messages as m


class Verdict(enum.IntEnum):
    """Ordered by merge priority: ``max()`` over verdicts is the merge."""

    NO_CHANGE = 0
    ACCEPT = 1
    SKIP = 2
    CONTINUE = 3
    TEMPFAIL = 4
    REJECT = 5
    DISCARD = 6

    @property
    def label(self) -> str:
        """The name logs and tools use (reference spelling)."""
        return _LABELS[self]


_LABELS = {
    Verdict.NO_CHANGE: "pass",
    Verdict.ACCEPT: "accept",
    Verdict.SKIP: "skip",
    Verdict.CONTINUE: "continue",
    Verdict.TEMPFAIL: "temporary-failure",
    Verdict.REJECT: "reject",
    Verdict.DISCARD: "discard",
}

# verdicts that end the message (or, before MAIL, the connection) for everybody
FINAL_NEGATIVE = frozenset({Verdict.TEMPFAIL, Verdict.REJECT, Verdict.DISCARD})

REPLY_VERDICTS: dict[type, Verdict] = {
    m.Accept: Verdict.ACCEPT,
    m.Continue: Verdict.CONTINUE,
    m.Reject: Verdict.REJECT,
    m.Tempfail: Verdict.TEMPFAIL,
    m.Discard: Verdict.DISCARD,
    m.Skip: Verdict.SKIP,
    # a child that wants the connection dropped: the MTA answers 4xx either way
    m.ConnectionFail: Verdict.TEMPFAIL,
    m.Shutdown: Verdict.TEMPFAIL,
}

VERDICT_REPLIES: dict[Verdict, m.ReplyMessage] = {
    Verdict.ACCEPT: m.Accept(),
    Verdict.CONTINUE: m.Continue(),
    Verdict.NO_CHANGE: m.Continue(),
    Verdict.SKIP: m.Skip(),
    Verdict.TEMPFAIL: m.Tempfail(),
    Verdict.REJECT: m.Reject(),
    Verdict.DISCARD: m.Discard(),
}


def reply_code_verdict(reply: m.ReplyCode) -> Verdict:
    """A reply code counts by its class: 4xx tempfail, 5xx reject."""
    return Verdict.TEMPFAIL if reply.text.startswith("4") else Verdict.REJECT


def reply_for(verdict: Verdict, reply_codes: Sequence[m.ReplyCode]) -> m.ReplyMessage:
    """The MTA gets a child's own reply code when its class matches the merged verdict."""
    if verdict in (Verdict.REJECT, Verdict.TEMPFAIL):
        wanted = "5" if verdict is Verdict.REJECT else "4"
        for code in reply_codes:
            if code.text.startswith(wanted):
                return code
    return VERDICT_REPLIES[verdict]
