"""``--show-config``: the effective configuration as TOML, each value with its origin.

The output is valid TOML that loads back to the same values, so an admin can
start a new milter-manager.toml from it, in the way ``postconf`` output can
be pasted into main.cf. Each value is preceded by a comment that says where
it came from: ``# default``, ``# FILE:LINE``, ``# detected: UNIT, FILE`` or
``# command line``.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from mmd.config.keys import MANAGER_KEYS, MILTER_KEYS
from mmd.config.model import Configuration, ManagerConfig, Origin, Status

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def render_show_config(config: Configuration) -> str:
    out: list[str] = ["# Effective mmd configuration; each value follows a comment saying where"]
    out.append("# it came from. This is valid TOML for milter-manager.toml.")
    if config.files:
        out.append("# Files read, in order: " + ", ".join(config.files))
    else:
        out.append("# Files read: none")
    out.append("")
    out.append("[manager]")
    for key in MANAGER_KEYS:
        out.extend(_entry(config.manager.origin(key), key, _manager_value(config.manager, key)))
    for milter in config.milters:
        out.append("")
        out.append(f"# milter {milter.name!r}: {milter.origin('name')}")
        out.append("[[milter]]")
        for key in MILTER_KEYS:
            out.extend(_entry(milter.origin(key), key, getattr(milter, key)))
    if config.conditions_table:
        out.append("")
        _render_table(out, ("conditions",), config.conditions_table, config)
    return "\n".join(out) + "\n"


def _manager_value(manager: ManagerConfig, key: str) -> object:
    value: object = getattr(manager, key)
    if key == "unix_socket_mode" and isinstance(value, int):
        return f"{value:04o}"
    return value


def _entry(origin: Origin, key: str, value: object) -> list[str]:
    return [f"# {origin}", f"{format_key(key)} = {format_value(value)}"]


def _render_table(
    out: list[str], path: tuple[str | int, ...], table: Mapping[str, Any], config: Configuration,
    array: bool = False,
) -> None:
    header = ".".join(format_key(str(p)) for p in path if isinstance(p, str))
    out.append(f"# {config.condition_origin(*path[1:])}")
    out.append(f"[[{header}]]" if array else f"[{header}]")
    nested: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict) or _is_table_array(value):
            nested.append((key, value))
            continue
        out.extend(_entry(config.condition_origin(*path[1:], key), key, value))
    for key, value in nested:
        out.append("")
        if isinstance(value, dict):
            _render_table(out, (*path, key), value, config)
        else:
            for index, item in enumerate(value):
                if index:
                    out.append("")
                _render_table(out, (*path, key, index), item, config, array=True)


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def format_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _format_string(key)


def _format_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def format_value(value: object) -> str:
    """A TOML literal for ``value`` (inline form for arrays and tables)."""
    if isinstance(value, Status):
        return _format_string(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _format_string(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{format_key(str(k))} = {format_value(v)}" for k, v in value.items())
        return "{" + items + "}" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


__all__ = ["format_key", "format_value", "render_show_config"]
