"""One MTA connection fanned out to N children: the session state machine.

Theory of operation
-------------------
The ``Session`` never touches a socket or a clock. The adapter feeds it what
happened (``from_mta``, ``from_child``, ``child_failed``, ``mta_closed``) and
gets back a list of actions to carry out, in order (``ToChild``, ``ToMta``,
``CloseChild``, ``Drain``/``MtaDrain``) plus records to log (``ChildFinished``,
``ConditionSkipped``, ``SessionFinished``, ``MtaError``). Connecting to a child
is the adapter's business: it connects on the first ``ToChild`` for that child
and reports a failure with ``child_failed``; timeouts likewise (the
``expect_reply`` flag and the command's stage tell it which timeout to arm).

Rules, all in this file (reference-behaviour.md §2–§3):

* Negotiation: the MTA's offer goes to every child; the MTA gets the merge
  of the answers (``negotiation.merge_answers``) when the last child answered
  or failed.
* Envelope stages (connect, helo, envelope-from, envelope-recipient, data,
  unknown) go to every child still in the session, in parallel; the MTA gets
  the merged verdict when the last one answered.
* Message stages (header, end-of-header, body) are buffered and answered at
  once; at end-of-message the children run one after another over the
  message as changed by the children before them (the replay). The MTA then
  gets the net changes and the merged verdict.
* Merge priority: discard > reject > tempfail > continue > skip > accept >
  no change. A reject/tempfail at envelope-recipient concerns that recipient
  only; anywhere else a negative verdict ends the message for everybody.
* A child that fails (connect error, timeout, close, nonsense) contributes
  its own ``fallback_status`` once and leaves the session; the others go on.
  When no child is left at all, the manager's ``fallback_status`` answers.
* An evaluation-mode child's negative verdicts count as accept and its
  changes are ignored; what it said is still reported.
* Commands the MTA sends while children are still answering are queued and
  handled in order, so a pipelining MTA cannot confuse the machine (``backlog``
  lets the adapter stop reading past a bound).
* Bounded streaming: commands that want no reply (a body for a child that asked
  for no per-chunk replies, a new body for the MTA) go a window of chunks at a
  time; ``Drain``/``MtaDrain`` ask the adapter to call ``child_drained`` /
  ``mta_drained`` once that peer's socket took them.
* A child's end-of-message changes are held until its verdict: a change it did
  not ask for at negotiation (its actions) is a protocol violation that fails
  it, and a child that fails gets none of that message's changes through.
* The MTA breaking the protocol (a second OPTNEG, version 0 or 1, a command
  before OPTNEG) ends the session at once: ``MtaError(fatal=True)``. A body the
  store cannot keep (a full disk) gives the message a temporary failure.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mmd.engine.applicability import (
    CONNECTION_STAGES,
    ChildCondition,
    SessionFacts,
    Stage,
)
from mmd.engine.message import BodyStore, HeaderError, MemoryBody, WorkingHeaders
from mmd.engine.negotiation import merge_answers, offer_to_children
from mmd.engine.verdict import (
    FINAL_NEGATIVE,
    REPLY_VERDICTS,
    Verdict,
    reply_code_verdict,
    reply_for,
)
from mmd.protocol import messages as m
from mmd.protocol.constants import MIN_VERSION, Family, MacroStage, Step
from mmd.protocol.constants import Action as Act

# ---------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class ChildSettings:
    name: str
    fallback: Verdict = Verdict.ACCEPT
    evaluation_mode: bool = False
    conditions: tuple[ChildCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionSettings:
    fallback: Verdict = Verdict.ACCEPT
    fallback_at_disconnect: Verdict = Verdict.TEMPFAIL
    chunk_size: int = 65535
    # commands sent to one peer without a reply before waiting for its socket to take
    # them (``Drain``): what a big message may hold in memory per child
    window: int = 4
    # macros the conditions read, by stage (names without braces)
    needed_macros: Mapping[MacroStage, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class ToChild:
    index: int
    message: m.CommandMessage
    expect_reply: bool
    stage: Stage


@dataclass(frozen=True, slots=True)
class ToMta:
    message: m.ReplyMessage


@dataclass(frozen=True, slots=True)
class CloseChild:
    index: int


@dataclass(frozen=True, slots=True)
class Drain:
    """Carry on with ``child_drained(index)`` once that child's socket took what was sent.

    A child that wants no reply per body chunk would otherwise get the whole body
    at once, held in memory; the adapter also lets other sessions run in between.
    """

    index: int


@dataclass(frozen=True, slots=True)
class MtaDrain:
    """Carry on with ``mta_drained()`` once the MTA's socket took what was sent."""


@dataclass(frozen=True, slots=True)
class MtaError:
    """Something the MTA side must log; ``fatal``: the session is over and the
    adapter closes the MTA connection (the MTA broke the protocol)."""

    reason: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class ChildFinished:
    """A child's part in one SMTP session is over: one statistics record.

    ``failed``: it left because it failed (whoever noticed: the adapter or the
    engine), so the adapter logs the reason as an error too.
    """

    index: int
    name: str
    stage: Stage
    status: str
    reason: str = ""
    failed: bool = False


@dataclass(frozen=True, slots=True)
class ConditionSkipped:
    index: int
    name: str
    stage: Stage
    reason: str


@dataclass(frozen=True, slots=True)
class SessionFinished:
    """One SMTP session is over (QUIT, QUIT_NC or the MTA went away)."""

    stage: Stage
    status: str
    disconnected: bool = False


Action = (
    ToChild
    | ToMta
    | CloseChild
    | Drain
    | MtaDrain
    | MtaError
    | ChildFinished
    | ConditionSkipped
    | SessionFinished
)


# ---------------------------------------------------------------- stage table


@dataclass(frozen=True, slots=True)
class _StageInfo:
    stage: Stage
    code: bytes
    no_event: int  # Step bits as plain ints: IntFlag's & costs microseconds a test
    no_reply: int


_NONE = 0
_NO_CONNECT = int(Step.NO_CONNECT)
_NO_HELO = int(Step.NO_HELO)
_NO_MAIL = int(Step.NO_MAIL)
_NO_RCPT = int(Step.NO_RCPT)
_NO_DATA = int(Step.NO_DATA)
_NO_UNKNOWN = int(Step.NO_UNKNOWN)
_NO_HEADERS = int(Step.NO_HEADERS)
_NO_END_OF_HEADERS = int(Step.NO_END_OF_HEADERS)
_NO_BODY = int(Step.NO_BODY)
_NO_REPLY_CONNECT = int(Step.NO_REPLY_CONNECT)
_NO_REPLY_HELO = int(Step.NO_REPLY_HELO)
_NO_REPLY_MAIL = int(Step.NO_REPLY_MAIL)
_NO_REPLY_RCPT = int(Step.NO_REPLY_RCPT)
_NO_REPLY_DATA = int(Step.NO_REPLY_DATA)
_NO_REPLY_UNKNOWN = int(Step.NO_REPLY_UNKNOWN)
_NO_REPLY_HEADER = int(Step.NO_REPLY_HEADER)
_NO_REPLY_END_OF_HEADERS = int(Step.NO_REPLY_END_OF_HEADERS)
_NO_REPLY_BODY = int(Step.NO_REPLY_BODY)
_RCPT_REJECTED = int(Step.RCPT_REJECTED)
_HEADER_LEADING_SPACE = int(Step.HEADER_LEADING_SPACE)
_STAGES: dict[type, _StageInfo] = {
    m.Connect: _StageInfo(Stage.CONNECT, b"C", _NO_CONNECT, _NO_REPLY_CONNECT),
    m.Helo: _StageInfo(Stage.HELO, b"H", _NO_HELO, _NO_REPLY_HELO),
    m.Mail: _StageInfo(Stage.MAIL, b"M", _NO_MAIL, _NO_REPLY_MAIL),
    m.Rcpt: _StageInfo(Stage.RCPT, b"R", _NO_RCPT, _NO_REPLY_RCPT),
    m.Data: _StageInfo(Stage.DATA, b"T", _NO_DATA, _NO_REPLY_DATA),
    m.Unknown: _StageInfo(Stage.UNKNOWN, b"U", _NO_UNKNOWN, _NO_REPLY_UNKNOWN),
    m.Header: _StageInfo(Stage.HEADER, b"L", _NO_HEADERS, _NO_REPLY_HEADER),
    m.EndOfHeaders: _StageInfo(
        Stage.END_OF_HEADERS, b"N", _NO_END_OF_HEADERS, _NO_REPLY_END_OF_HEADERS
    ),
    m.Body: _StageInfo(Stage.BODY, b"B", _NO_BODY, _NO_REPLY_BODY),
    m.EndOfMessage: _StageInfo(Stage.END_OF_MESSAGE, b"E", _NONE, _NONE),
}
_DATA_INFO = _STAGES[m.Data]
# the action (SMFIF_*) a child must have asked for at negotiation to send each change
_REQUIRED_ACTION: dict[type, tuple[int, str]] = {
    m.AddHeader: (int(Act.ADD_HEADERS), "add-header"),
    m.InsertHeader: (int(Act.ADD_HEADERS), "add-header"),
    m.ChangeHeader: (int(Act.CHANGE_HEADERS), "change-header"),
    m.ReplaceBody: (int(Act.CHANGE_BODY), "change-body"),
    m.AddRecipient: (int(Act.ADD_RECIPIENT), "add-recipient"),
    m.AddRecipientWithArgs: (int(Act.ADD_RECIPIENT_WITH_ARGS), "add-recipient-with-args"),
    m.DeleteRecipient: (int(Act.DELETE_RECIPIENT), "delete-recipient"),
    m.ChangeFrom: (int(Act.CHANGE_FROM), "change-from"),
    m.Quarantine: (int(Act.QUARANTINE), "quarantine"),
}
_FAMILIES = {
    Family.UNIX: "unix",
    Family.INET: "inet",
    Family.INET6: "inet6",
    Family.UNKNOWN: "unknown",
}


class _Phase(enum.Enum):
    NEW = "new"  # waiting for the MTA's OPTNEG
    NEGOTIATING = "negotiating"
    IDLE = "idle"  # waiting for the MTA
    ENVELOPE = "envelope"  # waiting for children's answers to an envelope stage
    REPLAY = "replay"  # end-of-message: children one after another
    CLOSED = "closed"


class _Left(enum.Enum):
    """Why a child no longer takes part (for the message or the connection)."""

    ACCEPTED = "accepted"
    CONDITION = "condition"
    FAILED = "failed"


# ---------------------------------------------------------------- per child


@dataclass(slots=True, eq=False)
class _Child:
    index: int
    settings: ChildSettings
    steps: int = _NONE  # the child's Step bits as a plain int
    actions: int = _NONE  # the changes it may make: asked for and offered by the MTA
    leading_space: bool = False
    failed: bool = False
    connection_left: _Left | None = None
    message_left: _Left | None = None
    in_transaction: bool = False  # got MAIL; needs ABORT if the message ends early
    body_skipped: bool = False
    awaiting: Stage | None = None
    draining: bool = False  # its script waits for its socket to take what was sent
    # its end-of-message changes, applied only once its verdict came (a child that
    # fails half-way gets none of them through)
    changes: list[m.Modification] = field(default_factory=list)
    extra_macros: dict[bytes, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # statistics of the SMTP session
    last_stage: Stage = Stage.NEGOTIATE
    result: Verdict = Verdict.NO_CHANGE
    reason: str = ""
    reported: bool = False

    @property
    def name(self) -> str:
        return self.settings.name

    def in_connection(self) -> bool:
        return not self.failed and self.connection_left is None

    def in_message(self) -> bool:
        return self.in_connection() and self.message_left is None


# ---------------------------------------------------------------- the machine


class Session:
    def __init__(
        self,
        children: Sequence[ChildSettings],
        settings: SessionSettings | None = None,
        body_factory: Callable[[], BodyStore] = MemoryBody,
        facts: SessionFacts | None = None,
    ) -> None:
        self.settings = settings or SessionSettings()
        self.facts = facts or SessionFacts()
        self._children = [_Child(i, c) for i, c in enumerate(children)]
        self._body_factory = body_factory
        self._phase = _Phase.NEW
        self._queue: deque[m.CommandMessage] = deque()
        self._out: list[Action] = []
        self._offer: m.Negotiate | None = None
        self._mta_steps = _NONE  # Step bits negotiated with the MTA, as a plain int
        self._macros: dict[bytes, m.Macro] = {}  # the MTA's last MACRO per command letter
        # the stage being answered
        self._stage = Stage.NEGOTIATE
        self._waiting = 0
        self._verdicts: list[Verdict] = []
        self._reply_codes: list[m.ReplyCode] = []
        self._owed: list[Verdict] = []
        self._session_status = Verdict.NO_CHANGE
        self._quarantined = False
        self._answers: list[m.Negotiate] = []
        self._new_message()

    # ------------------------------------------------------------ inputs

    @property
    def finished(self) -> bool:
        return self._phase is _Phase.CLOSED

    @property
    def backlog(self) -> int:
        """MTA commands waiting for the children to finish the current stage."""
        return len(self._queue)

    @property
    def waiting_for_mta(self) -> bool:
        """Nothing to do until the MTA sends its next command (its idle time counts)."""
        return self._phase in (_Phase.NEW, _Phase.IDLE) and not self._queue

    def from_mta(self, message: m.CommandMessage) -> list[Action]:
        self._queue.append(message)
        self._drain()
        return self._take()

    def from_child(self, index: int, reply: m.ReplyMessage) -> list[Action]:
        child = self._children[index]
        if child.failed or self._phase is _Phase.CLOSED:
            return self._take()
        if isinstance(reply, m.Progress):
            if self._phase is _Phase.REPLAY and child.awaiting is Stage.END_OF_MESSAGE:
                self._out.append(ToMta(reply))
            return self._take()
        stage = child.awaiting
        if stage is None and child.draining:
            # a verdict in the middle of a body it asked not to answer (libmilter sends
            # one when the body callback rejects): its answer for the message
            child.draining = False
            stage = Stage.BODY
        if stage is None:
            self._fail(child, f"unexpected {type(reply).__name__} reply")
        elif stage is Stage.NEGOTIATE:
            self._on_negotiated(child, reply)
        elif self._phase is _Phase.REPLAY:
            self._on_replay_reply(child, stage, reply)
        else:
            self._on_envelope_reply(child, stage, reply)
        self._drain()
        return self._take()

    def child_failed(self, index: int, reason: str) -> list[Action]:
        child = self._children[index]
        if not child.failed and self._phase is not _Phase.CLOSED:
            self._fail(child, reason)
            self._drain()
        return self._take()

    def child_drained(self, index: int) -> list[Action]:
        """The child's socket took what was sent after a ``Drain``: send the next piece."""
        child = self._children[index]
        if child.draining:
            child.draining = False
            if not child.failed and self._phase is _Phase.REPLAY and self._replaying is child:
                if not self._pump(child):
                    self._child_done_with_message(child)
                self._drain()
        return self._take()

    def mta_drained(self) -> list[Action]:
        """The MTA's socket took what was sent after an ``MtaDrain``."""
        if self._answer is not None and self._phase is _Phase.REPLAY:
            self._pump_answer()
            self._drain()
        return self._take()

    def mta_closed(self) -> list[Action]:
        """The MTA went away without QUIT.

        Once the MTA was told accept with no child left in the connection (all
        accepted, skipped by a condition or failed), closing is how Postfix ends
        it (it drops a milter that accepted the connection, without QUIT): the
        session's status is that accept, not the disconnect fallback.
        """
        if self._phase is not _Phase.CLOSED:
            self._close_session()
        return self._take()

    def _close_session(self) -> None:
        done = self._session_status is Verdict.ACCEPT and not any(
            c.in_connection() for c in self._children
        )
        for child in self._children:
            if not child.failed:
                if self._phase is _Phase.REPLAY and (child.awaiting is not None or child.draining):
                    # cut off at end-of-message before it answered: no verdict to record
                    child.failed = True
                    child.result = child.settings.fallback
                    child.reason = f"cut off at {child.last_stage.value}: the MTA left"
                if child.in_transaction:
                    self._send(child, m.Abort(), Stage.ABORT)
                self._send(child, m.Quit(), Stage.QUIT)
                self._out.append(CloseChild(child.index))
        self._release_message()
        if done:
            self._finish_session(Verdict.ACCEPT)
        else:
            self._finish_session(self.settings.fallback_at_disconnect, disconnected=True)
        self._phase = _Phase.CLOSED

    def _violation(self, reason: str) -> None:
        """The MTA broke the protocol: log it, and end the session as if it had left."""
        self._queue.clear()
        self._out.append(MtaError(f"protocol error from MTA: {reason}", fatal=True))
        self._close_session()

    # ------------------------------------------------------------ plumbing

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _send(
        self, child: _Child, message: m.CommandMessage, stage: Stage, expect_reply: bool = False
    ) -> None:
        self._out.append(ToChild(child.index, message, expect_reply, stage))
        if expect_reply:
            child.awaiting = stage

    def _send_macros(self, child: _Child, code: bytes) -> None:
        macro = self._macros.get(code)
        extra = child.extra_macros.get(code)
        if extra:
            pairs = macro.macros + extra if macro is not None else extra
            self._out.append(ToChild(child.index, m.Macro(code, pairs), False, self._stage))
        elif macro is not None and macro.macros:
            # the MTA's own message: every child gets the same object, encoded once
            self._out.append(ToChild(child.index, macro, False, self._stage))

    def _drain(self) -> None:
        while self._queue and self._phase in (_Phase.NEW, _Phase.IDLE):
            self._handle(self._queue.popleft())

    def _handle(self, message: m.CommandMessage) -> None:
        if isinstance(message, m.Macro):
            self._macros[message.command] = message
            for name, value in message.macros:
                self.facts.macros[name.strip("{}")] = value
        elif isinstance(message, m.Negotiate):
            if self._offer is not None:
                self._violation("a second option negotiation (OPTNEG)")
            elif message.version < MIN_VERSION:
                self._violation(
                    f"option negotiation offers protocol version {message.version}, "
                    f"mmd speaks {MIN_VERSION} to 6"
                )
            else:
                self._negotiate(message)
        elif self._phase is _Phase.NEW:
            # an MTA that skipped OPTNEG: nothing sensible to do but refuse
            self._out.append(ToMta(m.Tempfail()))
            self._violation(f"{type(message).__name__} before the option negotiation")
        elif isinstance(message, m.Header | m.EndOfHeaders | m.Body):
            self._buffer(message)
        elif isinstance(message, m.EndOfMessage):
            self._end_of_message(message)
        elif isinstance(message, m.Abort):
            self._abort_message()
        elif isinstance(message, m.Quit):
            self._quit()
        elif isinstance(message, m.QuitNewConnection):
            self._quit_new_connection()
        else:
            self._envelope(message)

    # ------------------------------------------------------------ negotiation

    def _negotiate(self, offer: m.Negotiate) -> None:
        self._offer = offer
        self._stage = Stage.NEGOTIATE
        self._phase = _Phase.NEGOTIATING
        child_offer = offer_to_children(offer)
        for child in self._children:
            if not child.failed:
                self._send(child, child_offer, Stage.NEGOTIATE, expect_reply=True)
        self._waiting = sum(1 for c in self._children if c.awaiting is Stage.NEGOTIATE)
        if self._waiting == 0:
            self._finish_negotiation()

    def _on_negotiated(self, child: _Child, reply: m.ReplyMessage) -> None:
        if not isinstance(reply, m.Negotiate):
            self._fail(child, f"answered OPTNEG with {type(reply).__name__}")
            return
        child.awaiting = None
        child.steps = int(reply.steps)
        assert self._offer is not None
        child.actions = int(reply.actions & self._offer.actions)
        child.leading_space = bool(child.steps & _HEADER_LEADING_SPACE)
        self._answers.append(reply)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish_negotiation()

    def _finish_negotiation(self) -> None:
        assert self._offer is not None
        merged = merge_answers(self._offer, self._answers, self.settings.needed_macros)
        self._mta_steps = int(merged.steps)
        self._out.append(ToMta(merged))
        self._phase = _Phase.IDLE

    # ------------------------------------------------------------ envelope stages

    def _envelope(self, command: m.CommandMessage) -> None:
        info = _STAGES[type(command)]
        stage = info.stage
        self._learn(command)
        self._begin_stage(stage)
        rejected_recipient = stage is Stage.RCPT and self.facts.macros.get("rcpt_mailer") == "error"
        for child in self._children:
            if not self._takes_part(child, stage):
                continue
            if child.steps & info.no_event:
                continue
            if rejected_recipient and not child.steps & _RCPT_REJECTED:
                continue
            self._send_macros(child, info.code)
            expect = not child.steps & info.no_reply
            self._send(child, command, stage, expect_reply=expect)
            child.last_stage = stage
            if stage is Stage.MAIL:
                child.in_transaction = True
            if expect:
                self._waiting += 1
        if stage is Stage.DATA:
            self._saw_data = True
        if self._waiting:
            self._phase = _Phase.ENVELOPE
        else:
            self._finish_envelope()

    def _learn(self, command: m.CommandMessage) -> None:
        facts = self.facts
        if isinstance(command, m.Connect):
            facts.client_name = command.hostname
            facts.client_address = command.address
            facts.client_port = command.port
            facts.family = _FAMILIES[command.family]
        elif isinstance(command, m.Helo):
            facts.helo = command.name
        elif isinstance(command, m.Mail):
            self._release_message()
            self._new_message()
            facts.sender = command.args[0].strip("<>") if command.args else ""
        elif isinstance(command, m.Rcpt):
            facts.recipients.append(command.args[0].strip("<>") if command.args else "")

    def _begin_stage(self, stage: Stage) -> None:
        self._stage = stage
        self._waiting = 0
        self._verdicts = self._owed
        self._owed = []
        self._reply_codes = []

    def _takes_part(self, child: _Child, stage: Stage) -> bool:
        """Whether ``child`` gets ``stage``; asks its conditions first."""
        if not child.in_message():
            return False
        conditions = child.settings.conditions
        if not conditions:
            return True
        code = _code_of(stage)
        child.extra_macros.pop(code, None)
        for condition in conditions:
            decision = condition.decide(stage, self.facts)
            if decision is None:
                continue
            if not decision.apply:
                left = _Left.CONDITION
                if stage in CONNECTION_STAGES:
                    child.connection_left = left
                else:
                    child.message_left = left
                self._out.append(ConditionSkipped(child.index, child.name, stage, decision.reason))
                return False
            if decision.macros:
                child.extra_macros[code] = child.extra_macros.get(code, ()) + decision.macros
        return True

    def _on_envelope_reply(self, child: _Child, stage: Stage, reply: m.ReplyMessage) -> None:
        verdict = self._verdict_of(reply)
        if verdict is None:
            self._fail(child, f"sent {type(reply).__name__} at {stage.value}")
            return
        child.awaiting = None
        if verdict is Verdict.SKIP:
            verdict = Verdict.CONTINUE
        verdict = self._count(child, stage, verdict, reply)
        if verdict is Verdict.ACCEPT:
            if stage in CONNECTION_STAGES:
                child.connection_left = _Left.ACCEPTED
            else:
                child.message_left = _Left.ACCEPTED
        self._verdicts.append(verdict)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish_envelope()

    def _finish_envelope(self) -> None:
        stage = self._stage
        merged = self._merge(self._children_left_message())
        info = _STAGES[_COMMAND_OF[stage]]
        if not self._mta_steps & info.no_reply:
            self._out.append(ToMta(reply_for(merged, self._reply_codes)))
        self._phase = _Phase.IDLE
        if merged in FINAL_NEGATIVE:
            if stage is Stage.RCPT and merged is not Verdict.DISCARD:
                if self.facts.recipients:
                    self.facts.recipients.pop()
                # the session's status until a message ends: a session whose only recipient
                # was refused (greylisting's tempfail, ...) counts as refused, not as pass
                self._session_status = merged
            else:
                self._session_status = merged
                self._end_message()
        elif merged is Verdict.ACCEPT:
            self._session_status = merged

    def _children_left_message(self) -> bool:
        return not any(c.in_message() for c in self._children)

    def _merge(self, nobody_left: bool) -> Verdict:
        merged = max(self._verdicts, default=Verdict.NO_CHANGE)
        if merged in FINAL_NEGATIVE:
            return merged
        if nobody_left:
            if all(c.failed for c in self._children):
                return self.settings.fallback
            return Verdict.ACCEPT
        return Verdict.CONTINUE

    # ------------------------------------------------------------ message stages

    def _new_message(self) -> None:
        self.facts.reset_message()
        self._headers: list[tuple[str, str]] = []
        self._body: BodyStore | None = None
        self._saw_data = False
        # end-of-message replay
        self._working = WorkingHeaders([])
        self._replay_queue: deque[_Child] = deque()
        self._replaying: _Child | None = None
        self._script: Iterator[tuple[m.CommandMessage, Stage, bool]] | None = None
        self._replacement: BodyStore | None = None
        self._replacement_pending: tuple[_Child, BodyStore] | None = None
        self._body_replaced = False
        self._change_from: m.ChangeFrom | None = None
        self._quarantine: m.Quarantine | None = None
        self._answer: Iterator[m.ReplyMessage] | None = None  # the MTA's, being streamed
        self._spool_error = ""  # the body could not be kept: the message gets tempfail
        for child in self._children:
            child.message_left = None
            child.body_skipped = False
            child.changes.clear()

    def _buffer(self, message: m.Header | m.EndOfHeaders | m.Body) -> None:
        info = _STAGES[type(message)]
        self._stage = info.stage
        if isinstance(message, m.Header):
            self._headers.append((message.name, message.value))
            self.facts.headers.append((message.name, message.value))
        elif isinstance(message, m.Body):
            self._keep_body(message.chunk)
        if not self._mta_steps & info.no_reply:
            self._out.append(ToMta(m.Continue()))

    def _keep_body(self, chunk: bytes) -> None:
        if self._spool_error:
            return  # the message is lost already; its answer is tempfail
        try:
            if self._body is None:
                self._body = self._body_factory()
            self._body.append(chunk)
        except OSError as error:  # a full or broken temporary folder
            self._spool_error = f"cannot keep the message body: {error}"
            self._out.append(MtaError(self._spool_error))

    def _end_of_message(self, message: m.EndOfMessage) -> None:
        if message.chunk:
            self._keep_body(message.chunk)
        self._begin_stage(Stage.END_OF_MESSAGE)
        if self._spool_error:
            self._out.append(ToMta(m.Tempfail()))
            self._session_status = Verdict.TEMPFAIL
            self._end_message()
            return
        self._phase = _Phase.REPLAY
        self._working = WorkingHeaders(self._headers)
        self._replay_queue = deque(c for c in self._children if c.in_message())
        self._next_child()

    def _next_child(self) -> None:
        while self._replay_queue:
            child = self._replay_queue.popleft()
            if not child.in_message() or not self._applies_to_message(child):
                continue
            self._replaying = child
            self._script = self._replay_script(child)
            if self._pump(child):
                return
        self._replaying = None
        self._finish_message()

    def _applies_to_message(self, child: _Child) -> bool:
        stages: tuple[Stage, ...] = (
            Stage.HEADER,
            Stage.END_OF_HEADERS,
            Stage.BODY,
            Stage.END_OF_MESSAGE,
        )
        if not self._saw_data:
            stages = (Stage.DATA, *stages)  # DATA is synthesised: its conditions still decide
        return all(self._takes_part(child, stage) for stage in stages)

    def _replay_script(self, child: _Child) -> Iterator[tuple[m.CommandMessage, Stage, bool]]:
        """What ``child`` gets at end-of-message: (command, stage, expects a reply)."""
        steps = child.steps
        if not self._saw_data and not steps & _NO_DATA:
            self._send_macros(child, b"T")
            yield m.Data(), Stage.DATA, not steps & _NO_REPLY_DATA
        if not steps & _NO_HEADERS:
            expect = not steps & _NO_REPLY_HEADER
            adapt = self._header_adapter_to_child(child)
            for name, value in self._working.items():
                yield m.Header(name, adapt(value)), Stage.HEADER, expect
        if not steps & _NO_END_OF_HEADERS:
            self._send_macros(child, b"N")
            yield m.EndOfHeaders(), Stage.END_OF_HEADERS, not steps & _NO_REPLY_END_OF_HEADERS
        if not steps & _NO_BODY and self._current_body() is not None:
            expect = not steps & _NO_REPLY_BODY
            body = self._current_body()
            assert body is not None
            for chunk in body.chunks(self.settings.chunk_size):
                if child.body_skipped:
                    break
                yield m.Body(chunk), Stage.BODY, expect
        self._send_macros(child, b"E")
        yield m.EndOfMessage(), Stage.END_OF_MESSAGE, True

    def _current_body(self) -> BodyStore | None:
        return self._replacement if self._body_replaced else self._body

    def _pump(self, child: _Child) -> bool:
        """Send the script up to the next command that wants a reply, or up to a
        window of body chunks without one (then ``Drain``); False when the script is done."""
        assert self._script is not None
        window = self.settings.window
        for command, stage, expect in self._script:
            self._send(child, command, stage, expect_reply=expect)
            child.last_stage = stage
            if expect:
                return True
            if stage is Stage.BODY:
                window -= 1
            if window <= 0:
                child.draining = True
                self._out.append(Drain(child.index))
                return True
        return False

    def _on_replay_reply(self, child: _Child, stage: Stage, reply: m.ReplyMessage) -> None:
        if isinstance(reply, m.Modification):
            required, label = _REQUIRED_ACTION[type(reply)]
            if stage is not Stage.END_OF_MESSAGE:
                self._fail(child, f"sent {type(reply).__name__} at {stage.value}")
            elif not child.actions & required:
                self._fail(
                    child,
                    f"protocol violation: sent {type(reply).__name__} without the "
                    f"{label} action negotiated; none of its changes applied",
                )
            elif not child.settings.evaluation_mode:
                self._hold(child, reply)
            return
        verdict = self._verdict_of(reply)
        if verdict is None:
            self._fail(child, f"sent {type(reply).__name__} at {stage.value}")
            return
        child.awaiting = None
        if verdict is Verdict.SKIP:
            if stage is Stage.BODY:
                child.body_skipped = True
            verdict = Verdict.CONTINUE
        if verdict is Verdict.CONTINUE and stage is not Stage.END_OF_MESSAGE:
            if not self._pump(child):
                self._child_done_with_message(child)
            return
        verdict = self._count(child, stage, verdict, reply)
        self._verdicts.append(verdict)
        if verdict is Verdict.ACCEPT:
            child.message_left = _Left.ACCEPTED
        for change in child.changes:
            self._apply(child, change)
        child.changes.clear()
        self._child_done_with_message(child)

    def _child_done_with_message(self, child: _Child) -> None:
        if child.last_stage is Stage.END_OF_MESSAGE:
            child.in_transaction = False
        self._script = None
        child.draining = False
        pending = self._replacement_pending
        if pending is not None and pending[0] is child:
            self._replacement_pending = None
            if child.failed:
                pending[1].close()
            else:
                if self._replacement is not None:
                    self._replacement.close()
                self._replacement = pending[1]
                self._body_replaced = True
        if any(v in FINAL_NEGATIVE for v in self._verdicts):
            self._replay_queue.clear()
        self._next_child()

    def _hold(self, child: _Child, change: m.Modification) -> None:
        """Keep a change until the child's verdict; a new body goes to its own store."""
        if not isinstance(change, m.ReplaceBody):
            child.changes.append(change)
            return
        pending = self._replacement_pending
        if pending is None or pending[0] is not child:
            pending = (child, self._body_factory())
            self._replacement_pending = pending
        try:
            pending[1].append(change.chunk)
        except OSError as error:
            self._out.append(MtaError(f"cannot keep {child.name}'s new body: {error}"))
            self._fail(child, f"its new body cannot be kept: {error}")

    def _apply(self, child: _Child, change: m.Modification) -> None:
        adapt = self._header_adapter_from_child(child)
        try:
            if isinstance(change, m.AddHeader):
                self._working.add(change.name, adapt(change.value))
            elif isinstance(change, m.InsertHeader):
                self._working.insert(change.index, change.name, adapt(change.value))
            elif isinstance(change, m.ChangeHeader):
                value = adapt(change.value) if change.value else ""
                self._working.change(change.name, change.index, value)
            elif isinstance(change, m.ChangeFrom):
                self._change_from = change
            elif isinstance(change, m.Quarantine):
                self._quarantine = change
            else:  # recipients: forwarded as they come
                self._out.append(ToMta(change))
        except HeaderError as error:
            child.reason = str(error)

    def _finish_message(self) -> None:
        merged = self._merge(self._children_left_message())
        self._session_status = merged if merged is not Verdict.CONTINUE else Verdict.NO_CHANGE
        self._answer = self._answer_script(merged)
        self._pump_answer()

    def _answer_script(self, merged: Verdict) -> Iterator[m.ReplyMessage]:
        """The MTA's end-of-message answer: net changes, then the verdict."""
        if merged in FINAL_NEGATIVE:
            yield reply_for(merged, self._reply_codes)
            return
        if self._change_from is not None:
            yield self._change_from
        yield from self._working.net_changes()
        if self._body_replaced and self._replacement is not None:
            empty = True
            for chunk in self._replacement.chunks(self.settings.chunk_size):
                empty = False
                yield m.ReplaceBody(chunk)
            if empty:
                yield m.ReplaceBody(b"")
        if self._quarantine is not None:
            self._quarantined = True
            yield self._quarantine
        yield m.Accept() if merged is Verdict.ACCEPT else m.Continue()

    def _pump_answer(self) -> None:
        """Send the MTA's answer, a window at a time (a new body can be large)."""
        assert self._answer is not None
        window = self.settings.window
        for reply in self._answer:
            self._out.append(ToMta(reply))
            if type(reply) is m.ReplaceBody:
                window -= 1
            if window <= 0:
                self._out.append(MtaDrain())
                return
        self._answer = None
        self._phase = _Phase.IDLE
        self._end_message()

    # ------------------------------------------------------------ ends

    def _end_message(self) -> None:
        """The message is over for everybody: reset children still inside it."""
        for child in self._children:
            if child.in_transaction and not child.failed:
                self._send(child, m.Abort(), Stage.ABORT)
            child.in_transaction = False
        self._release_message()
        self._new_message()

    def _release_message(self) -> None:
        """Close the message's stores: a spooled body gives back its file at once."""
        pending = self._replacement_pending
        for store in (self._body, self._replacement, pending[1] if pending else None):
            if store is not None:
                store.close()
        self._body = self._replacement = self._replacement_pending = None
        self._answer = None

    def _abort_message(self) -> None:
        # the session's last stage stays the protocol stage before ABORT, as in the
        # classic statistics line: Postfix sends ABORT after every message
        self._end_message()

    def _quit(self) -> None:
        for child in self._children:
            if not child.failed:
                self._send(child, m.Quit(), Stage.QUIT)
                self._out.append(CloseChild(child.index))
        self._release_message()
        self._finish_session(self._session_status)
        self._phase = _Phase.CLOSED

    def _quit_new_connection(self) -> None:
        for child in self._children:
            if not child.failed:
                self._send(child, m.QuitNewConnection(), Stage.QUIT)
        self._finish_session(self._session_status)
        for child in self._children:
            child.connection_left = None
            child.extra_macros = {}
            child.reported = child.failed
            child.result = Verdict.NO_CHANGE
            child.reason = ""
        active = self.facts.active_sessions
        self.facts = SessionFacts(active_sessions=active)
        self._macros = {}
        self._session_status = Verdict.NO_CHANGE
        self._quarantined = False
        self._release_message()
        self._new_message()

    def _finish_session(self, status: Verdict, disconnected: bool = False) -> None:
        for child in self._children:
            self._report(child)
        label = "quarantine" if self._quarantined and status not in FINAL_NEGATIVE else status.label
        self._out.append(SessionFinished(self._stage, label, disconnected))

    def _report(self, child: _Child) -> None:
        if not child.reported:
            child.reported = True
            if (
                child.connection_left is _Left.CONDITION
                and child.last_stage is Stage.NEGOTIATE
                and not child.failed
            ):
                return  # kept out before its first stage: it took no part in this session
            self._out.append(
                ChildFinished(
                    child.index,
                    child.name,
                    child.last_stage,
                    child.result.label,
                    child.reason,
                    failed=child.failed,
                )
            )

    # ------------------------------------------------------------ verdicts and failures

    @staticmethod
    def _verdict_of(reply: m.ReplyMessage) -> Verdict | None:
        if isinstance(reply, m.ReplyCode):
            return reply_code_verdict(reply)
        return REPLY_VERDICTS.get(type(reply))

    def _count(
        self, child: _Child, stage: Stage, verdict: Verdict, reply: m.ReplyMessage
    ) -> Verdict:
        """Record what the child said; returns what it counts as."""
        if verdict is not Verdict.CONTINUE:
            child.result = verdict
        if child.settings.evaluation_mode and verdict in FINAL_NEGATIVE:
            child.reason = f"evaluation mode: {verdict.label} at {stage.value} not applied"
            return Verdict.ACCEPT
        if isinstance(reply, m.ReplyCode):
            self._reply_codes.append(reply)
        return verdict

    def _fail(self, child: _Child, reason: str) -> None:
        """The child is out of the session; its fallback counts once as its answer."""
        waiting_on = child.awaiting
        child.failed = True
        child.awaiting = None
        child.in_transaction = False
        child.reason = reason
        child.result = child.settings.fallback
        child.changes.clear()
        draining, child.draining = child.draining, False
        self._out.append(CloseChild(child.index))
        self._report(child)
        fallback = child.settings.fallback
        if waiting_on is Stage.NEGOTIATE or self._phase not in (_Phase.ENVELOPE, _Phase.REPLAY):
            if fallback is not Verdict.ACCEPT:
                self._owed.append(fallback)
        else:
            self._verdicts.append(fallback)
        if waiting_on is None:
            if draining and self._phase is _Phase.REPLAY and self._replaying is child:
                self._child_done_with_message(child)
            return
        if waiting_on is Stage.NEGOTIATE:
            self._waiting -= 1
            if self._waiting == 0:
                self._finish_negotiation()
        elif self._phase is _Phase.REPLAY:
            self._child_done_with_message(child)
        else:
            self._waiting -= 1
            if self._waiting == 0:
                self._finish_envelope()

    # ------------------------------------------------------------ leading space

    def _header_adapter_to_child(self, child: _Child) -> Callable[[str], str]:
        mta = bool(self._mta_steps & _HEADER_LEADING_SPACE)
        if mta and not child.leading_space:
            return _strip_space
        if child.leading_space and not mta:
            return _add_space
        return _same

    def _header_adapter_from_child(self, child: _Child) -> Callable[[str], str]:
        mta = bool(self._mta_steps & _HEADER_LEADING_SPACE)
        if mta and not child.leading_space:
            return _add_space
        if child.leading_space and not mta:
            return _strip_space
        return _same


def _strip_space(value: str) -> str:
    return value[1:] if value.startswith(" ") else value


def _add_space(value: str) -> str:
    return " " + value


def _same(value: str) -> str:
    return value


_COMMAND_OF: dict[Stage, type] = {info.stage: kind for kind, info in _STAGES.items()}


def _code_of(stage: Stage) -> bytes:
    kind = _COMMAND_OF.get(stage)
    return _STAGES[kind].code if kind is not None else b""
