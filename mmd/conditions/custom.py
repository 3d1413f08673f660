"""Custom conditions: declarative rules from the configuration, no code.

A rule is evaluated at its stage only (at ``envelope-recipient`` before each
recipient; the engine asks the message stages once per message, with every
header known). All its clauses must hold for
the rule to match; inside one clause, any list entry may match. Then:

- ``effect = "apply"``: the child is applied only when the rule matches
  (and gets the rule's macros); otherwise it is stopped.
- ``effect = "skip"``: the child is stopped when the rule matches.
- ``effect = "mark"``: the child is never stopped; it gets the macros when
  the rule matches (like Trusted Domain).

A clause may only look at what the MTA has told by the rule's stage; the
configuration is rejected otherwise (e.g. ``sender`` at ``connect``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mmd.conditions.authentication import AUTH_MACROS, auth_evidence
from mmd.conditions.matching import AddressMatcher, NameMatcher, compile_regex, domain_of
from mmd.conditions.remote_network import NetworkList, parse_client_address
from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage

Effect = Literal["apply", "skip", "mark"]

# stages a custom rule may use, in session order
CUSTOM_STAGES: tuple[Stage, ...] = (
    Stage.CONNECT,
    Stage.HELO,
    Stage.MAIL,
    Stage.RCPT,
    Stage.DATA,
    Stage.HEADER,
    Stage.END_OF_HEADERS,
    Stage.BODY,
    Stage.END_OF_MESSAGE,
)
_ORDER = {stage: index for index, stage in enumerate(CUSTOM_STAGES)}

# the first stage at which each clause's data is known
CLAUSE_FIRST_STAGE: dict[str, Stage] = {
    "client_address": Stage.CONNECT,
    "client_name": Stage.CONNECT,
    "helo": Stage.HELO,
    "authenticated": Stage.MAIL,
    "sender": Stage.MAIL,
    "recipient_domain": Stage.RCPT,
    "header": Stage.HEADER,
}


@dataclass(frozen=True, slots=True)
class HeaderClause:
    """A header named ``name`` (any case) whose value matches ``regex`` (searched, any case)."""

    name: str
    regex: str


@dataclass(frozen=True, slots=True)
class CustomRule:
    """A rule as configured; ``None`` clauses are not checked."""

    name: str
    stage: Stage
    effect: Effect = "apply"
    client_address: tuple[str, ...] | None = None
    client_name: tuple[str, ...] | None = None
    helo: tuple[str, ...] | None = None
    authenticated: bool | None = None
    sender: tuple[str, ...] | None = None
    recipient_domain: tuple[str, ...] | None = None
    header: tuple[HeaderClause, ...] | None = None
    macros: tuple[tuple[str, str], ...] = ()

    def clauses(self) -> list[str]:
        return [key for key in CLAUSE_FIRST_STAGE if getattr(self, key) is not None]


def check_rule(rule: CustomRule) -> list[tuple[str, str]]:
    """Problems as ``(key, message)``; empty when the rule is usable."""
    problems: list[tuple[str, str]] = []
    if rule.stage not in _ORDER:
        names = ", ".join(stage.value for stage in CUSTOM_STAGES)
        problems.append(("stage", f"{rule.stage.value!r} is not one of {names}"))
        return problems
    for key in rule.clauses():
        first = CLAUSE_FIRST_STAGE[key]
        if _ORDER[rule.stage] < _ORDER[first]:
            problems.append(
                (key, f"not known at stage {rule.stage.value!r} (first known at {first.value!r})")
            )
    if rule.effect == "skip" and rule.macros:
        problems.append(("macros", 'a "skip" rule gives no macros'))
    if rule.effect == "mark" and not rule.macros:
        problems.append(("macros", 'a "mark" rule needs macros'))
    if not rule.clauses():
        problems.append(("match", "a rule needs at least one clause"))
    return problems


class _Clause:
    """One compiled clause: ``check`` says whether it holds and why."""

    __slots__ = ()

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        raise NotImplementedError


class _ClientAddress(_Clause):
    __slots__ = ("_networks",)

    def __init__(self, entries: Sequence[str]) -> None:
        self._networks = NetworkList(entries)

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        address = parse_client_address(facts.client_address)
        if address is not None:
            network = self._networks.find(address)
            if network is not None:
                return True, f"client_address {facts.client_address} in {network}"
        return False, f"client_address {facts.client_address or '(none)'} not listed"


class _NameClause(_Clause):
    __slots__ = ("_key", "_names")

    def __init__(self, key: str, entries: Sequence[str]) -> None:
        self._key = key
        self._names = NameMatcher(entries)

    def _value(self, facts: SessionFacts) -> str:
        return facts.client_name if self._key == "client_name" else facts.helo

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        value = self._value(facts)
        entry = self._names.find(value)
        if entry is None:
            return False, f"{self._key} {value!r} not listed"
        return True, f"{self._key} {value} matched {entry}"


class _Authenticated(_Clause):
    __slots__ = ("_want",)

    def __init__(self, want: bool) -> None:
        self._want = want

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        evidence = auth_evidence(facts)
        text = f"authenticated ({evidence})" if evidence else "not authenticated"
        return (evidence is not None) == self._want, text


class _Sender(_Clause):
    __slots__ = ("_addresses",)

    def __init__(self, entries: Sequence[str]) -> None:
        self._addresses = AddressMatcher(entries)

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        entry = self._addresses.find(facts.sender) if facts.sender else None
        if entry is None:
            return False, f"sender {facts.sender or '<>'} not listed"
        return True, f"sender {facts.sender} matched {entry}"


class _RecipientDomain(_Clause):
    """At RCPT the current recipient; later, any accepted recipient."""

    __slots__ = ("_domains",)

    def __init__(self, entries: Sequence[str]) -> None:
        self._domains = NameMatcher(entries)

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        candidates = facts.recipients[-1:] if stage is Stage.RCPT else facts.recipients
        for recipient in candidates:
            domain = domain_of(recipient)
            entry = self._domains.find(domain) if domain else None
            if entry is not None:
                return True, f"recipient {recipient} matched {entry}"
        shown = ", ".join(candidates) or "(none)"
        return False, f"recipient_domain not listed for {shown}"


class _Header(_Clause):
    __slots__ = ("_name", "_regex", "_shown")

    def __init__(self, clause: HeaderClause) -> None:
        self._name = clause.name.lower()
        self._regex: re.Pattern[str] = compile_regex(clause.regex)
        self._shown = f"header {clause.name} /{clause.regex}/"

    def check(self, stage: Stage, facts: SessionFacts) -> tuple[bool, str]:
        for name, value in facts.headers:
            if name.lower() == self._name and self._regex.search(value):
                return True, f"{self._shown} matched"
        return False, f"{self._shown} did not match"


def wire_macro_name(name: str) -> str:
    """``trusted`` -> ``{trusted}``; single letters and braced names stay."""
    name = name.strip()
    if len(name) <= 1 or (name.startswith("{") and name.endswith("}")):
        return name
    return "{" + name + "}"


class CustomCondition:
    """A compiled ``CustomRule``."""

    __slots__ = ("_clauses", "_macros", "effect", "name", "rule", "stage", "stages")

    def __init__(self, rule: CustomRule) -> None:
        problems = check_rule(rule)
        if problems:
            key, message = problems[0]
            raise ValueError(f"{key}: {message}")
        self.rule = rule
        self.name = rule.name
        self.stage = rule.stage
        self.stages = frozenset({rule.stage})
        self.effect: Effect = rule.effect
        self._macros = tuple((wire_macro_name(k), v) for k, v in rule.macros)
        clauses: list[_Clause] = []
        if rule.client_address is not None:
            clauses.append(_ClientAddress(rule.client_address))
        if rule.client_name is not None:
            clauses.append(_NameClause("client_name", rule.client_name))
        if rule.helo is not None:
            clauses.append(_NameClause("helo", rule.helo))
        if rule.authenticated is not None:
            clauses.append(_Authenticated(rule.authenticated))
        if rule.sender is not None:
            clauses.append(_Sender(rule.sender))
        if rule.recipient_domain is not None:
            clauses.append(_RecipientDomain(rule.recipient_domain))
        for header in rule.header or ():
            clauses.append(_Header(header))
        self._clauses = tuple(clauses)

    @property
    def needed_macros(self) -> tuple[tuple[Stage, str], ...]:
        if self.rule.authenticated is None:
            return ()
        return tuple((Stage.MAIL, macro) for macro in AUTH_MACROS)

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is not self.stage:
            return None
        details: list[str] = []
        for clause in self._clauses:
            holds, detail = clause.check(stage, facts)
            if not holds:
                if self.effect == "apply":
                    return Decision(False, reason=f"{self.name}: {detail}")
                return (
                    None
                    if self.effect == "mark"
                    else Decision(True, reason=f"{self.name}: {detail}")
                )
            details.append(detail)
        why = f"{self.name}: {', '.join(details)}"
        if self.effect == "skip":
            return Decision(False, reason=why)
        return Decision(True, macros=self._macros, reason=why)
