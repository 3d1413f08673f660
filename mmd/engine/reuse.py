"""When a child's connection may serve another SMTP session (milter protocol 6, SMFIC_QUIT_NC).

libmilter (sendmail's ``libmilter/engine.c``) keeps a connection after QUIT_NC: it runs
the filter's close callback, clears its macros and waits for the next CONNECT (or
UNKNOWN) on the same socket, with the options of the first OPTNEG; it never negotiates
again. Its state table honours QUIT_NC only right after end-of-message or UNKNOWN.
Anywhere else the command is not simply ignored: libmilter first falls back to its HELO
state, and from there a later CONNECT is ignored as well (no reply ever comes). A verdict
other than "continue" moves libmilter to that HELO state too (ACCEPT always; REJECT,
TEMPFAIL and DISCARD except at RCPT and UNKNOWN). So mmd tracks, per child, where
libmilter's state machine stands (``Rest``) and lets a connection go back to the pool
only from a state where CONNECT may follow: untouched since OPTNEG or QUIT_NC (nothing
to send), or just after an end-of-message answered "continue" or an UNKNOWN not accepted
(QUIT_NC first). Anything else is closed with QUIT, as before.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mmd.engine.stages import Stage
from mmd.protocol import messages as m

# QUIT_NC is a protocol-6 command: both sides must have agreed on version 6
QUIT_NC_VERSION = 6


class Rest(enum.Enum):
    """Where a child's libmilter state machine stands, as far as reuse is concerned."""

    BUSY = "busy"  # CONNECT could not follow: close the connection at the end
    UNTOUCHED = "untouched"  # nothing since OPTNEG or QUIT_NC: CONNECT may follow as is
    ANSWERED = "answered"  # after EOM "continue" or UNKNOWN: QUIT_NC, then CONNECT


@dataclass(frozen=True, slots=True)
class NegotiatedOptions:
    """A child connection's OPTNEG (what mmd offered, what the child answered): it holds
    for every session the connection serves, since libmilter never negotiates again."""

    offer: m.Negotiate
    answer: m.Negotiate

    def fits(self, offer: m.Negotiate) -> bool:
        """Whether a session that offers ``offer`` may use the connection as it is."""
        return self.offer == offer

    def same_child(self, answer: m.ReplyMessage) -> bool:
        """Whether a fresh connection's answer stands in for this one (a child restarted
        with the same options); a different answer would change what the MTA was told."""
        return answer == self.answer


# the options seen last, newest first: a child answers every connection alike, so every
# connection to it shares one NegotiatedOptions (and its two Negotiate) rather than
# holding its own; a handful, to stay cheap to search
_SEEN: list[NegotiatedOptions] = []
_SEEN_KEPT = 8


def reusable(offer: m.Negotiate, answer: m.Negotiate) -> NegotiatedOptions | None:
    """The options to keep with the connection, or None: only protocol 6 knows QUIT_NC."""
    if offer.version < QUIT_NC_VERSION or answer.version < QUIT_NC_VERSION:
        return None
    for seen in _SEEN:
        if seen.answer == answer and seen.offer == offer:
            return seen
    options = NegotiatedOptions(offer, answer)
    _SEEN.insert(0, options)
    del _SEEN[_SEEN_KEPT:]
    return options


# the stages whose answer may leave libmilter where QUIT_NC is honoured
RESTING_STAGES = frozenset({Stage.END_OF_MESSAGE, Stage.UNKNOWN})


def rest_after_answer(stage: Stage, reply: m.ReplyMessage) -> Rest:
    """Where libmilter stands once it answered ``stage``'s command with ``reply``
    (every command sent makes it ``BUSY`` until then)."""
    kind = type(reply)
    if stage is Stage.END_OF_MESSAGE:
        return Rest.ANSWERED if kind is m.Continue else Rest.BUSY
    if stage is Stage.UNKNOWN:
        # RCPT and UNKNOWN keep their state after a refusal (CT_IGNO); ACCEPT never does
        return Rest.BUSY if kind is m.Accept else Rest.ANSWERED
    return Rest.BUSY
