from __future__ import annotations

import pytest

from mmd.conditions.trusted_domain import TrustedDomain
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

YES = (("{trusted_domain}", "yes"),)

# (sender, trusted entry or None)
DEFAULT_CASES: list[tuple[str, str | None]] = [
    ("<alice@gmail.com>", "gmail.com"),
    ("alice@gmail.com", "gmail.com"),
    ("<Bob@GMail.COM>", "gmail.com"),
    ("<c@hotmail.com>", "hotmail.com"),
    ("<d@msn.com>", "msn.com"),
    ("<e@yahoo.co.jp>", "yahoo.co.jp"),
    ("<f@softbank.ne.jp>", "softbank.ne.jp"),
    ("<g@ezweb.ne.jp>", "ezweb.ne.jp"),
    ("<h@docomo.ne.jp>", "docomo.ne.jp"),
    ("<i@mail.gmail.com>", None),  # exact domains only
    ("<j@gmail.com.evil.example>", None),
    ("<k@example.com>", None),
    ("<>", None),
    ("", None),
    ("<postmaster>", None),
]


@pytest.mark.parametrize(("sender", "entry"), DEFAULT_CASES)
def test_default_list(sender: str, entry: str | None) -> None:
    decision = TrustedDomain().decide(Stage.MAIL, SessionFacts(sender=sender))
    if entry is None:
        assert decision is None
        return
    assert decision is not None
    assert decision.apply is True  # never stops a child
    assert decision.macros == YES
    assert f"matched {entry}" in decision.reason


def test_suffix_and_regex_entries() -> None:
    condition = TrustedDomain(domains=[".example.org", "/^mail[0-9]+\\.example\\.net$/"])
    cases = {
        "<a@lists.example.org>": ".example.org",
        "<a@MAIL7.example.net>": "/^mail[0-9]+\\.example\\.net$/",
        "<a@example.org>": None,
        "<a@mail.example.net>": None,
    }
    for sender, entry in cases.items():
        decision = condition.decide(Stage.MAIL, SessionFacts(sender=sender))
        if entry is None:
            assert decision is None, sender
        else:
            assert decision is not None and decision.macros == YES
            assert f"matched {entry}" in decision.reason


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.MAIL])
def test_only_mail_decides(stage: Stage) -> None:
    assert TrustedDomain().decide(stage, SessionFacts(sender="<a@gmail.com>")) is None
