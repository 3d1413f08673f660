"""S25R (Selective SMTP Rejection): is the client an end-user line?

The point of S25R is to greylist (or otherwise treat harder) only clients
whose reverse name looks like a dial-up, DSL or cable pool, because real mail
servers rarely have such names. The rules are the published S25R rules plus
the two "no usable reverse name" cases. Order matters: the whitelist wins,
then any blacklist rule means "apply", otherwise the child is not applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mmd.conditions.matching import NameMatcher, check_name_entry, compile_regex, is_regex_entry
from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage

DEFAULT_WHITELIST: tuple[str, ...] = (
    ".google.com",
    ".obsmtp.com",
    ".smtp-out.amazonses.com",
    ".slack.com",
    ".mg.gitlab.com",
    ".sendgrid.net",
)


@dataclass(frozen=True, slots=True)
class BlacklistRule:
    """One blacklist rule; ``label`` is what reasons and docs call it."""

    label: str
    shown: str  # the rule as the docs print it (reference's Ruby spelling)
    regex: re.Pattern[str]


def _rule(label: str, pattern: str, shown: str, flags: int = 0) -> BlacklistRule:
    # re.ASCII: Ruby's \d is ASCII only; Python's str \d would take any digit.
    return BlacklistRule(label, shown, re.compile(pattern, flags | re.ASCII))


# Ruby \A and \z are Python \A and \Z; /i is re.IGNORECASE.
DEFAULT_BLACKLIST: tuple[BlacklistRule, ...] = (
    _rule("unknown", r"\Aunknown\Z", '"unknown"'),
    _rule("no-reverse-name", r"\A\[.+\]\Z", r"/\A\[.+\]\z/"),
    _rule("s25r-1", r"\A[^.]*\d[^\d.]+\d.*\.", r"/\A[^.]*\d[^\d.]+\d.*\./"),
    _rule("s25r-2", r"\A[^.]*\d{5}", r"/\A[^.]*\d{5}/"),
    _rule(
        "s25r-3",
        r"\A(?:[^.]+\.)?\d[^.]*\.[^.]+\..+\.[a-z]",
        r"/\A(?:[^.]+\.)?\d[^.]*\.[^.]+\..+\.[a-z]/i",
        re.IGNORECASE,
    ),
    _rule("s25r-4", r"\A[^.]*\d\.[^.]*\d-\d", r"/\A[^.]*\d\.[^.]*\d-\d/"),
    _rule("s25r-5", r"\A[^.]*\d\.[^.]*\d\.[^.]+\..+\.", r"/\A[^.]*\d\.[^.]*\d\.[^.]+\..+\./"),
    _rule(
        "s25r-6",
        r"\A(?:dhcp|dialup|ppp|[achrsvx]?dsl)[^.]*\d",
        r"/\A(?:dhcp|dialup|ppp|[achrsvx]?dsl)[^.]*\d/i",
        re.IGNORECASE,
    ),
)


def extra_blacklist_rules(entries: Iterable[str]) -> tuple[BlacklistRule, ...]:
    """User blacklist entries: ``/regex/`` (searched, case-insensitive) or a name."""
    rules: list[BlacklistRule] = []
    for number, entry in enumerate(entries, start=1):
        if is_regex_entry(entry):
            regex = compile_regex(entry[1:-1])
        else:
            # a plain entry follows the shared name-list spelling
            check_name_entry(entry)
            regex = _name_entry_regex(entry)
        rules.append(BlacklistRule(f"extra-{number}", entry, regex))
    return tuple(rules)


def _name_entry_regex(entry: str) -> re.Pattern[str]:
    name = entry.lower().rstrip(".")
    if name.startswith("."):
        return re.compile(re.escape(name) + r"\.?\Z", re.IGNORECASE)
    return re.compile(r"\A" + re.escape(name) + r"\.?\Z", re.IGNORECASE)


def _is_ipv4(facts: SessionFacts) -> bool:
    if facts.family == "inet":
        return True
    # an IPv4 client seen on a dual-stack socket
    return (
        facts.family == "inet6"
        and facts.client_address.lower().startswith("::ffff:")
        and ("." in facts.client_address)
    )


class S25R:
    """Apply the child only to clients whose reverse name looks like an end-user line."""

    __slots__ = ("_blacklist", "_whitelist", "ipv4_only", "name")

    stages: frozenset[Stage] = frozenset({Stage.CONNECT})
    needed_macros: tuple[tuple[Stage, str], ...] = ()

    def __init__(
        self,
        *,
        whitelist: Iterable[str] = DEFAULT_WHITELIST,
        blacklist: Iterable[BlacklistRule] = DEFAULT_BLACKLIST,
        ipv4_only: bool = True,
        name: str = "S25R",
    ) -> None:
        self.name = name
        self._whitelist = NameMatcher(whitelist)
        self._blacklist = tuple(blacklist)
        self.ipv4_only = ipv4_only

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is not Stage.CONNECT:
            return None
        host = facts.client_name
        if self.ipv4_only and not _is_ipv4(facts):
            return Decision(
                False, reason=f"s25r: not IPv4 ({facts.family or 'no family'}), treated as white"
            )
        entry = self._whitelist.find(host)
        if entry is not None:
            return Decision(False, reason=f"s25r: whitelist entry {entry} matched {host}")
        for rule in self._blacklist:
            if rule.regex.search(host):
                return Decision(
                    True, reason=f"s25r: blacklist rule {rule.label} {rule.shown} matched {host}"
                )
        return Decision(False, reason=f"s25r: no blacklist rule matched {host or '(empty name)'}")
