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
from mmd.engine.applicability import Stage

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

T = TypeVar("T")


def _table(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConditionConfigError(path, f"expected a table, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConditionConfigError(path, f"bad key {key!r}")
    return cast(Mapping[str, object], value)


def _check_keys(table: Mapping[str, object], allowed: Sequence[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConditionConfigError(
                f"{path}.{key}", f"unknown key (known: {', '.join(allowed)})"
            )


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for python_type, name in kinds.items():
        if type(value) is python_type:
            return name
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConditionConfigError(path, f"expected true or false, got {_kind(value)}")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConditionConfigError(path, f"expected a string, got {_kind(value)}")
    return value


def _choice(value: object, path: str, choices: Sequence[str]) -> str:
    text = _str(value, path)
    if text not in choices:
        wanted = " or ".join(repr(c) for c in choices)
        raise ConditionConfigError(path, f"expected {wanted}, got {text!r}")
    return text


def _str_list(
    value: object, path: str, check: Callable[[str], object] | None = None
) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ConditionConfigError(path, f"expected an array of strings, got {_kind(value)}")
    items: list[str] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        text = _str(item, item_path)
        if check is not None:
            try:
                check(text)
            except ValueError as error:
                raise ConditionConfigError(item_path, str(error)) from None
        items.append(text)
    return tuple(items)


def _path_list(value: object, path: str, base: Path | None) -> tuple[str, ...]:
    paths = _str_list(value, path)
    resolved: list[str] = []
    for index, text in enumerate(paths):
        candidate = Path(text)
        if not candidate.is_absolute():
            if base is None:
                raise ConditionConfigError(f"{path}[{index}]", f"{text!r} must be an absolute path")
            candidate = base / candidate
        resolved.append(str(candidate))
    return tuple(resolved)


def _check_regex(text: str) -> None:
    compile_regex(text)


def _parse(
    table: Mapping[str, object],
    path: str,
    parsers: Mapping[str, Callable[[object, str], object]],
) -> dict[str, object]:
    _check_keys(table, list(parsers), path)
    return {key: parsers[key](value, f"{path}.{key}") for key, value in table.items()}


# ---------------------------------------------------------------- sections


def _s25r(value: object, path: str) -> S25RSettings:
    values = _parse(
        _table(value, path),
        path,
        {
            "extra_whitelist": lambda v, p: _str_list(v, p, check_name_entry),
            "extra_blacklist": lambda v, p: _str_list(v, p, check_name_entry),
            "default_whitelist": _bool,
            "default_blacklist": _bool,
            "ipv4_only": _bool,
        },
    )
    return S25RSettings(**values)  # type: ignore[arg-type]


def _remote_network(value: object, path: str) -> RemoteNetworkSettings:
    def networks(v: object, p: str) -> tuple[str, ...]:
        return _str_list(v, p, parse_network)

    values = _parse(
        _table(value, path), path, {"local": networks, "extra_local": networks, "remote": networks}
    )
    return RemoteNetworkSettings(**values)  # type: ignore[arg-type]


def _trusted_domain(value: object, path: str, base: Path | None) -> TrustedDomainSettings:
    values = _parse(
        _table(value, path),
        path,
        {
            "domains": lambda v, p: _str_list(v, p, check_name_entry),
            "extra_domains": lambda v, p: _str_list(v, p, check_name_entry),
            "files": lambda v, p: _path_list(v, p, base),
        },
    )
    return TrustedDomainSettings(**values)  # type: ignore[arg-type]


def _threshold(value: object, path: str) -> int:
    if type(value) is not int or value < 0:
        raise ConditionConfigError(path, f"expected an integer >= 0, got {value!r}")
    return value


def _stress(value: object, path: str) -> StressSettings:
    values = _parse(
        _table(value, path),
        path,
        {"threshold": _threshold, "postfix_config_directory": _str},
    )
    return StressSettings(**values)  # type: ignore[arg-type]


def _restrict_accounts(value: object, path: str, base: Path | None) -> RestrictAccountsSettings:
    values = _parse(
        _table(value, path),
        path,
        {
            "accounts": lambda v, p: _str_list(v, p, check_address_entry),
            "files": lambda v, p: _path_list(v, p, base),
            "match_on": lambda v, p: _choice(v, p, ("recipient", "sender")),
            "recipients": lambda v, p: _choice(v, p, ("any", "all")),
        },
    )
    return RestrictAccountsSettings(**values)  # type: ignore[arg-type]


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
        regex = _str(table["regex"], f"{item_path}.regex")
        try:
            compile_regex(regex)
        except ValueError as error:
            raise ConditionConfigError(f"{item_path}.regex", str(error)) from None
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
    stage = _choice(table["stage"], f"{path}.stage", tuple(s.value for s in CUSTOM_STAGES))
    effect = _choice(table.get("effect", "apply"), f"{path}.effect", ("apply", "skip", "mark"))
    rule = CustomRule(
        name=name,
        stage=_STAGES_BY_NAME[stage],
        effect=cast(Literal["apply", "skip", "mark"], effect),
        client_address=_opt(
            table, "client_address", path, lambda v, p: _str_list(v, p, parse_network)
        ),
        client_name=_opt(
            table, "client_name", path, lambda v, p: _str_list(v, p, check_name_entry)
        ),
        helo=_opt(table, "helo", path, lambda v, p: _str_list(v, p, check_name_entry)),
        authenticated=_opt(table, "authenticated", path, _bool),
        sender=_opt(table, "sender", path, lambda v, p: _str_list(v, p, check_address_entry)),
        recipient_domain=_opt(
            table, "recipient_domain", path, lambda v, p: _str_list(v, p, check_name_entry)
        ),
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
    if not isinstance(value, list | tuple):
        raise ConditionConfigError(
            path, f"expected an array of tables ([[{path}]]), got {_kind(value)}"
        )
    rules: list[CustomRule] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(value):
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
    parts: dict[str, object] = {}
    if "s25r" in table:
        parts["s25r"] = _s25r(table["s25r"], f"{path}.s25r")
    if "remote_network" in table:
        parts["remote_network"] = _remote_network(table["remote_network"], f"{path}.remote_network")
    if "trusted_domain" in table:
        parts["trusted_domain"] = _trusted_domain(
            table["trusted_domain"], f"{path}.trusted_domain", base
        )
    if "stress" in table:
        parts["stress"] = _stress(table["stress"], f"{path}.stress")
    if "restrict_accounts" in table:
        parts["restrict_accounts"] = _restrict_accounts(
            table["restrict_accounts"], f"{path}.restrict_accounts", base
        )
    if "custom" in table:
        parts["custom"] = _custom(table["custom"], f"{path}.custom")
    if not parts:
        return settings
    return ConditionSettings(**{**_fields(settings), **parts})  # type: ignore[arg-type]


def _fields(settings: ConditionSettings) -> dict[str, object]:
    return {key: getattr(settings, key) for key in SECTION_KEYS}
