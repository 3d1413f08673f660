"""Trusted Domain: tell the child that the sender's domain is a trusted one.

It never stops a child. milter-greylist uses the macro to skip greylisting
for big providers whose retries come from other addresses, and only when SPF
passes, so a forged sender gains nothing:
``sm_macro "trusted_domain" "{trusted_domain}" "yes"`` then
``racl whitelist sm_macro "trusted_domain" spf pass``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mmd.conditions.matching import NameMatcher, domain_of
from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage

DEFAULT_TRUSTED_DOMAINS: tuple[str, ...] = (
    "gmail.com",
    "hotmail.com",
    "msn.com",
    "yahoo.co.jp",
    "softbank.ne.jp",
    "ezweb.ne.jp",
    "docomo.ne.jp",
)

TRUSTED_DOMAIN_MACRO = "{trusted_domain}"


class TrustedDomain:
    """At MAIL, give ``{trusted_domain}=yes`` when the sender's domain is listed."""

    __slots__ = ("_domains", "_macros", "name")

    stages: frozenset[Stage] = frozenset({Stage.MAIL})
    needed_macros: tuple[tuple[Stage, str], ...] = ()

    def __init__(
        self,
        *,
        domains: Iterable[str] = DEFAULT_TRUSTED_DOMAINS,
        macro: str = TRUSTED_DOMAIN_MACRO,
        value: str = "yes",
        name: str = "Trusted Domain",
    ) -> None:
        self.name = name
        self._domains = NameMatcher(domains)
        self._macros = ((macro, value),)

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is not Stage.MAIL:
            return None
        domain = domain_of(facts.sender)
        if not domain:
            return None
        entry = self._domains.find(domain)
        if entry is None:
            return None
        return Decision(
            True, macros=self._macros, reason=f"trusted domain: {domain} matched {entry}"
        )
