"""Restrict Accounts: apply the child only to mail for (or from) listed accounts.

Typical use: run a costly or opt-in filter for some mailboxes or domains only.

Theory of operation. A condition object is shared by every session, so it
keeps no state: everything it needs is in ``SessionFacts`` (``recipients``
holds the recipients accepted so far, the current one last). The engine
contract allows a child to be taken out, never put back: once stopped at RCPT
or DATA it gets nothing more of that message. Hence, per recipient:

``any`` (default): the child is applied when at least one recipient is listed.
    At RCPT a listed recipient decides "apply" (and the later recipients
    cannot undo it); an unlisted one gives no opinion, because a listed one
    may still follow: the child does receive that RCPT. At DATA the child is
    stopped when no accepted recipient was listed.
``all`` (the reference's behaviour): the child is applied only when every
    recipient is listed. At RCPT the first unlisted recipient stops the
    child for the rest of the message (it does not receive that RCPT).
With ``match_on = "sender"`` the decision is made once at MAIL instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from mmd.conditions.matching import AddressMatcher, bare_address
from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage

MatchOn = Literal["recipient", "sender"]
RecipientMode = Literal["any", "all"]


class RestrictAccounts:
    __slots__ = ("_accounts", "_handlers", "match_on", "name", "recipients")

    needed_macros: tuple[tuple[Stage, str], ...] = ()

    def __init__(
        self,
        *,
        accounts: Iterable[str],
        match_on: MatchOn = "recipient",
        recipients: RecipientMode = "any",
        name: str = "Restrict Accounts",
    ) -> None:
        self.name = name
        self._accounts = AddressMatcher(accounts)
        self.match_on: MatchOn = match_on
        self.recipients: RecipientMode = recipients
        handlers: dict[Stage, Callable[[SessionFacts], Decision | None]]
        if match_on == "sender":
            handlers = {Stage.MAIL: self._decide_sender}
        else:
            handlers = {Stage.RCPT: self._decide_rcpt, Stage.DATA: self._decide_data}
        self._handlers = handlers

    @property
    def stages(self) -> frozenset[Stage]:
        return frozenset(self._handlers)

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        handler = self._handlers.get(stage)
        return handler(facts) if handler is not None else None

    def _decide_sender(self, facts: SessionFacts) -> Decision:
        sender = bare_address(facts.sender) or "<>"
        entry = self._accounts.find(facts.sender) if facts.sender else None
        if entry is None:
            return Decision(False, reason=f"restrict accounts: sender {sender} not listed")
        return Decision(True, reason=f"restrict accounts: sender {sender} matched {entry}")

    def _decide_rcpt(self, facts: SessionFacts) -> Decision | None:
        if not facts.recipients:
            return None
        current = facts.recipients[-1]
        entry = self._accounts.find(current)
        if self.recipients == "any":
            if entry is None:
                return None  # a listed recipient may still follow
            return Decision(
                True,
                reason=f"restrict accounts: recipient {bare_address(current)} matched {entry}",
            )
        if entry is None:
            return Decision(
                False, reason=f"restrict accounts: recipient {bare_address(current)} not listed"
            )
        return None  # an unlisted recipient may still follow

    def _decide_data(self, facts: SessionFacts) -> Decision:
        if self.recipients == "any":
            for recipient in facts.recipients:
                entry = self._accounts.find(recipient)
                if entry is not None:
                    return Decision(
                        True,
                        reason=(
                            f"restrict accounts: recipient {bare_address(recipient)} "
                            f"matched {entry}"
                        ),
                    )
            return Decision(False, reason="restrict accounts: no recipient listed")
        for recipient in facts.recipients:
            if self._accounts.find(recipient) is None:
                return Decision(
                    False,
                    reason=f"restrict accounts: recipient {bare_address(recipient)} not listed",
                )
        if not facts.recipients:
            return Decision(False, reason="restrict accounts: no recipient listed")
        return Decision(True, reason="restrict accounts: every recipient listed")
