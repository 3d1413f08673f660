from __future__ import annotations

import pytest

from mmd.conditions.authentication import Authentication, authenticated, unauthenticated
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

# (macros at MAIL, authenticated?, text of the reason)
CASES: list[tuple[dict[str, str], bool, str]] = [
    ({"auth_type": "PLAIN", "auth_authen": "alice"}, True, "{auth_type}=PLAIN"),
    ({"auth_authen": "bob"}, True, "{auth_authen}=bob"),
    ({"auth_type": "LOGIN"}, True, "{auth_type}=LOGIN"),
    ({}, False, "not authenticated"),
    ({"auth_type": "", "auth_authen": ""}, False, "not authenticated"),  # empty = not sent
    ({"auth_author": "carol", "i": "4ABC"}, False, "not authenticated"),
]


@pytest.mark.parametrize(("macros", "is_authenticated", "because"), CASES)
def test_both_conditions(macros: dict[str, str], is_authenticated: bool, because: str) -> None:
    facts = SessionFacts(macros=dict(macros))
    for condition, wanted in ((authenticated(), True), (unauthenticated(), False)):
        decision = condition.decide(Stage.MAIL, facts)
        assert decision is not None
        assert decision.apply is (is_authenticated == wanted), condition.name
        assert because in decision.reason


def test_names() -> None:
    assert authenticated().name == "Authenticated"
    assert unauthenticated().name == "Unauthenticated"


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.MAIL])
def test_only_mail_decides(stage: Stage) -> None:
    facts = SessionFacts(macros={"auth_type": "PLAIN"})
    assert Authentication(want_authenticated=True).decide(stage, facts) is None


def test_needs_the_sasl_macros_at_mail() -> None:
    assert set(unauthenticated().needed_macros) == {
        (Stage.MAIL, "auth_type"),
        (Stage.MAIL, "auth_authen"),
    }
