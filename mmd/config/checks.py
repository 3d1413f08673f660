"""One kit for checking configuration values, for every part of milter-manager.toml.

``mmd.config.keys`` (``[manager]``, ``[[milter]]``, the command-line overrides) and
``mmd.conditions.settings`` (``[conditions]``) check values with these functions. A check
takes a value as ``tomllib`` gives it and returns it typed, or raises ValueError saying what
is wrong; the caller adds where (``FILE:LINE: key:`` or the key path). The two callers have
always described a wrong value in their own words, which admins and the tests know: ``keys``
names the type and the value ("got integer 5", ``with_value``), ``[conditions]`` only the
kind ("got an integer", ``kind``). Both are kept; each check takes the wording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeGuard, cast

Describe = Callable[[object], str]

_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    list: "array",
    dict: "table",
}
_KINDS: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a number",
                           str: "a string"}  # fmt: skip


def type_name(value: object) -> str:
    """TOML's name of the value's type ("integer"), else Python's."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def with_value(value: object) -> str:
    """A wrong value as ``keys`` describes it: ``integer 5``."""
    return f"{type_name(value)} {value!r}"


def kind(value: object) -> str:
    """A wrong value as ``[conditions]`` describes it: ``an integer``."""
    named = _KINDS.get(type(value))
    if named is not None:
        return named
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def is_integer(value: object) -> TypeGuard[int]:
    """An integer that is not a boolean (``True`` is an ``int`` to Python, not to TOML)."""
    return isinstance(value, int) and not isinstance(value, bool)


def wrong(wanted: str, value: object, describe: Describe = with_value) -> ValueError:
    """The error for a value of the wrong type: ``expected WANTED, got ...``."""
    return ValueError(f"expected {wanted}, got {describe(value)}")


def string(
    value: object,
    describe: Describe = with_value,
    check: Callable[[str], object] | None = None,
) -> str:
    """A string; ``check`` (raising ValueError) may look further at its text."""
    if not isinstance(value, str):
        raise wrong("a string", value, describe)
    if check is not None:
        check(value)
    return value


def boolean(value: object, describe: Describe = with_value) -> bool:
    if not isinstance(value, bool):
        raise wrong("true or false", value, describe)
    return value


def array(value: object, wanted: str, describe: Describe = with_value) -> Sequence[object]:
    """An array (``wanted`` says of what, for the message); its items are the caller's."""
    if not isinstance(value, list | tuple):
        raise wrong(wanted, value, describe)
    return cast(Sequence[object], value)


def table(value: object, describe: Describe = kind) -> Mapping[str, object]:
    """A table whose keys are strings."""
    if not isinstance(value, Mapping):
        raise wrong("a table", value, describe)
    for key in value:
        if not isinstance(key, str):
            raise ValueError(f"bad key {key!r}")
    return cast(Mapping[str, object], value)


def one_of(text: str, choices: Sequence[str]) -> str:
    """``text`` if it is one of ``choices``."""
    if text not in choices:
        wanted = " or ".join(repr(choice) for choice in choices)
        raise ValueError(f"expected {wanted}, got {text!r}")
    return text


def unknown_keys(keys: Mapping[str, object], known: Sequence[str]) -> list[str]:
    """The keys of a table that are not among ``known``, in the table's order."""
    return [key for key in keys if key not in known]
