"""One MTA connection fanned out to N children: the session state machine.

Theory of operation
-------------------
The ``Session`` never touches a socket or a clock. The adapter feeds it what
happened (``from_mta``, ``from_child``, ``child_failed``, ``mta_closed``) and
gets back a list of outputs to carry out, in order (``ToChild``, ``ToMta``,
``CloseChild``, ``Drain``/``MtaDrain``) plus records to log (``ChildFinished``,
``ConditionSkipped``, ``SessionFinished``, ``MtaError``). Connecting to a child
is the adapter's business: it connects on the first ``ToChild`` for that child
and reports a failure with ``child_failed``; timeouts likewise (the
``expect_reply`` flag and the command's stage tell it which timeout to arm, and
``conversations[index].awaiting`` whether that reply is still due).

The session's state is split by lifetime: the ``Session`` is one MTA
connection (its phase, the command queue, connection facts, negotiation); a
``Transaction`` (mmd.engine.transaction) is one message: made at MAIL (or by
what of a message comes first), let go at ABORT and end-of-message; a
``ChildConversation`` (mmd.engine.conversation) is one child: its step flags,
what it owes, what it said. Phase transitions are one table (mmd.engine.phases); ``state`` is the
current phase.

Rules (reference-behaviour.md §2–§3), all in this file unless named:

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
  not ask for at negotiation (its actions; judged by its ``ChildConversation``)
  is a protocol violation that fails it, and a child that fails gets none of
  that message's changes through.
* Connection reuse (mmd.engine.reuse), when the adapter offers a link source: a
  child whose connection was kept from an earlier MTA connection gets no OPTNEG
  (its first answer holds and is merged as if given now); at the end, a child
  standing where libmilter takes a new CONNECT is handed on (``ReuseChild``)
  instead of QUIT. The outcome for the mail is the same with reuse on or off.
* The MTA breaking the protocol (a second OPTNEG, version 0 or 1, a command
  before OPTNEG) ends the session at once: ``MtaError(fatal=True)``. A body the
  store cannot keep (a full disk) gives the message a temporary failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from mmd.engine.applicability import SessionFacts
from mmd.engine.conversation import ChildConversation, ChildProtocolError, ChildSettings, Left
from mmd.engine.message import BodyStore, HeaderError, MemoryBody
from mmd.engine.negotiation import merge_answers, offer_to_children
from mmd.engine.outputs import (
    CloseChild,
    ConditionSkipped,
    Drain,
    MtaDrain,
    MtaError,
    Output,
    ReuseChild,
    SessionFinished,
    ToChild,
    ToMta,
)
from mmd.engine.phases import READY, Phase, Trigger, next_phase
from mmd.engine.reuse import NegotiatedOptions, Rest, reusable
from mmd.engine.stages import BY_STAGE, STAGES, Stage, macro_code
from mmd.engine.transaction import Transaction
from mmd.engine.verdict import FINAL_NEGATIVE, Verdict, reply_for
from mmd.protocol import messages as m
from mmd.protocol.constants import MIN_VERSION, Action, Family, MacroStage, Step

__all__ = ["LinkSource", "Session", "SessionSettings"]


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """The manager's part of the configuration, as one MTA connection needs it."""

    fallback: Verdict = Verdict.ACCEPT
    fallback_at_disconnect: Verdict = Verdict.TEMPFAIL
    chunk_size: int = 65535
    # commands sent to one peer without a reply before waiting for its socket to take
    # them (``Drain``): what a big message may hold in memory per child
    window: int = 4
    # macros the conditions read, by stage (names without braces)
    needed_macros: Mapping[MacroStage, tuple[str, ...]] = field(default_factory=dict)


_DATA = STAGES[m.Data]
_HEADER = STAGES[m.Header]
_END_OF_HEADERS = STAGES[m.EndOfHeaders]
_BODY = STAGES[m.Body]
_END_OF_MESSAGE = STAGES[m.EndOfMessage]
_HEADER_LEADING_SPACE = int(Step.HEADER_LEADING_SPACE)
_FAMILIES = {
    Family.UNIX: "unix",
    Family.INET: "inet",
    Family.INET6: "inet6",
    Family.UNKNOWN: "unknown",
}
_MESSAGE_STAGES = (Stage.HEADER, Stage.END_OF_HEADERS, Stage.BODY, Stage.END_OF_MESSAGE)
_MESSAGE_STAGES_WITH_DATA = (Stage.DATA, *_MESSAGE_STAGES)

# a macro's name without braces, as the conditions read it: one string per name, not one
# per session; bounded, the names come from the MTA
_BARE_NAMES: dict[str, str] = {}
_BARE_NAMES_KEPT = 512
# MACRO packets held before they go into the facts all the same
_UNMERGED_KEPT = 16

# ``_offer`` once the negotiation is over: the MTA's own offer is not needed any more
_NEGOTIATED = m.Negotiate(0, Action(0), Step(0))

Script = Iterator[tuple[m.CommandMessage, Stage, bool]]

# what the adapter offers for connection reuse: a kept connection to child ``index``
# negotiated with this very offer (its options), or None (the child gets OPTNEG)
LinkSource = Callable[[int, m.Negotiate], NegotiatedOptions | None]


class Session:
    """One MTA connection fanned out to the children: commands and replies in, outputs out."""

    __slots__ = (
        "_answer",
        "_answers",
        "_body_factory",
        "_child_offer",
        "_facts",
        "_links",
        "_macros",
        "_mta_steps",
        "_offer",
        "_out",
        "_owed",
        "_phase",
        "_quarantined",
        "_queue",
        "_replay_queue",
        "_replaying",
        "_reply_codes",
        "_script",
        "_session_status",
        "_stage",
        "_transaction",
        "_unmerged",
        "_verdicts",
        "_waiting",
        "conversations",
        "settings",
    )

    def __init__(
        self,
        children: Sequence[ChildSettings],
        settings: SessionSettings | None = None,
        body_factory: Callable[[], BodyStore] = MemoryBody,
        facts: SessionFacts | None = None,
        links: LinkSource | None = None,
    ) -> None:
        """``links``: connection reuse is on (mmd.engine.reuse); kept connections come
        from it, and children that may serve another session end with ``ReuseChild``."""
        self.settings = settings or SessionSettings()
        self._facts = facts or SessionFacts()
        # one per child, by index: the adapters read what a child owes from here
        self.conversations = tuple(ChildConversation(i, c) for i, c in enumerate(children))
        self._body_factory = body_factory
        # the message: made at MAIL (or by whatever of a message the MTA sends first), not
        # before; an idle connection holds none
        self._transaction: Transaction | None = None
        self._facts.reset_message()
        self._phase = Phase.NEW
        # FIFO lists rather than deques: a deque costs ~620 bytes even empty, and these hold
        # a few entries at most (a pipelining MTA's backlog is bounded by the adapter)
        self._queue: list[m.CommandMessage] = []
        self._out: list[Output] = []
        self._offer: m.Negotiate | None = None
        self._child_offer: m.Negotiate | None = None
        self._links = links
        self._answers: list[m.Negotiate] | None = None  # while negotiating
        self._mta_steps = 0  # Step bits negotiated with the MTA, as a plain int
        self._macros: dict[bytes, m.Macro] = {}  # the MTA's last MACRO per command letter
        # the MTA's MACROs not yet in facts.macros, in the order they came (see ``facts``)
        self._unmerged: tuple[m.Macro, ...] = ()
        # the stage being answered
        self._stage = Stage.NEGOTIATE
        self._waiting = 0
        self._verdicts: list[Verdict] = []
        # the lists below are made when something goes in: most stages of most sessions
        # have no reply code and owe nothing, and a thousand idle connections held both
        self._reply_codes: list[m.ReplyCode] | None = None
        self._owed: list[Verdict] | None = None
        self._session_status = Verdict.NO_CHANGE
        self._quarantined = False
        # end-of-message: children one after another, then the MTA's answer
        self._replay_queue: list[ChildConversation] | None = None
        self._replaying: ChildConversation | None = None
        self._script: Script | None = None
        self._answer: Iterator[m.ReplyMessage] | None = None  # the MTA's, being streamed

    # ------------------------------------------------------------ state

    @property
    def transaction(self) -> Transaction:
        """The current message (``Transaction``), made on first use."""
        transaction = self._transaction
        if transaction is None:
            transaction = self._transaction = Transaction(self._facts, self._body_factory)
        return transaction

    @property
    def facts(self) -> SessionFacts:
        """What is known of the SMTP session (``SessionFacts``), for conditions and records.

        The MTA's macros go into ``facts.macros`` when something reads the facts, not as
        they come: most connections are never asked (no conditions, no record yet), and an
        idle connection then holds no dict of them (~0.2 kB).
        """
        if self._unmerged:
            self._merge_macros()
        return self._facts

    def _merge_macros(self) -> None:
        macros = self._facts.macros
        for message in self._unmerged:
            for name, value in message.macros:
                bare = _BARE_NAMES.get(name)
                if bare is None:
                    bare = name.strip("{}")
                    if len(_BARE_NAMES) < _BARE_NAMES_KEPT:
                        _BARE_NAMES[name] = bare
                macros[bare] = value
        self._unmerged = ()

    @property
    def state(self) -> Phase:
        """The current phase (mmd.engine.phases)."""
        return self._phase

    @property
    def finished(self) -> bool:
        """The session is over: nothing more to read from the MTA."""
        return self._phase is Phase.CLOSED

    @property
    def backlog(self) -> int:
        """MTA commands waiting for the children to finish the current stage."""
        return len(self._queue)

    @property
    def waiting_for_mta(self) -> bool:
        """Nothing to do until the MTA sends its next command (its idle time counts)."""
        return self._phase in READY and not self._queue

    def _move(self, trigger: Trigger) -> None:
        self._phase = next_phase(self._phase, trigger)

    # ------------------------------------------------------------ inputs

    def from_mta(self, message: m.CommandMessage) -> list[Output]:
        """A command from the MTA (queued while the children answer the last one)."""
        self._queue.append(message)
        self._drain()
        return self._take()

    def from_child(self, index: int, reply: m.ReplyMessage) -> list[Output]:
        """A reply from child ``index``."""
        child = self.conversations[index]
        phase = self._phase
        if child.failed or phase is Phase.CLOSED:
            return self._take()
        if type(reply) is m.Progress:
            if phase is Phase.REPLAY and child.awaiting is Stage.END_OF_MESSAGE:
                self._out.append(ToMta(reply))
            return self._take()
        try:
            stage = child.answered_stage(reply)
            if stage is Stage.NEGOTIATE:
                self._on_negotiated(child, reply)
            elif phase is Phase.REPLAY:
                self._on_replay_reply(child, stage, reply)
            else:
                self._on_envelope_reply(child, stage, reply)
        except ChildProtocolError as error:
            self._fail(child, str(error))
        self._drain()
        return self._take()

    def child_failed(self, index: int, reason: str) -> list[Output]:
        """The adapter lost child ``index`` (connect error, timeout, close, nonsense)."""
        child = self.conversations[index]
        if not child.failed and self._phase is not Phase.CLOSED:
            self._fail(child, reason)
            self._drain()
        return self._take()

    def child_drained(self, index: int) -> list[Output]:
        """The child's socket took what was sent after a ``Drain``: send the next piece."""
        child = self.conversations[index]
        if child.draining:
            child.draining = False
            if not child.failed and self._phase is Phase.REPLAY and self._replaying is child:
                if not self._pump(child):
                    self._child_done_with_message(child)
                self._drain()
        return self._take()

    def mta_drained(self) -> list[Output]:
        """The MTA's socket took what was sent after an ``MtaDrain``."""
        if self._answer is not None and self._phase is Phase.REPLAY:
            self._pump_answer()
            self._drain()
        return self._take()

    def mta_closed(self) -> list[Output]:
        """The MTA went away without QUIT.

        Once the MTA was told accept with no child left in the connection (all
        accepted, skipped by a condition or failed), closing is how Postfix ends
        it (it drops a milter that accepted the connection, without QUIT): the
        session's status is that accept, not the disconnect fallback.
        """
        if self._phase is not Phase.CLOSED:
            self._close_session()
        return self._take()

    def _close_session(self) -> None:
        done = self._session_status is Verdict.ACCEPT and not any(
            c.in_connection() for c in self.conversations
        )
        replay = self._phase is Phase.REPLAY
        for child in self.conversations:
            if not child.failed:
                if replay and (child.awaiting is not None or child.draining):
                    # cut off at end-of-message before it answered: no verdict to record
                    child.failed = True
                    child.result = child.settings.fallback
                    child.reason = f"cut off at {child.last_stage.value}: the MTA left"
                if self._release(child):
                    continue
                if child.in_transaction:
                    self._send(child, m.Abort(), Stage.ABORT)
                self._send(child, m.Quit(), Stage.QUIT)
                self._out.append(CloseChild(child.index))
        self._close_transaction()
        self._answer = None
        self._links = None  # the adapter's bound method: no cycle left for the GC
        if done:
            self._finish_session(Verdict.ACCEPT)
        else:
            self._finish_session(self.settings.fallback_at_disconnect, disconnected=True)
        self._move(Trigger.CLOSE)

    def _violation(self, reason: str) -> None:
        """The MTA broke the protocol: log it, and end the session as if it had left."""
        self._queue.clear()
        self._out.append(MtaError(f"protocol error from MTA: {reason}", fatal=True))
        self._close_session()

    # ------------------------------------------------------------ plumbing

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _send(
        self,
        child: ChildConversation,
        message: m.CommandMessage,
        stage: Stage,
        expect_reply: bool = False,
    ) -> None:
        self._out.append(ToChild(child.index, message, expect_reply, stage))
        # libmilter takes any command out of a state a CONNECT may follow, until its answer
        # says otherwise (ChildConversation.answer); QUIT_NC leads back only where it is
        # honoured (anywhere else libmilter falls back to HELO: mmd.engine.reuse)
        if type(message) is m.QuitNewConnection and child.rest is Rest.ANSWERED:
            child.rest = Rest.UNTOUCHED
        else:
            child.rest = Rest.BUSY
        if expect_reply:
            child.awaiting = stage

    def _send_macros(self, child: ChildConversation, code: bytes) -> None:
        macro = self._macros.get(code)
        extras = child.extra_macros
        extra = extras.get(code) if extras else None
        if extra:
            pairs = macro.macros + extra if macro is not None else extra
            self._out.append(ToChild(child.index, m.Macro(code, pairs), False, self._stage))
        elif macro is not None and macro.macros:
            # the MTA's own message: every child gets the same object, encoded once
            self._out.append(ToChild(child.index, macro, False, self._stage))

    def _drain(self) -> None:
        queue = self._queue
        while queue and self._phase in READY:
            self._handle(queue.pop(0))

    def _handle(self, message: m.CommandMessage) -> None:
        if isinstance(message, m.Macro):
            self._macros[message.command] = message
            unmerged = self._unmerged = (*self._unmerged, message)
            if len(unmerged) >= _UNMERGED_KEPT:  # an MTA sending MACROs and nothing else
                self._merge_macros()
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
        elif self._phase is Phase.NEW:
            # an MTA that skipped OPTNEG: nothing sensible to do but refuse
            self._out.append(ToMta(m.Tempfail()))
            self._violation(f"{type(message).__name__} before the option negotiation")
        elif isinstance(message, m.Header | m.EndOfHeaders | m.Body):
            self._buffer(message)
        elif isinstance(message, m.EndOfMessage):
            self._end_of_message(message)
        elif isinstance(message, m.Abort):
            # the session's last stage stays the protocol stage before ABORT, as in the
            # classic statistics line: Postfix sends ABORT after every message
            self._end_message()
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
        self._move(Trigger.OFFER)
        child_offer = self._child_offer = offer_to_children(offer)
        links = self._links
        for child in self.conversations:
            if child.failed:
                continue
            kept = (
                links(child.index, child_offer)
                if links is not None and child.settings.reuse
                else None
            )
            if kept is not None:
                # a kept connection: libmilter holds to its first OPTNEG, asked no more
                child.resume(kept, int(offer.actions))
                self._answer_received(kept.answer)
            else:
                self._send(child, child_offer, Stage.NEGOTIATE, expect_reply=True)
        self._waiting = sum(1 for c in self.conversations if c.awaiting is Stage.NEGOTIATE)
        if self._waiting == 0:
            self._finish_negotiation()

    def _on_negotiated(self, child: ChildConversation, reply: m.ReplyMessage) -> None:
        assert self._offer is not None
        child.negotiated(reply, int(self._offer.actions))
        assert isinstance(reply, m.Negotiate)
        if self._links is not None and self._child_offer is not None and child.settings.reuse:
            child.options = reusable(self._child_offer, reply)
        self._answer_received(reply)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish_negotiation()

    def _answer_received(self, answer: m.Negotiate) -> None:
        answers = self._answers
        if answers is None:
            answers = self._answers = []
        answers.append(answer)

    def _finish_negotiation(self) -> None:
        assert self._offer is not None
        merged = merge_answers(self._offer, self._answers or (), self.settings.needed_macros)
        # the connections hold what they need (ChildConversation); of the MTA's offer only
        # that there was one (a second is refused)
        self._answers = self._child_offer = None
        self._offer = _NEGOTIATED
        self._mta_steps = int(merged.steps)
        self._out.append(ToMta(merged))
        self._move(Trigger.NEGOTIATED)

    # ------------------------------------------------------------ envelope stages

    def _envelope(self, command: m.CommandMessage) -> None:
        info = STAGES[type(command)]
        stage = info.stage
        self._learn(command)
        self._begin_stage(stage)
        rejected_recipient = stage is Stage.RCPT and self.facts.macros.get("rcpt_mailer") == "error"
        for child in self.conversations:
            if not self._takes_part(child, stage):
                continue
            if not child.wants(info):
                continue
            if rejected_recipient and not child.wants_rejected_recipients():
                continue
            self._send_macros(child, info.code)
            expect = child.replies(info)
            self._send(child, command, stage, expect_reply=expect)
            child.last_stage = stage
            if stage is Stage.MAIL:
                child.in_transaction = True
            if expect:
                self._waiting += 1
        if stage is Stage.DATA:
            self.transaction.saw_data = True
        if self._waiting:
            self._move(Trigger.COMMAND)
        else:
            self._finish_envelope()

    def _learn(self, command: m.CommandMessage) -> None:
        facts = self._facts
        if isinstance(command, m.Connect):
            facts.client_name = command.hostname
            facts.client_address = command.address
            facts.client_port = command.port
            facts.family = _FAMILIES[command.family]
        elif isinstance(command, m.Helo):
            facts.helo = command.name
        elif isinstance(command, m.Mail):
            self._new_transaction(mail=True)
            facts.sender = command.args[0].strip("<>") if command.args else ""
        elif isinstance(command, m.Rcpt):
            self.transaction.recipients.append(command.args[0].strip("<>") if command.args else "")

    def _begin_stage(self, stage: Stage) -> None:
        self._stage = stage
        self._waiting = 0
        owed = self._owed
        self._verdicts = owed if owed is not None else []
        self._owed = None
        self._reply_codes = None

    def _takes_part(self, child: ChildConversation, stage: Stage) -> bool:
        """Whether ``child`` gets ``stage``; asks its conditions first."""
        if not child.in_message():
            return False
        conditions = child.settings.conditions
        if not conditions:
            return True
        code = macro_code(stage)
        extras = child.extra_macros
        if extras:
            extras.pop(code, None)
        facts = self.facts
        for condition in conditions:
            decision = condition.decide(stage, facts)
            if decision is None:
                continue
            if not decision.apply:
                child.leave(stage, Left.CONDITION)
                self._out.append(ConditionSkipped(child.index, child.name, stage, decision.reason))
                return False
            if decision.macros:
                if extras is None:
                    extras = child.extra_macros = {}
                extras[code] = extras.get(code, ()) + decision.macros
        return True

    def _on_envelope_reply(
        self, child: ChildConversation, stage: Stage, reply: m.ReplyMessage
    ) -> None:
        verdict = child.answer(stage, reply)
        if verdict is None:  # a change before end-of-message is refused by answer()
            return
        if verdict is Verdict.SKIP:
            verdict = Verdict.CONTINUE
        verdict = self._count(child, stage, verdict, reply)
        if verdict is Verdict.ACCEPT:
            child.leave(stage, Left.ACCEPTED)
        self._verdicts.append(verdict)
        self._waiting -= 1
        if self._waiting == 0:
            self._finish_envelope()

    def _finish_envelope(self) -> None:
        stage = self._stage
        merged = self._merge(self._children_left_message())
        if not self._mta_steps & BY_STAGE[stage].no_reply:
            self._out.append(ToMta(reply_for(merged, self._reply_codes or ())))
        self._move(Trigger.ANSWERED)
        if merged in FINAL_NEGATIVE:
            if stage is Stage.RCPT and merged is not Verdict.DISCARD:
                recipients = self.transaction.recipients
                if recipients:
                    recipients.pop()
                # the session's status until a message ends: a session whose only recipient
                # was refused (greylisting's tempfail, ...) counts as refused, not as pass
                self._session_status = merged
            else:
                self._session_status = merged
                self._end_message()
        elif merged is Verdict.ACCEPT:
            self._session_status = merged

    def _children_left_message(self) -> bool:
        return not any(c.in_message() for c in self.conversations)

    def _merge(self, nobody_left: bool) -> Verdict:
        merged = max(self._verdicts, default=Verdict.NO_CHANGE)
        if merged in FINAL_NEGATIVE:
            return merged
        if nobody_left:
            if all(c.failed for c in self.conversations):
                return self.settings.fallback
            return Verdict.ACCEPT
        return Verdict.CONTINUE

    # ------------------------------------------------------------ message stages

    def _new_transaction(self, mail: bool = False) -> None:
        """The message is over: a fresh transaction (at MAIL, else made on first use),
        every child takes part again."""
        self._close_transaction()
        if mail:
            self._transaction = Transaction(self._facts, self._body_factory)
        else:
            self._facts.reset_message()  # what a transaction's start does to the facts
        self._replay_queue = None
        self._replaying = None
        self._script = None
        self._answer = None
        for child in self.conversations:
            child.new_message()

    def _close_transaction(self) -> None:
        transaction = self._transaction
        if transaction is not None:
            transaction.close()
            self._transaction = None

    def _buffer(self, message: m.Header | m.EndOfHeaders | m.Body) -> None:
        info = STAGES[type(message)]
        self._stage = info.stage
        if isinstance(message, m.Header):
            self.transaction.headers.append((message.name, message.value))
        elif isinstance(message, m.Body):
            self._keep_body(message.chunk)
        if not self._mta_steps & info.no_reply:
            self._out.append(ToMta(m.Continue()))

    def _keep_body(self, chunk: bytes) -> None:
        error = self.transaction.keep_body(chunk)
        if error:
            self._out.append(MtaError(error))

    def _end_of_message(self, message: m.EndOfMessage) -> None:
        if message.chunk:
            self._keep_body(message.chunk)
        self._begin_stage(Stage.END_OF_MESSAGE)
        transaction = self.transaction
        if transaction.spool_error:
            self._out.append(ToMta(m.Tempfail()))
            self._session_status = Verdict.TEMPFAIL
            self._end_message()
            return
        self._move(Trigger.END_OF_MESSAGE)
        transaction.begin_replay()
        self._replay_queue = [c for c in self.conversations if c.in_message()]
        self._next_child()

    def _next_child(self) -> None:
        while self._replay_queue:  # emptied (None) when the message ends on the way
            child = self._replay_queue.pop(0)
            if not child.in_message() or not self._applies_to_message(child):
                continue
            self._replaying = child
            self._script = self._replay_script(child)
            if self._pump(child):
                return
        self._replaying = None
        self._finish_message()

    def _applies_to_message(self, child: ChildConversation) -> bool:
        # DATA is synthesised when the MTA sent none: its conditions still decide
        stages = _MESSAGE_STAGES if self.transaction.saw_data else _MESSAGE_STAGES_WITH_DATA
        return all(self._takes_part(child, stage) for stage in stages)

    def _replay_script(self, child: ChildConversation) -> Script:
        """What ``child`` gets at end-of-message: (command, stage, expects a reply)."""
        transaction = self.transaction
        if not transaction.saw_data and child.wants(_DATA):
            self._send_macros(child, _DATA.code)
            yield m.Data(), Stage.DATA, child.replies(_DATA)
        if child.wants(_HEADER):
            expect = child.replies(_HEADER)
            adapt = self._header_adapters(child)[0]
            for name, value in transaction.working.items():
                yield m.Header(name, adapt(value)), Stage.HEADER, expect
        if child.wants(_END_OF_HEADERS):
            self._send_macros(child, _END_OF_HEADERS.code)
            yield m.EndOfHeaders(), Stage.END_OF_HEADERS, child.replies(_END_OF_HEADERS)
        body = transaction.current_body()
        if child.wants(_BODY) and body is not None:
            expect = child.replies(_BODY)
            for chunk in body.chunks(self.settings.chunk_size):
                if child.body_skipped:
                    break
                yield m.Body(chunk), Stage.BODY, expect
        self._send_macros(child, _END_OF_MESSAGE.code)
        yield m.EndOfMessage(), Stage.END_OF_MESSAGE, True

    def _pump(self, child: ChildConversation) -> bool:
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

    def _on_replay_reply(
        self, child: ChildConversation, stage: Stage, reply: m.ReplyMessage
    ) -> None:
        verdict = child.answer(stage, reply)
        if verdict is None:  # a change it may make: held until its verdict
            if not child.settings.evaluation_mode:
                self._hold(child, reply)  # type: ignore[arg-type]
            return
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
            child.message_left = Left.ACCEPTED
        changes = child.changes
        if changes:
            child.changes = ()
            for change in changes:
                self._apply(child, change)
        self._child_done_with_message(child)

    def _child_done_with_message(self, child: ChildConversation) -> None:
        if child.last_stage is Stage.END_OF_MESSAGE:
            child.in_transaction = False
        self._script = None
        child.draining = False
        self.transaction.settle_body(child.index, child.failed)
        if any(v in FINAL_NEGATIVE for v in self._verdicts):
            self._replay_queue = None
        self._next_child()

    def _hold(self, child: ChildConversation, change: m.Modification) -> None:
        """Keep a change until the child's verdict; a new body goes to its own store."""
        if not isinstance(change, m.ReplaceBody):
            child.hold_change(change)
            return
        try:
            self.transaction.hold_body(child.index, change.chunk)
        except OSError as error:
            self._out.append(MtaError(f"cannot keep {child.name}'s new body: {error}"))
            self._fail(child, f"its new body cannot be kept: {error}")

    def _apply(self, child: ChildConversation, change: m.Modification) -> None:
        try:
            if not self.transaction.apply(change, self._header_adapters(child)[1]):
                self._out.append(ToMta(change))  # recipients: forwarded as they come
        except HeaderError as error:
            child.reason = str(error)

    def _finish_message(self) -> None:
        merged = self._merge(self._children_left_message())
        self._session_status = merged if merged is not Verdict.CONTINUE else Verdict.NO_CHANGE
        transaction = self.transaction
        if merged not in FINAL_NEGATIVE and transaction.quarantine is not None:
            self._quarantined = True
        self._answer = transaction.answer(
            merged, self._reply_codes or (), self.settings.chunk_size
        )
        self._pump_answer()

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
        self._move(Trigger.ANSWERED)
        self._end_message()

    # ------------------------------------------------------------ ends

    def _end_message(self) -> None:
        """The message is over for everybody: reset children still inside it."""
        for child in self.conversations:
            if child.in_transaction and not child.failed:
                self._send(child, m.Abort(), Stage.ABORT)
            child.in_transaction = False
        self._new_transaction()

    def _quit(self) -> None:
        for child in self.conversations:
            if not child.failed and not self._release(child):
                self._send(child, m.Quit(), Stage.QUIT)
                self._out.append(CloseChild(child.index))
        self._close_transaction()
        self._answer = None
        self._links = None  # the adapter's bound method: no cycle left for the GC
        self._finish_session(self._session_status)
        self._move(Trigger.CLOSE)

    def _release(self, child: ChildConversation) -> bool:
        """The MTA connection ends: hand the child's connection on for reuse where
        libmilter would take a CONNECT next (mmd.engine.reuse); False: close it."""
        if self._links is None:
            return False
        options = child.reusable()
        if options is None:
            return False
        self._out.append(ReuseChild(child.index, options, child.rest is Rest.ANSWERED))
        child.rest = Rest.UNTOUCHED
        return True

    def _quit_new_connection(self) -> None:
        for child in self.conversations:
            # a child untouched since OPTNEG (or the last QUIT_NC) takes CONNECT as it is;
            # QUIT_NC would move libmilter to its HELO state, where CONNECT is ignored
            if not child.failed and child.rest is not Rest.UNTOUCHED:
                self._send(child, m.QuitNewConnection(), Stage.QUIT)
        self._finish_session(self._session_status)
        for child in self.conversations:
            child.new_connection()
        self._facts = SessionFacts(active_sessions=self._facts.active_sessions)
        self._macros = {}
        self._unmerged = ()
        self._session_status = Verdict.NO_CHANGE
        self._quarantined = False
        self._new_transaction()

    def _finish_session(self, status: Verdict, disconnected: bool = False) -> None:
        for child in self.conversations:
            self._report(child)
        label = "quarantine" if self._quarantined and status not in FINAL_NEGATIVE else status.label
        self._out.append(SessionFinished(self._stage, label, disconnected))

    def _report(self, child: ChildConversation) -> None:
        record = child.record()
        if record is not None:
            self._out.append(record)

    # ------------------------------------------------------------ verdicts and failures

    def _count(
        self, child: ChildConversation, stage: Stage, verdict: Verdict, reply: m.ReplyMessage
    ) -> Verdict:
        """Record what the child said; returns what it counts as."""
        counted = child.count(stage, verdict)
        if counted is verdict and isinstance(reply, m.ReplyCode):
            codes = self._reply_codes
            if codes is None:
                self._reply_codes = [reply]
            else:
                codes.append(reply)
        return counted

    def _fail(self, child: ChildConversation, reason: str) -> None:
        """The child is out of the session; its fallback counts once as its answer."""
        waiting_on, draining = child.fail(reason)
        self._out.append(CloseChild(child.index))
        self._report(child)
        fallback = child.settings.fallback
        phase = self._phase
        if waiting_on is Stage.NEGOTIATE or phase not in (Phase.ENVELOPE, Phase.REPLAY):
            if fallback is not Verdict.ACCEPT:
                if self._owed is None:
                    self._owed = [fallback]
                else:
                    self._owed.append(fallback)
        else:
            self._verdicts.append(fallback)
        if waiting_on is None:
            if draining and phase is Phase.REPLAY and self._replaying is child:
                self._child_done_with_message(child)
            return
        if waiting_on is Stage.NEGOTIATE:
            self._waiting -= 1
            if self._waiting == 0:
                self._finish_negotiation()
        elif phase is Phase.REPLAY:
            self._child_done_with_message(child)
        else:
            self._waiting -= 1
            if self._waiting == 0:
                self._finish_envelope()

    # ------------------------------------------------------------ leading space

    def _header_adapters(
        self, child: ChildConversation
    ) -> tuple[Callable[[str], str], Callable[[str], str]]:
        """(to the child, from the child): header values gain or lose the separator
        space where the MTA and the child disagree on SMFIP_HDR_LEADSPC."""
        mta = bool(self._mta_steps & _HEADER_LEADING_SPACE)
        if mta == child.leading_space:
            return _same, _same
        return (_strip_space, _add_space) if mta else (_add_space, _strip_space)


def _strip_space(value: str) -> str:
    return value[1:] if value.startswith(" ") else value


def _add_space(value: str) -> str:
    return " " + value


def _same(value: str) -> str:
    return value
