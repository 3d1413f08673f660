"""docs/configuration.md documents every key the loader accepts, with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmd.config.keys import MANAGER_KEYS, MILTER_KEYS, Key
from mmd.config.model import ManagerConfig, MilterConfig, Status

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _rows(section: str) -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.index("\n## ", start + 1)
    rows = {}
    for line in text[start:end].splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize(("section", "keys"), [
    ("## `[manager]`", MANAGER_KEYS),
    ("## `[[milter]]`", MILTER_KEYS),
])
def test_every_key_has_a_row(section: str, keys: dict[str, Key]) -> None:
    rows = _rows(section)
    assert sorted(rows) == sorted(keys)


def _shown(value: object) -> str:
    if isinstance(value, Status):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if value == "":
        return '`""`'
    if isinstance(value, list):
        return f"`{value!r}`"
    return f"`{value}`"


def test_defaults_in_docs_match_the_model() -> None:
    manager = ManagerConfig()
    rows = _rows("## `[manager]`")
    for key in MANAGER_KEYS:
        value: object = getattr(manager, key)
        shown = '`"0660"`' if key == "unix_socket_mode" else _shown(value)
        default = rows[key].split("|")[1]
        assert default.strip().startswith(shown), (key, default, shown)
    milter = MilterConfig(name="x", connection_spec="unix:/x")
    rows = _rows("## `[[milter]]`")
    for key in MILTER_KEYS:
        if key in ("name", "connection_spec"):
            continue
        default = rows[key].split("|")[1]
        assert default.strip().startswith(_shown(getattr(milter, key))), (key, default)
