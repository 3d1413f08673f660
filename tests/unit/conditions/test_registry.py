from __future__ import annotations

from pathlib import Path

import pytest

from mmd.conditions import (
    BUILTIN_CONDITIONS,
    DEFAULT_CONDITIONS,
    ConditionConfigError,
    ConditionRegistry,
    ConditionSettings,
    UnknownConditionError,
    build_conditions,
    decision_stages,
    needed_macros,
    settings_from_table,
)
from mmd.conditions.custom import CustomRule
from mmd.conditions.settings import (
    RestrictAccountsSettings,
    StressSettings,
    TrustedDomainSettings,
)
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage


def test_every_builtin_builds_with_its_name() -> None:
    settings = ConditionSettings(
        restrict_accounts=RestrictAccountsSettings(accounts=("a@example.com",)),
        stress=StressSettings(threshold=10),
    )
    conditions = build_conditions(BUILTIN_CONDITIONS, settings)
    assert [c.name for c in conditions] == list(BUILTIN_CONDITIONS)


def test_unknown_condition_is_named() -> None:
    with pytest.raises(UnknownConditionError) as caught:
        build_conditions(["S25R", "S52R"], ConditionSettings())
    error = caught.value
    assert error.name == "S52R"
    assert error.key_path == "applicable_conditions[1]"
    assert "unknown applicable condition 'S52R'" in str(error)
    assert "S25R" in str(error) and "Remote Network" in str(error)
    assert isinstance(error, ConditionConfigError)


def test_custom_conditions_by_name() -> None:
    rule = CustomRule("LAN Relay", Stage.CONNECT, "skip", client_address=("10.0.0.0/8",))
    registry = ConditionRegistry(ConditionSettings(custom=(rule,)))
    assert "LAN Relay" in registry.names()
    (condition,) = registry.build(["LAN Relay"])
    decision = condition.decide(
        Stage.CONNECT, SessionFacts(family="inet", client_address="10.0.0.5")
    )
    assert decision is not None and decision.apply is False


def test_custom_may_not_shadow_builtin() -> None:
    rule = CustomRule("S25R", Stage.CONNECT, client_address=("10.0.0.0/8",))
    with pytest.raises(ConditionConfigError) as caught:
        ConditionRegistry(ConditionSettings(custom=(rule,)))
    assert caught.value.key_path == "conditions.custom[0].name"


def test_same_object_shared_and_duplicates_dropped() -> None:
    registry = ConditionRegistry()
    first = registry.build(["S25R", "Remote Network", "S25R"])
    second = registry.build(["Remote Network"])
    assert [c.name for c in first] == ["S25R", "Remote Network"]
    assert first[1] is second[0]


def test_reference_alias_trust() -> None:
    (condition,) = build_conditions(["Trust"])
    assert condition.name == "Trusted Domain"


def test_default_conditions_of_catalog_milters() -> None:
    assert DEFAULT_CONDITIONS["milter-greylist"] == (
        "S25R",
        "Remote Network",
        "Unauthenticated",
        "Trusted Domain",
        "Stress Notify",
    )
    assert DEFAULT_CONDITIONS["spamass-milter"] == (
        "Remote Network",
        "Unauthenticated",
        "No Stress",
    )
    assert DEFAULT_CONDITIONS["rspamd"] == DEFAULT_CONDITIONS["spamass-milter"]
    assert DEFAULT_CONDITIONS["clamav-milter"] == ()
    assert DEFAULT_CONDITIONS["opendkim"] == ()
    for names in DEFAULT_CONDITIONS.values():
        assert set(names) <= set(BUILTIN_CONDITIONS)
        # the defaults must build with default settings (no Restrict Accounts among them)
        build_conditions(names, ConditionSettings(stress=StressSettings(threshold=5)))


def test_restrict_accounts_without_accounts_is_an_error() -> None:
    with pytest.raises(ConditionConfigError) as caught:
        build_conditions(["Restrict Accounts"])
    assert caught.value.key_path == "conditions.restrict_accounts"
    # not used: no error
    build_conditions(["S25R"])


def test_trusted_domain_list_file(tmp_path: Path) -> None:
    listing = tmp_path / "trusted.list"
    listing.write_text(
        "# our partners\n\nPartner.Example\n  /^mail[0-9]+\\.example\\.net$/  \n.corp.example\n",
        encoding="utf-8",
    )
    settings = ConditionSettings(
        trusted_domain=TrustedDomainSettings(domains=(), files=(str(listing),))
    )
    (condition,) = build_conditions(["Trusted Domain"], settings)
    cases = {
        "<a@partner.example>": True,
        "<a@MAIL12.example.net>": True,
        "<a@x.corp.example>": True,
        "<a@gmail.com>": False,  # the default list was replaced
        "<a@our.partners>": False,  # the comment is not an entry
    }
    for sender, trusted in cases.items():
        decision = condition.decide(Stage.MAIL, SessionFacts(sender=sender))
        assert (decision is not None) is trusted, sender
        if decision is not None:
            assert decision.macros == (("{trusted_domain}", "yes"),)


def test_list_file_with_relative_path_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "trusted.list").write_text("partner.example\n", encoding="utf-8")
    settings = settings_from_table(
        {"trusted_domain": {"files": ["trusted.list"]}}, base_directory=tmp_path
    )
    (condition,) = build_conditions(["Trusted Domain"], settings)
    for sender in ("<a@partner.example>", "<a@gmail.com>"):
        decision = condition.decide(Stage.MAIL, SessionFacts(sender=sender))
        assert decision is not None, sender


def test_bad_list_file_line_names_file_and_line(tmp_path: Path) -> None:
    listing = tmp_path / "trusted.list"
    listing.write_text("good.example\n# fine\nbad entry here\n", encoding="utf-8")
    settings = ConditionSettings(trusted_domain=TrustedDomainSettings(files=(str(listing),)))
    with pytest.raises(ConditionConfigError) as caught:
        build_conditions(["Trusted Domain"], settings)
    assert caught.value.key_path == f"{listing}:3"
    assert "bad entry" in caught.value.message


def test_missing_list_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.list"
    settings = ConditionSettings(trusted_domain=TrustedDomainSettings(files=(str(missing),)))
    with pytest.raises(ConditionConfigError) as caught:
        build_conditions(["Trusted Domain"], settings)
    assert caught.value.key_path == str(missing)
    assert "cannot read list file" in caught.value.message


def test_restrict_accounts_list_file(tmp_path: Path) -> None:
    listing = tmp_path / "accounts.list"
    listing.write_text("# opt-in\nalice@example.com\nexample.org\n/^abuse@/\n", encoding="utf-8")
    settings = ConditionSettings(restrict_accounts=RestrictAccountsSettings(files=(str(listing),)))
    (condition,) = build_conditions(["Restrict Accounts"], settings)
    for recipient, applied in (
        ("<ALICE@example.com>", True),
        ("<x@example.org>", True),
        ("<abuse@else.example>", True),
        ("<bob@example.com>", False),
    ):
        decision = condition.decide(Stage.DATA, SessionFacts(recipients=[recipient]))
        assert decision is not None
        assert decision.apply is applied, recipient


def test_stress_threshold_read_from_postfix_once(tmp_path: Path) -> None:
    (tmp_path / "master.cf").write_text("smtp inet n - y - 20 smtpd\n", encoding="utf-8")
    registry = ConditionRegistry(
        ConditionSettings(stress=StressSettings(postfix_config_directory=str(tmp_path)))
    )
    notify, no_stress = registry.build(["Stress Notify", "No Stress"])
    (tmp_path / "master.cf").write_text("smtp inet n - y - 200 smtpd\n", encoding="utf-8")
    assert registry.stress_threshold() == 15
    decision = no_stress.decide(Stage.CONNECT, SessionFacts(active_sessions=15))
    assert decision is not None and decision.apply is False
    decision = notify.decide(Stage.CONNECT, SessionFacts(active_sessions=14))
    assert decision is None


def test_needed_macros() -> None:
    conditions = build_conditions(["S25R", "Unauthenticated", "Authenticated", "Trusted Domain"])
    assert needed_macros(conditions) == {Stage.MAIL: ("auth_type", "auth_authen")}
    assert needed_macros(build_conditions(["S25R"])) == {}


def test_decision_stages_cover_every_answer() -> None:
    """A condition must answer None outside the stages it declares."""
    settings = ConditionSettings(
        restrict_accounts=RestrictAccountsSettings(accounts=("a@example.com",)),
        stress=StressSettings(threshold=1),
    )
    conditions = build_conditions(BUILTIN_CONDITIONS, settings)
    facts = SessionFacts(
        client_name="ppp1.example.com",
        client_address="192.0.2.1",
        family="inet",
        macros={"auth_type": "PLAIN"},
        sender="<a@gmail.com>",
        recipients=["<a@example.com>"],
        active_sessions=5,
    )
    expected = {
        "S25R": {Stage.CONNECT},
        "Remote Network": {Stage.CONNECT},
        "Authenticated": {Stage.MAIL},
        "Unauthenticated": {Stage.MAIL},
        "Trusted Domain": {Stage.MAIL},
        "Stress Notify": {Stage.CONNECT},
        "No Stress": {Stage.CONNECT},
        "Restrict Accounts": {Stage.RCPT, Stage.DATA},
    }
    for condition in conditions:
        assert decision_stages(condition) == expected[condition.name]
        for stage in Stage:
            answer = condition.decide(stage, facts)
            assert (answer is not None) is (stage in expected[condition.name]), (
                condition.name,
                stage,
            )


def test_condition_without_stages_is_asked_everywhere() -> None:
    class Bare:
        name = "bare"

        def decide(self, stage: Stage, facts: SessionFacts) -> None:
            return None

    assert decision_stages(Bare()) == frozenset(Stage)
