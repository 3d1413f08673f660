"""One child's side of a session, as the MTA side sees it: the ``ChildConversation``.

Whoever plays the MTA toward a milter (the manager's engine for each child,
milter-test-server for its one milter) asks this object the same questions,
so the answers cannot drift apart:

* after OPTNEG: which events the child wants and which replies it will send
  (its step flags) and which changes it may make (its actions);
* for each reply: what it means at the stage awaited — a verdict (the wait is
  over), a change or a progress report (the wait goes on), or a protocol
  violation (``ChildProtocolError``: the child is out);
* what the child said over the SMTP session (its verdict, its failure) for
  the statistics record.

It is sans-IO and knows nothing of the other children: merging verdicts and
replaying the message is ``Session``'s business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from mmd.engine.applicability import ChildCondition
from mmd.engine.outputs import ChildFinished
from mmd.engine.reuse import RESTING_STAGES, NegotiatedOptions, Rest, rest_after_answer
from mmd.engine.stages import CONNECTION_STAGES, Stage, StageInfo
from mmd.engine.verdict import FINAL_NEGATIVE, REPLY_VERDICTS, Verdict, reply_code_verdict
from mmd.protocol import messages as m
from mmd.protocol.constants import Action, Step


@dataclass(frozen=True, slots=True)
class ChildSettings:
    """A child's part of the configuration, as the engine needs it."""

    name: str
    fallback: Verdict = Verdict.ACCEPT
    evaluation_mode: bool = False
    conditions: tuple[ChildCondition, ...] = ()
    reuse: bool = True  # its connection may serve later sessions (mmd.engine.reuse)


class Left(enum.Enum):
    """Why a child no longer takes part (for the message or the connection)."""

    ACCEPTED = "accepted"
    CONDITION = "condition"
    FAILED = "failed"


# how a reply broke the protocol (tools word each their own way)
ViolationKind = Literal["negotiate", "outside", "action", "unexpected"]


class ChildProtocolError(Exception):
    """A child's reply broke the protocol; the child is out and its fallback counts.

    ``kind`` lets a tool word it its own way: ``"negotiate"`` (OPTNEG answered with
    something else), ``"outside"`` (a change before end-of-message), ``"action"``
    (a change the child did not ask for), ``"unexpected"`` (anything else).
    """

    def __init__(self, reason: str, kind: ViolationKind, reply: str, stage: Stage | None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reply = reply
        self.stage = stage


# the action (SMFIF_*) a child must have asked for at negotiation to send each change
_REQUIRED_ACTION: dict[type, tuple[int, str]] = {
    m.AddHeader: (int(Action.ADD_HEADERS), "add-header"),
    m.InsertHeader: (int(Action.ADD_HEADERS), "add-header"),
    m.ChangeHeader: (int(Action.CHANGE_HEADERS), "change-header"),
    m.ReplaceBody: (int(Action.CHANGE_BODY), "change-body"),
    m.AddRecipient: (int(Action.ADD_RECIPIENT), "add-recipient"),
    m.AddRecipientWithArgs: (int(Action.ADD_RECIPIENT_WITH_ARGS), "add-recipient-with-args"),
    m.DeleteRecipient: (int(Action.DELETE_RECIPIENT), "delete-recipient"),
    m.ChangeFrom: (int(Action.CHANGE_FROM), "change-from"),
    m.Quarantine: (int(Action.QUARANTINE), "quarantine"),
}
_RCPT_REJECTED = int(Step.RCPT_REJECTED)
_HEADER_LEADING_SPACE = int(Step.HEADER_LEADING_SPACE)
_EVENTS_AT_END = frozenset({m.Progress, *_REQUIRED_ACTION})


class ChildConversation:
    """One child over one MTA connection: what it is sent, what it owes, what it said."""

    __slots__ = (
        "actions",
        "awaiting",
        "body_skipped",
        "changes",
        "connection_left",
        "draining",
        "extra_macros",
        "failed",
        "in_transaction",
        "index",
        "last_stage",
        "leading_space",
        "message_left",
        "options",
        "reason",
        "reported",
        "rest",
        "result",
        "settings",
        "steps",
    )

    def __init__(self, index: int, settings: ChildSettings) -> None:
        self.index = index
        self.settings = settings
        self.steps = 0  # the child's Step bits as a plain int
        self.actions = 0  # the changes it may make: asked for and offered by the MTA
        self.leading_space = False
        self.failed = False
        self.connection_left: Left | None = None
        self.message_left: Left | None = None
        self.in_transaction = False  # got MAIL; needs ABORT if the message ends early
        self.body_skipped = False
        self.awaiting: Stage | None = None  # the stage whose reply is due
        self.draining = False  # commands without replies wait for its socket to take them
        # its end-of-message changes, applied only once its verdict came (a child that
        # fails half-way gets none of them through); a list only once it has one, and the
        # conditions' macros a dict only once there are some: most connections never need
        # either, and a thousand idle ones would hold both empty
        self.changes: list[m.Modification] | tuple[()] = ()
        self.extra_macros: dict[bytes, tuple[tuple[str, str], ...]] | None = None
        # connection reuse (mmd.engine.reuse): the OPTNEG the connection keeps, when it
        # may serve another session, and where the child's libmilter state stands
        self.options: NegotiatedOptions | None = None
        self.rest = Rest.BUSY
        # statistics of the SMTP session
        self.last_stage = Stage.NEGOTIATE
        self.result = Verdict.NO_CHANGE
        self.reason = ""
        self.reported = False

    @property
    def name(self) -> str:
        """The child's configured name (logs and records)."""
        return self.settings.name

    def hold_change(self, change: m.Modification) -> None:
        """Keep an end-of-message change until its verdict (``changes``)."""
        if self.changes:
            self.changes.append(change)
        else:
            self.changes = [change]

    def in_connection(self) -> bool:
        """Still part of the SMTP connection (not failed, accepted or kept out)."""
        return not self.failed and self.connection_left is None

    def in_message(self) -> bool:
        """Still part of the current message."""
        return self.in_connection() and self.message_left is None

    # ------------------------------------------------------------ negotiation

    def negotiated(self, answer: m.ReplyMessage, offered_actions: int) -> None:
        """Take the child's OPTNEG answer: its step flags and the actions both sides allow."""
        if not isinstance(answer, m.Negotiate):
            name = type(answer).__name__
            raise ChildProtocolError(
                f"answered OPTNEG with {name}", "negotiate", name, Stage.NEGOTIATE
            )
        self.awaiting = None
        self.steps = int(answer.steps)
        self.actions = int(answer.actions) & offered_actions
        self.leading_space = bool(self.steps & _HEADER_LEADING_SPACE)
        self.rest = Rest.UNTOUCHED

    def resume(self, options: NegotiatedOptions, offered_actions: int) -> None:
        """A kept connection serves this session: its first OPTNEG holds, none is sent."""
        self.negotiated(options.answer, offered_actions)
        self.options = options

    def reusable(self) -> NegotiatedOptions | None:
        """The options to keep the connection with when the SMTP session ends, or None:
        it failed, owes something, is inside a message, or stands where libmilter would
        not take a CONNECT after QUIT_NC (``Rest.BUSY``)."""
        if (
            self.options is None
            or self.rest is Rest.BUSY
            or self.failed
            or self.awaiting is not None
            or self.draining
            or self.in_transaction
        ):
            return None
        return self.options

    # ------------------------------------------------------------ step flags

    def wants(self, info: StageInfo) -> bool:
        """Whether the child takes this stage's command at all (no SMFIP_NO* flag)."""
        return not self.steps & info.no_event

    def replies(self, info: StageInfo) -> bool:
        """Whether the child answers this stage's command (no SMFIP_NR_* flag)."""
        return not self.steps & info.no_reply

    def wants_rejected_recipients(self) -> bool:
        """Whether it asked to see recipients the MTA already refused (SMFIP_RCPT_REJ)."""
        return bool(self.steps & _RCPT_REJECTED)

    # ------------------------------------------------------------ replies

    def answered_stage(self, reply: m.ReplyMessage) -> Stage:
        """The stage ``reply`` answers; a reply nobody waited for breaks the protocol."""
        stage = self.awaiting
        if stage is None and self.draining:
            # a verdict in the middle of a body it asked not to answer (libmilter sends
            # one when the body callback rejects): its answer for the message
            self.draining = False
            return Stage.BODY
        if stage is None:
            name = type(reply).__name__
            raise ChildProtocolError(f"unexpected {name} reply", "unexpected", name, None)
        return stage

    def answer(self, stage: Stage, reply: m.ReplyMessage) -> Verdict | None:
        """What ``reply`` means at ``stage``: a verdict ends the wait; None (progress,
        or a change the child may make, for the caller to hold) lets it go on."""
        kind = type(reply)
        if isinstance(reply, m.ReplyCode):
            verdict: Verdict | None = reply_code_verdict(reply)
        else:
            verdict = REPLY_VERDICTS.get(kind)
        if verdict is not None:
            self.awaiting = None
            if stage in RESTING_STAGES:
                self.rest = rest_after_answer(stage, reply)
            return verdict
        if kind is m.Progress:
            return None
        required = _REQUIRED_ACTION.get(kind)
        name = kind.__name__
        if required is None:
            raise ChildProtocolError(f"sent {name} at {stage.value}", "unexpected", name, stage)
        if stage is not Stage.END_OF_MESSAGE:
            raise ChildProtocolError(f"sent {name} at {stage.value}", "outside", name, stage)
        if not self.actions & required[0]:
            raise ChildProtocolError(
                f"protocol violation: sent {name} without the {required[1]} action "
                "negotiated; none of its changes applied",
                "action",
                name,
                stage,
            )
        return None

    @staticmethod
    def keeps_waiting(stage: Stage | None, reply: m.Message) -> bool:
        """A progress report or a change at end-of-message: a sign of life, not the answer."""
        return stage is Stage.END_OF_MESSAGE and type(reply) in _EVENTS_AT_END

    def count(self, stage: Stage, verdict: Verdict) -> Verdict:
        """Record what the child said; returns what it counts as (evaluation mode: accept)."""
        if verdict is not Verdict.CONTINUE:
            self.result = verdict
        if self.settings.evaluation_mode and verdict in FINAL_NEGATIVE:
            self.reason = f"evaluation mode: {verdict.label} at {stage.value} not applied"
            return Verdict.ACCEPT
        return verdict

    # ------------------------------------------------------------ leaving

    def leave(self, stage: Stage, why: Left) -> None:
        """Out for the connection (connect, helo) or for the message (later stages)."""
        if stage in CONNECTION_STAGES:
            self.connection_left = why
        else:
            self.message_left = why

    def fail(self, reason: str) -> tuple[Stage | None, bool]:
        """Out of the session for good; returns (the stage it owed a reply for, whether it
        was draining) so that the caller can settle what it waited for."""
        waiting_on, draining = self.awaiting, self.draining
        self.failed = True
        self.awaiting = None
        self.draining = False
        self.in_transaction = False
        self.reason = reason
        self.result = self.settings.fallback
        self.changes = ()
        return waiting_on, draining

    def new_message(self) -> None:
        """A new message begins: every child still in the connection takes part again."""
        self.message_left = None
        self.body_skipped = False
        self.changes = ()

    def new_connection(self) -> None:
        """QUIT_NC: a new SMTP session on the same MTA connection."""
        self.connection_left = None
        self.extra_macros = None
        self.reported = self.failed
        self.result = Verdict.NO_CHANGE
        self.reason = ""

    def record(self) -> ChildFinished | None:
        """Its statistics record for the SMTP session, once; None when it took no part."""
        if self.reported:
            return None
        self.reported = True
        if (
            self.connection_left is Left.CONDITION
            and self.last_stage is Stage.NEGOTIATE
            and not self.failed
        ):
            return None  # kept out before its first stage: it took no part in this session
        return ChildFinished(
            self.index,
            self.name,
            self.last_stage,
            self.result.label,
            self.reason,
            failed=self.failed,
        )
