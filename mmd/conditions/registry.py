"""Conditions by name: what a milter's ``applicable_conditions`` list refers to.

Conditions are built once per configuration generation (start, reload) and
shared by every session and every child that names them; they hold no
session state. Building is where list files and Postfix's master.cf are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from mmd.conditions.authentication import Authentication
from mmd.conditions.custom import CustomCondition, CustomRule
from mmd.conditions.errors import ConditionConfigError, UnknownConditionError
from mmd.conditions.matching import (
    check_address_entry,
    check_name_entry,
    read_list_file,
)
from mmd.conditions.remote_network import RemoteNetwork
from mmd.conditions.restrict_accounts import RestrictAccounts
from mmd.conditions.s25r import DEFAULT_BLACKLIST, DEFAULT_WHITELIST, S25R, extra_blacklist_rules
from mmd.conditions.settings import ConditionSettings, settings_from_table
from mmd.conditions.stress import NoStress, StressNotify, threshold_from_postfix
from mmd.conditions.trusted_domain import TrustedDomain
from mmd.engine.applicability import ChildCondition
from mmd.engine.stages import Stage

__all__ = [
    "BUILTIN_CONDITIONS",
    "CONDITION_ALIASES",
    "DEFAULT_CONDITIONS",
    "ConditionRegistry",
    "ConditionSettings",
    "build_conditions",
    "decision_stages",
    "needed_macros",
    "settings_from_table",
]

BUILTIN_CONDITIONS: tuple[str, ...] = (
    "S25R",
    "Remote Network",
    "Authenticated",
    "Unauthenticated",
    "Trusted Domain",
    "Stress Notify",
    "No Stress",
    "Restrict Accounts",
)

# the reference's name for Trusted Domain, so old lists keep working
CONDITION_ALIASES: Mapping[str, str] = MappingProxyType({"Trust": "Trusted Domain"})

# catalog milter name -> conditions a detected milter gets by default
DEFAULT_CONDITIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "milter-greylist": (
            "S25R",
            "Remote Network",
            "Unauthenticated",
            "Trusted Domain",
            "Stress Notify",
        ),
        "spamass-milter": ("Remote Network", "Unauthenticated", "No Stress"),
        "rspamd": ("Remote Network", "Unauthenticated", "No Stress"),
        "clamav-milter": (),
        "opendkim": (),
    }
)

_SECTION = "conditions"


class ConditionRegistry:
    """Builds each named condition on first use and hands out the same object after."""

    def __init__(self, settings: ConditionSettings | None = None) -> None:
        self.settings = settings if settings is not None else ConditionSettings()
        self._custom: dict[str, CustomRule] = {}
        for index, rule in enumerate(self.settings.custom):
            if rule.name in BUILTIN_CONDITIONS or rule.name in CONDITION_ALIASES:
                raise ConditionConfigError(
                    f"{_SECTION}.custom[{index}].name",
                    f"{rule.name!r} is a built-in condition name",
                )
            self._custom[rule.name] = rule
        self._built: dict[str, ChildCondition] = {}
        self._stress_threshold: int | None = None

    def names(self) -> list[str]:
        return [*BUILTIN_CONDITIONS, *self._custom]

    def get(self, name: str, *, key_path: str = "applicable_conditions") -> ChildCondition:
        name = CONDITION_ALIASES.get(name, name)
        condition = self._built.get(name)
        if condition is None:
            condition = self._build(name, key_path)
            self._built[name] = condition
        return condition

    def build(
        self, names: Iterable[str], *, key_path: str = "applicable_conditions"
    ) -> list[ChildCondition]:
        """The conditions for one child, in the listed order, duplicates dropped."""
        conditions: list[ChildCondition] = []
        seen: set[str] = set()
        for index, name in enumerate(names):
            canonical = CONDITION_ALIASES.get(name, name)
            if canonical in seen:
                continue
            seen.add(canonical)
            conditions.append(self.get(canonical, key_path=f"{key_path}[{index}]"))
        return conditions

    # -------------------------------------------------------- builders

    def _build(self, name: str, key_path: str) -> ChildCondition:
        settings = self.settings
        if name == "S25R":
            return self._s25r()
        if name == "Remote Network":
            remote_network = settings.remote_network
            return RemoteNetwork(
                local=(*remote_network.local, *remote_network.extra_local),
                remote=remote_network.remote,
            )
        if name == "Authenticated":
            return Authentication(want_authenticated=True)
        if name == "Unauthenticated":
            return Authentication(want_authenticated=False)
        if name == "Trusted Domain":
            return self._trusted_domain()
        if name == "Stress Notify":
            return StressNotify(threshold=self.stress_threshold())
        if name == "No Stress":
            return NoStress(threshold=self.stress_threshold())
        if name == "Restrict Accounts":
            return self._restrict_accounts()
        rule = self._custom.get(name)
        if rule is None:
            raise UnknownConditionError(name, self.names(), key_path)
        return CustomCondition(rule)

    def _s25r(self) -> S25R:
        s25r = self.settings.s25r
        whitelist = (*(DEFAULT_WHITELIST if s25r.default_whitelist else ()), *s25r.extra_whitelist)
        blacklist = (
            *(DEFAULT_BLACKLIST if s25r.default_blacklist else ()),
            *extra_blacklist_rules(s25r.extra_blacklist),
        )
        return S25R(whitelist=whitelist, blacklist=blacklist, ipv4_only=s25r.ipv4_only)

    def _trusted_domain(self) -> TrustedDomain:
        trusted = self.settings.trusted_domain
        domains = [*trusted.domains, *trusted.extra_domains]
        domains += _file_entries(trusted.files, check_name_entry)
        return TrustedDomain(domains=domains)

    def _restrict_accounts(self) -> RestrictAccounts:
        restrict = self.settings.restrict_accounts
        accounts = [*restrict.accounts, *_file_entries(restrict.files, check_address_entry)]
        if not accounts:
            raise ConditionConfigError(
                f"{_SECTION}.restrict_accounts",
                "Restrict Accounts is used but lists no accounts (set accounts or files)",
            )
        return RestrictAccounts(
            accounts=accounts, match_on=restrict.match_on, recipients=restrict.recipients
        )

    def stress_threshold(self) -> int:
        """The configured threshold, else 75 % of Postfix's smtpd process limit (read once)."""
        if self._stress_threshold is None:
            stress = self.settings.stress
            if stress.threshold is not None:
                self._stress_threshold = stress.threshold
            else:
                self._stress_threshold = threshold_from_postfix(
                    Path(stress.postfix_config_directory)
                )
        return self._stress_threshold


def _file_entries(files: Iterable[str], check: Callable[[str], None]) -> list[str]:
    entries: list[str] = []
    for path in files:
        for location, entry in read_list_file(path):
            try:
                check(entry)
            except ValueError as error:
                raise ConditionConfigError(location, str(error)) from None
            entries.append(entry)
    return entries


def build_conditions(
    names: Iterable[str],
    settings: ConditionSettings | None = None,
    *,
    key_path: str = "applicable_conditions",
) -> list[ChildCondition]:
    """Conditions for one child; raises ``UnknownConditionError`` naming a bad name.

    To share condition objects between children, keep one ``ConditionRegistry``
    per configuration generation and call its ``build`` instead.
    """
    return ConditionRegistry(settings).build(names, key_path=key_path)


ALL_STAGES: frozenset[Stage] = frozenset(Stage)


def decision_stages(condition: ChildCondition) -> frozenset[Stage]:
    """The stages at which ``condition`` may answer other than None.

    An optional attribute of the conditions here (not part of the
    ChildCondition protocol): the engine may skip asking at other stages.
    A condition without it is asked at every stage.
    """
    stages = getattr(condition, "stages", None)
    return stages if isinstance(stages, frozenset) else ALL_STAGES


def needed_macros(conditions: Iterable[ChildCondition]) -> dict[Stage, tuple[str, ...]]:
    """Macros (names without braces) the MTA must send at each stage for these conditions.

    The engine adds them to the macro lists it negotiates with the MTA, because
    a negotiated list replaces the MTA's defaults.
    """
    wanted: dict[Stage, list[str]] = {}
    for condition in conditions:
        for stage, macro in getattr(condition, "needed_macros", ()):
            names = wanted.setdefault(stage, [])
            if macro not in names:
                names.append(macro)
    return {stage: tuple(names) for stage, names in wanted.items()}
