"""Restrict Accounts, replayed the way the engine drives a child through a message.

``run`` plays one message: it asks the condition before MAIL, before each RCPT
(with the recipient appended, as the engine does) and before DATA, and stops
at the first ``apply=False`` exactly like the engine: a stopped child gets no
more commands of that message. It returns what the child received.
"""

from __future__ import annotations

import pytest

from mmd.conditions.restrict_accounts import MatchOn, RecipientMode, RestrictAccounts
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

ACCOUNTS = ("alice@example.com", "example.org", ".lists.example.net", "/^abuse@/")


def run(
    condition: RestrictAccounts, sender: str, recipients: list[str]
) -> tuple[list[str], str | None]:
    """(commands the child received, reason of the stop or None)."""
    facts = SessionFacts(sender=sender)
    received: list[str] = []
    decision = condition.decide(Stage.MAIL, facts)
    if decision is not None and not decision.apply:
        return received, decision.reason
    received.append(f"MAIL {sender}")
    for recipient in recipients:
        facts.recipients.append(recipient)
        decision = condition.decide(Stage.RCPT, facts)
        if decision is not None and not decision.apply:
            return received, decision.reason
        received.append(f"RCPT {recipient}")
    decision = condition.decide(Stage.DATA, facts)
    if decision is not None and not decision.apply:
        return received, decision.reason
    received.append("DATA")
    return received, None


def make(match_on: MatchOn = "recipient", recipients: RecipientMode = "any") -> RestrictAccounts:
    return RestrictAccounts(accounts=ACCOUNTS, match_on=match_on, recipients=recipients)


S = "<s@example.com>"
A = "<alice@example.com>"  # listed by address
B = "<bob@example.com>"  # not listed
C = "<carol@Example.ORG>"  # listed by domain
D = "<dave@x.lists.example.net>"  # listed by subdomain


# (mode, recipients, commands the child gets, reason of the stop or None)
CASES: list[tuple[RecipientMode, list[str], list[str], str | None]] = [
    ("any", [A], [f"MAIL {S}", f"RCPT {A}", "DATA"], None),
    ("any", [B], [f"MAIL {S}", f"RCPT {B}"], "no recipient listed"),
    ("any", [A, B], [f"MAIL {S}", f"RCPT {A}", f"RCPT {B}", "DATA"], None),
    ("any", [B, A], [f"MAIL {S}", f"RCPT {B}", f"RCPT {A}", "DATA"], None),
    ("any", [B, B], [f"MAIL {S}", f"RCPT {B}", f"RCPT {B}"], "no recipient listed"),
    ("any", [C, D], [f"MAIL {S}", f"RCPT {C}", f"RCPT {D}", "DATA"], None),
    ("all", [A], [f"MAIL {S}", f"RCPT {A}", "DATA"], None),
    ("all", [A, C], [f"MAIL {S}", f"RCPT {A}", f"RCPT {C}", "DATA"], None),
    ("all", [A, B], [f"MAIL {S}", f"RCPT {A}"], "recipient bob@example.com not listed"),
    ("all", [B, A], [f"MAIL {S}"], "recipient bob@example.com not listed"),
]


@pytest.mark.parametrize(("mode", "recipients", "received", "stop"), CASES)
def test_per_recipient(
    mode: RecipientMode, recipients: list[str], received: list[str], stop: str | None
) -> None:
    got, reason = run(make(recipients=mode), S, recipients)
    assert got == received
    if stop is None:
        assert reason is None
    else:
        assert reason is not None and stop in reason


def test_match_is_sticky_for_the_message() -> None:
    condition = make()
    facts = SessionFacts(sender=S, recipients=[A])
    decision = condition.decide(Stage.RCPT, facts)
    assert decision is not None and decision.apply
    assert "recipient alice@example.com matched alice@example.com" in decision.reason
    facts.recipients.append(B)
    assert condition.decide(Stage.RCPT, facts) is None  # B cannot undo A
    decision = condition.decide(Stage.DATA, facts)
    assert decision is not None and decision.apply


def test_next_message_is_decided_afresh() -> None:
    condition = make()
    facts = SessionFacts(sender=S, recipients=[A])
    decision = condition.decide(Stage.DATA, facts)
    assert decision is not None and decision.apply
    facts.reset_message()
    facts.sender = S
    facts.recipients.append(B)
    decision = condition.decide(Stage.DATA, facts)
    assert decision is not None and not decision.apply


@pytest.mark.parametrize(
    ("sender", "applied", "because"),
    [
        ("<alice@example.com>", True, "sender alice@example.com matched alice@example.com"),
        ("<ABUSE@anywhere.example>", True, "matched /^abuse@/"),
        ("<x@example.org>", True, "matched example.org"),
        ("<bob@example.com>", False, "sender bob@example.com not listed"),
        ("<>", False, "sender <> not listed"),
    ],
)
def test_match_on_sender(sender: str, applied: bool, because: str) -> None:
    condition = make(match_on="sender")
    decision = condition.decide(Stage.MAIL, SessionFacts(sender=sender))
    assert decision is not None
    assert decision.apply is applied
    assert because in decision.reason
    # the sender mode has no opinion on recipients
    facts = SessionFacts(sender=sender, recipients=["<bob@example.com>"])
    assert condition.decide(Stage.RCPT, facts) is None
    assert condition.decide(Stage.DATA, facts) is None


@pytest.mark.parametrize("stage", [s for s in Stage if s not in (Stage.RCPT, Stage.DATA)])
def test_recipient_mode_decides_only_at_rcpt_and_data(stage: Stage) -> None:
    facts = SessionFacts(sender=S, recipients=[B])
    assert make().decide(stage, facts) is None
    assert make(recipients="all").decide(stage, facts) is None
