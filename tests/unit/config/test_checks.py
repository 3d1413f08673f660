"""The one validator kit (mmd.config.checks) behind [manager]/[[milter]] keys and [conditions]:
each caller keeps its wording of a wrong value (issue 15)."""

from __future__ import annotations

import pytest

from mmd.conditions.errors import ConditionConfigError
from mmd.conditions.settings import settings_from_table
from mmd.config import checks
from mmd.config.keys import MANAGER_KEYS, MILTER_KEYS


def _error(check: object, *args: object) -> str:
    assert callable(check)
    with pytest.raises(ValueError) as caught:
        check(*args)
    return str(caught.value)


def test_the_two_wordings_of_a_wrong_value() -> None:
    assert _error(checks.string, 5) == "expected a string, got integer 5"
    assert _error(checks.string, 5, checks.kind) == "expected a string, got an integer"
    assert _error(checks.boolean, "yes") == "expected true or false, got string 'yes'"
    assert _error(checks.boolean, 1.5, checks.kind) == "expected true or false, got a number"
    assert checks.kind({}) == "a table" and checks.kind(()) == "an array"
    assert checks.type_name([]) == "array" and checks.type_name(None) == "NoneType"


def test_checks_return_the_typed_value() -> None:
    assert checks.string("x", check=str.strip) == "x"
    assert checks.boolean(False) is False
    assert checks.array(("a",), "an array of strings") == ("a",)
    assert checks.one_of("any", ("any", "all")) == "any"
    assert checks.unknown_keys({"a": 1, "b": 2, "c": 3}, ("b",)) == ["a", "c"]
    assert not checks.is_integer(True) and checks.is_integer(0)


def test_refusals() -> None:
    assert _error(checks.one_of, "some", ("any", "all")) == "expected 'any' or 'all', got 'some'"
    assert _error(checks.table, {1: 2}) == "bad key 1"
    assert _error(checks.table, [1]) == "expected a table, got an array"
    assert _error(checks.string, "x", checks.with_value, int) == (
        "invalid literal for int() with base 10: 'x'"
    )


def test_both_callers_use_the_kit() -> None:
    assert _error(MANAGER_KEYS["unix_socket_group"].convert, False) == (
        "expected a string, got boolean False"
    )
    assert _error(MILTER_KEYS["enabled"].convert, "on") == "expected true or false, got string 'on'"
    with pytest.raises(ConditionConfigError) as caught:
        settings_from_table({"s25r": {"ipv4_only": "on"}})
    assert str(caught.value).endswith("expected true or false, got a string")
    assert caught.value.key_path == "conditions.s25r.ipv4_only"
