"""The ``[conditions]`` table of milter-manager.toml as plain data.

Parsing checks every value (regexes compile, networks parse, clauses fit
their stage) so a typo is reported once, at load, with its key path, instead
of surfacing per session. List files are only named here; they are read when
the conditions are built (``mmd.conditions.registry``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast

from mmd.conditions.custom import (
    CLAUSE_FIRST_STAGE,
    CUSTOM_STAGES,
    CustomRule,
    HeaderClause,
    check_rule,
)
from mmd.conditions.errors import ConditionConfigError
from mmd.conditions.matching import check_address_entry, check_name_entry, compile_regex
from mmd.conditions.remote_network import DEFAULT_LOCAL_NETWORKS, parse_network
from mmd.conditions.trusted_domain import DEFAULT_TRUSTED_DOMAINS
from mmd.config import checks
from mmd.engine.stages import Stage

DEFAULT_POSTFIX_CONFIG_DIRECTORY = "/etc/postfix"


@dataclass(frozen=True, slots=True)
class S25RSettings:
    extra_whitelist: tuple[str, ...] = ()
    extra_blacklist: tuple[str, ...] = ()
    default_whitelist: bool = True
    default_blacklist: bool = True
    ipv4_only: bool = True


@dataclass(frozen=True, slots=True)
class RemoteNetworkSettings:
    local: tuple[str, ...] = DEFAULT_LOCAL_NETWORKS
    extra_local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustedDomainSettings:
    domains: tuple[str, ...] = DEFAULT_TRUSTED_DOMAINS
    extra_domains: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StressSettings:
    threshold: int | None = None  # None: derive from Postfix; 0: never stressed
    postfix_config_directory: str = DEFAULT_POSTFIX_CONFIG_DIRECTORY


@dataclass(frozen=True, slots=True)
class RestrictAccountsSettings:
    accounts: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    match_on: Literal["recipient", "sender"] = "recipient"
    recipients: Literal["any", "all"] = "any"


@dataclass(frozen=True, slots=True)
class ConditionSettings:
    s25r: S25RSettings = field(default_factory=S25RSettings)
    remote_network: RemoteNetworkSettings = field(default_factory=RemoteNetworkSettings)
    trusted_domain: TrustedDomainSettings = field(default_factory=TrustedDomainSettings)
    stress: StressSettings = field(default_factory=StressSettings)
    restrict_accounts: RestrictAccountsSettings = field(default_factory=RestrictAccountsSettings)
    custom: tuple[CustomRule, ...] = ()


# ---------------------------------------------------------------- helpers
# The checks are mmd.config.checks'; these say where (the key path) and in this table's words.

T = TypeVar("T")
Parser = Callable[[object, str], object]


def _at(path: str, check: Callable[..., T], *args: object) -> T:
    """``check(*args)``, its ValueError raised as a ConditionConfigError at ``path``."""
    try:
        return check(*args)
    except ValueError as error:
        raise ConditionConfigError(path, str(error)) from None


def _table(value: object, path: str) -> Mapping[str, object]:
    return _at(path, checks.table, value, checks.kind)


def _check_keys(table: Mapping[str, object], allowed: Sequence[str], path: str) -> None:
    for key in checks.unknown_keys(table, allowed):
        raise ConditionConfigError(f"{path}.{key}", f"unknown key (known: {', '.join(allowed)})")


def _bool(value: object, path: str) -> bool:
    return _at(path, checks.boolean, value, checks.kind)


def _str(value: object, path: str) -> str:
    return _at(path, checks.string, value, checks.kind)


def _one_of(*choices: str) -> Callable[[object, str], str]:
    def parse(value: object, path: str) -> str:
        return _at(path, checks.one_of, _str(value, path), choices)

    return parse


def _str_list(
    value: object, path: str, check: Callable[[str], object] | None = None
) -> tuple[str, ...]:
    items = _at(path, checks.array, value, "an array of strings", checks.kind)
    return tuple(
        _at(f"{path}[{index}]", checks.string, item, checks.kind, check)
        for index, item in enumerate(items)
    )


def _names(check: Callable[[str], object]) -> Callable[[object, str], tuple[str, ...]]:
    """An array of strings, each one checked by ``check`` (raising ValueError)."""

    def parse(value: object, path: str) -> tuple[str, ...]:
        return _str_list(value, path, check)

    return parse


def _paths(base: Path | None) -> Callable[[object, str], tuple[str, ...]]:
    """An array of file names, made absolute against ``base`` (else they must be)."""

    def parse(value: object, path: str) -> tuple[str, ...]:
        resolved: list[str] = []
        for index, text in enumerate(_str_list(value, path)):
            candidate = Path(text)
            if not candidate.is_absolute():
                if base is None:
                    raise ConditionConfigError(
                        f"{path}[{index}]", f"{text!r} must be an absolute path"
                    )
                candidate = base / candidate
            resolved.append(str(candidate))
        return tuple(resolved)

    return parse


def _section(settings: Callable[..., T], **parsers: Parser) -> Callable[[object, str], T]:
    """A table whose keys are ``settings``' fields, each value checked by its parser."""

    def parse(value: object, path: str) -> T:
        table = _table(value, path)
        _check_keys(table, list(parsers), path)
        return settings(**{key: parsers[key](item, f"{path}.{key}") for key, item in table.items()})

    return parse


# ---------------------------------------------------------------- sections


def _threshold(value: object, path: str) -> int:
    if type(value) is not int or value < 0:
        raise ConditionConfigError(path, f"expected an integer >= 0, got {value!r}")
    return value


def _sections(base: Path | None) -> dict[str, Parser]:
    """The parser of each section, in the order they are checked."""
    domains, networks = _names(check_name_entry), _names(parse_network)
    return {
        "s25r": _section(S25RSettings, extra_whitelist=domains, extra_blacklist=domains,
                         default_whitelist=_bool, default_blacklist=_bool, ipv4_only=_bool),
        "remote_network": _section(RemoteNetworkSettings, local=networks, extra_local=networks,
                                   remote=networks),
        "trusted_domain": _section(TrustedDomainSettings, domains=domains,
                                   extra_domains=domains, files=_paths(base)),
        "stress": _section(StressSettings, threshold=_threshold,
                           postfix_config_directory=_str),
        "restrict_accounts": _section(RestrictAccountsSettings,
                                      accounts=_names(check_address_entry), files=_paths(base),
                                      match_on=_one_of("recipient", "sender"),
                                      recipients=_one_of("any", "all")),
        "custom": _custom,
    }  # fmt: skip


_STAGES_BY_NAME = {stage.value: stage for stage in Stage}
CUSTOM_KEYS = ("name", "stage", "effect", "macros", *CLAUSE_FIRST_STAGE)


def _header_clauses(value: object, path: str) -> tuple[HeaderClause, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    clauses: list[HeaderClause] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]" if isinstance(value, list | tuple) else path
        table = _table(item, item_path)
        _check_keys(table, ("name", "regex"), item_path)
        for key in ("name", "regex"):
            if key not in table:
                raise ConditionConfigError(f"{item_path}.{key}", "missing")
        name = _str(table["name"], f"{item_path}.name")
        if not name or ":" in name or any(c.isspace() for c in name):
            raise ConditionConfigError(f"{item_path}.name", f"bad header name {name!r}")
        regex = _at(f"{item_path}.regex", checks.string, table["regex"], checks.kind, compile_regex)
        clauses.append(HeaderClause(name, regex))
    return tuple(clauses)


def _macros(value: object, path: str) -> tuple[tuple[str, str], ...]:
    table = _table(value, path)
    pairs: list[tuple[str, str]] = []
    for name, macro_value in table.items():
        if not name.strip("{}") or any(c.isspace() for c in name):
            raise ConditionConfigError(f"{path}.{name}", "bad macro name")
        pairs.append((name, _str(macro_value, f"{path}.{name}")))
    return tuple(pairs)


def _custom_rule(value: object, path: str) -> CustomRule:
    table = _table(value, path)
    _check_keys(table, CUSTOM_KEYS, path)
    for key in ("name", "stage"):
        if key not in table:
            raise ConditionConfigError(f"{path}.{key}", "missing")
    name = _str(table["name"], f"{path}.name").strip()
    if not name:
        raise ConditionConfigError(f"{path}.name", "empty name")
    stage = _one_of(*(s.value for s in CUSTOM_STAGES))(table["stage"], f"{path}.stage")
    effect = _one_of("apply", "skip", "mark")(table.get("effect", "apply"), f"{path}.effect")
    rule = CustomRule(
        name=name,
        stage=_STAGES_BY_NAME[stage],
        effect=cast(Literal["apply", "skip", "mark"], effect),
        client_address=_opt(table, "client_address", path, _names(parse_network)),
        client_name=_opt(table, "client_name", path, _names(check_name_entry)),
        helo=_opt(table, "helo", path, _names(check_name_entry)),
        authenticated=_opt(table, "authenticated", path, _bool),
        sender=_opt(table, "sender", path, _names(check_address_entry)),
        recipient_domain=_opt(table, "recipient_domain", path, _names(check_name_entry)),
        header=_opt(table, "header", path, _header_clauses),
        macros=_opt(table, "macros", path, _macros) or (),
    )
    for key, message in check_rule(rule):
        key_path = path if key == "match" else f"{path}.{key}"
        raise ConditionConfigError(key_path, message)
    return rule


def _opt(
    table: Mapping[str, object], key: str, path: str, parse: Callable[[object, str], T]
) -> T | None:
    if key not in table:
        return None
    return parse(table[key], f"{path}.{key}")


def _custom(value: object, path: str) -> tuple[CustomRule, ...]:
    items = _at(path, checks.array, value, f"an array of tables ([[{path}]])", checks.kind)
    rules: list[CustomRule] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        rule = _custom_rule(item, item_path)
        if rule.name in seen:
            raise ConditionConfigError(
                f"{item_path}.name", f"{rule.name!r} already defined at {seen[rule.name]}"
            )
        seen[rule.name] = item_path
        rules.append(rule)
    return tuple(rules)


SECTION_KEYS = ("s25r", "remote_network", "trusted_domain", "stress", "restrict_accounts", "custom")


def settings_from_table(
    table: Mapping[str, object],
    *,
    path: str = "conditions",
    base_directory: str | Path | None = None,
) -> ConditionSettings:
    """Parse the ``[conditions]`` table; raise ``ConditionConfigError`` on any bad value.

    ``base_directory`` resolves relative list-file paths (the configuration
    file's directory); without it they must be absolute.
    """
    base = Path(base_directory) if base_directory is not None else None
    table = _table(table, path)
    _check_keys(table, SECTION_KEYS, path)
    settings = ConditionSettings()
    parts = {
        key: parse(table[key], f"{path}.{key}")
        for key, parse in _sections(base).items()
        if key in table
    }
    if not parts:
        return settings
    return ConditionSettings(**{**_fields(settings), **parts})  # type: ignore[arg-type]


def _fields(settings: ConditionSettings) -> dict[str, object]:
    return {key: getattr(settings, key) for key in SECTION_KEYS}
