from __future__ import annotations

import pytest

from mmd.conditions.custom import CustomCondition, CustomRule, HeaderClause, check_rule
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

SESSION = SessionFacts(
    client_name="mx1.partner.example",
    client_address="10.1.2.3",
    family="inet",
    helo="mx1.partner.example",
    macros={"auth_type": "PLAIN"},
    sender="<news@Partner.Example>",
    recipients=["<a@example.com>", "<b@sales.example.org>"],
    headers=[("Subject", "hello"), ("X-Spam-Flag", "YES")],
)

# (rule, stage asked, applied or None for "no opinion", reason text)
CASES: list[tuple[CustomRule, Stage, bool | None, str]] = [
    (
        CustomRule("LAN", Stage.CONNECT, "skip", client_address=("10.0.0.0/8",)),
        Stage.CONNECT,
        False,
        "LAN: client_address 10.1.2.3 in 10.0.0.0/8",
    ),
    (
        CustomRule("LAN", Stage.CONNECT, "skip", client_address=("192.168.0.0/16",)),
        Stage.CONNECT,
        True,
        "client_address 10.1.2.3 not listed",
    ),
    (
        CustomRule("Partner", Stage.CONNECT, client_name=(".partner.example",)),
        Stage.CONNECT,
        True,
        "client_name mx1.partner.example matched .partner.example",
    ),
    (
        CustomRule("Partner", Stage.CONNECT, client_name=("/^mail\\d/",)),
        Stage.CONNECT,
        False,
        "client_name 'mx1.partner.example' not listed",
    ),
    (
        CustomRule("Helo", Stage.HELO, helo=("/^MX\\d\\./",)),
        Stage.HELO,
        True,
        "helo mx1.partner.example matched /^MX\\d\\./",
    ),
    (
        CustomRule("Auth", Stage.MAIL, "skip", authenticated=True),
        Stage.MAIL,
        False,
        "Auth: authenticated ({auth_type}=PLAIN)",
    ),
    (
        CustomRule("NoAuth", Stage.MAIL, authenticated=False),
        Stage.MAIL,
        False,
        "NoAuth: authenticated ({auth_type}=PLAIN)",
    ),
    (
        CustomRule("News", Stage.MAIL, sender=("partner.example",)),
        Stage.MAIL,
        True,
        "sender <news@Partner.Example> matched partner.example",
    ),
    (
        CustomRule("News", Stage.MAIL, sender=("/^bounce@/",)),
        Stage.MAIL,
        False,
        "sender <news@Partner.Example> not listed",
    ),
    # at RCPT the current (last) recipient only
    (
        CustomRule("Sales", Stage.RCPT, recipient_domain=(".example.org",)),
        Stage.RCPT,
        True,
        "recipient <b@sales.example.org> matched .example.org",
    ),
    (
        CustomRule("Com", Stage.RCPT, recipient_domain=("example.com",)),
        Stage.RCPT,
        False,
        "recipient_domain not listed for <b@sales.example.org>",
    ),
    # from DATA on: any recipient
    (
        CustomRule("Com", Stage.DATA, recipient_domain=("example.com",)),
        Stage.DATA,
        True,
        "recipient <a@example.com> matched example.com",
    ),
    (
        CustomRule(
            "Spam", Stage.END_OF_HEADERS, "skip", header=(HeaderClause("x-spam-flag", "^yes$"),)
        ),
        Stage.END_OF_HEADERS,
        False,
        "Spam: header x-spam-flag /^yes$/ matched",
    ),
    (
        CustomRule("Spam", Stage.END_OF_HEADERS, header=(HeaderClause("X-Virus", "."),)),
        Stage.END_OF_HEADERS,
        False,
        "header X-Virus /./ did not match",
    ),
    # all clauses must hold; the first that fails is named
    (
        CustomRule(
            "Both",
            Stage.MAIL,
            client_address=("10.0.0.0/8",),
            sender=("other.example",),
        ),
        Stage.MAIL,
        False,
        "Both: sender <news@Partner.Example> not listed",
    ),
    (
        CustomRule(
            "Both",
            Stage.MAIL,
            client_address=("10.0.0.0/8",),
            sender=("partner.example",),
            macros=(("partner", "yes"),),
        ),
        Stage.MAIL,
        True,
        "Both: client_address 10.1.2.3 in 10.0.0.0/8, sender <news@Partner.Example>",
    ),
    # mark never stops
    (
        CustomRule(
            "Mark", Stage.CONNECT, "mark", client_address=("10.0.0.0/8",), macros=(("{lan}", "1"),)
        ),
        Stage.CONNECT,
        True,
        "Mark: client_address",
    ),
    (
        CustomRule(
            "Mark", Stage.CONNECT, "mark", client_address=("::1/128",), macros=(("{lan}", "1"),)
        ),
        Stage.CONNECT,
        None,
        "",
    ),
    # other stages: no opinion
    (
        CustomRule("LAN", Stage.CONNECT, "skip", client_address=("10.0.0.0/8",)),
        Stage.HELO,
        None,
        "",
    ),
]


@pytest.mark.parametrize(("rule", "stage", "applied", "because"), CASES)
def test_rules(rule: CustomRule, stage: Stage, applied: bool | None, because: str) -> None:
    decision = CustomCondition(rule).decide(stage, SESSION)
    if applied is None:
        assert decision is None
        return
    assert decision is not None
    assert decision.apply is applied, decision.reason
    assert because in decision.reason, decision.reason


def test_macros_given_when_matched_with_wire_names() -> None:
    rule = CustomRule(
        "Both",
        Stage.MAIL,
        sender=("partner.example",),
        macros=(("partner", "yes"), ("{x}", "1"), ("i", "q")),
    )
    decision = CustomCondition(rule).decide(Stage.MAIL, SESSION)
    assert decision is not None
    assert decision.macros == (("{partner}", "yes"), ("{x}", "1"), ("i", "q"))


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (CustomRule("x", Stage.CONNECT, sender=("a.example",)), "sender"),
        (CustomRule("x", Stage.HELO, authenticated=True), "authenticated"),
        (CustomRule("x", Stage.MAIL, recipient_domain=("a.example",)), "recipient_domain"),
        (CustomRule("x", Stage.DATA, header=(HeaderClause("A", "b"),)), "header"),
        (CustomRule("x", Stage.CONNECT, helo=("a",)), "helo"),
        (CustomRule("x", Stage.QUIT, client_address=("10.0.0.0/8",)), "stage"),
        (
            CustomRule(
                "x", Stage.CONNECT, "skip", client_address=("10.0.0.0/8",), macros=(("a", "b"),)
            ),
            "macros",
        ),
        (CustomRule("x", Stage.CONNECT, "mark", client_address=("10.0.0.0/8",)), "macros"),
        (CustomRule("x", Stage.CONNECT), "match"),
    ],
)
def test_bad_rules(rule: CustomRule, problem: str) -> None:
    problems = check_rule(rule)
    assert [key for key, _ in problems][:1] == [problem]
    with pytest.raises(ValueError, match=problem):
        CustomCondition(rule)


def test_helo_may_be_checked_later() -> None:
    rule = CustomRule("x", Stage.END_OF_MESSAGE, helo=("mx1.partner.example",))
    assert check_rule(rule) == []
    decision = CustomCondition(rule).decide(Stage.END_OF_MESSAGE, SESSION)
    assert decision is not None and decision.apply
