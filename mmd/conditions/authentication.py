"""Authenticated / Unauthenticated: split SMTP AUTH users from the rest.

Decided at MAIL, the first stage where the MTA sends the SASL macros. Postfix
sends ``{auth_type}`` and ``{auth_authen}`` at MAIL by default
(``milter_mail_macros``); when the MTA side negotiates a macro list, the
engine must ask for them (see ``needed_macros``).
"""

from __future__ import annotations

from mmd.engine.applicability import Decision, SessionFacts
from mmd.engine.stages import Stage

AUTH_MACROS: tuple[str, ...] = ("auth_type", "auth_authen")


def auth_evidence(facts: SessionFacts) -> str | None:
    """``{name}=value`` of the first non-empty SASL macro, None when not authenticated."""
    for macro in AUTH_MACROS:
        value = facts.macros.get(macro)
        if value:
            return f"{{{macro}}}={value}"
    return None


class Authentication:
    """Apply the child only to authenticated (or only to unauthenticated) senders."""

    __slots__ = ("name", "want_authenticated")

    stages: frozenset[Stage] = frozenset({Stage.MAIL})
    needed_macros: tuple[tuple[Stage, str], ...] = tuple((Stage.MAIL, m) for m in AUTH_MACROS)

    def __init__(self, *, want_authenticated: bool, name: str | None = None) -> None:
        self.want_authenticated = want_authenticated
        self.name = name or ("Authenticated" if want_authenticated else "Unauthenticated")

    def decide(self, stage: Stage, facts: SessionFacts) -> Decision | None:
        if stage is not Stage.MAIL:
            return None
        evidence = auth_evidence(facts)
        if evidence is not None:
            return Decision(
                self.want_authenticated, reason=f"authentication: authenticated ({evidence})"
            )
        return Decision(
            not self.want_authenticated,
            reason="authentication: not authenticated (no {auth_type} or {auth_authen})",
        )


def authenticated() -> Authentication:
    return Authentication(want_authenticated=True)


def unauthenticated() -> Authentication:
    return Authentication(want_authenticated=False)
