"""docs/conditions.md must agree with the code it describes."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from mmd.conditions import BUILTIN_CONDITIONS, DEFAULT_CONDITIONS, settings_from_table
from mmd.conditions.registry import ConditionRegistry
from mmd.conditions.remote_network import DEFAULT_LOCAL_NETWORKS
from mmd.conditions.s25r import DEFAULT_BLACKLIST, DEFAULT_WHITELIST
from mmd.conditions.settings import SECTION_KEYS
from mmd.conditions.trusted_domain import DEFAULT_TRUSTED_DOMAINS

DOC = (Path(__file__).parents[3] / "docs" / "conditions.md").read_text(encoding="utf-8")


def toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC, re.DOTALL)


def test_toml_examples_parse() -> None:
    blocks = [b for b in toml_blocks() if "[conditions" in b]
    assert blocks
    for block in blocks:
        table = tomllib.loads(block)
        settings = settings_from_table(table["conditions"])
        registry = ConditionRegistry(settings)
        for rule in settings.custom:
            assert registry.get(rule.name).name == rule.name


def test_milter_example_names_known_conditions() -> None:
    (block,) = [b for b in toml_blocks() if "[[milter]]" in b]
    names = tomllib.loads(block)["milter"][0]["applicable_conditions"]
    assert set(names) <= set(BUILTIN_CONDITIONS)


def test_documented_defaults() -> None:
    assert json.dumps(list(DEFAULT_LOCAL_NETWORKS)) in DOC
    assert json.dumps(list(DEFAULT_TRUSTED_DOMAINS)) in DOC
    flowed = " ".join(DOC.split())  # lines of prose are wrapped
    assert ", ".join(f"`{s}`" for s in DEFAULT_WHITELIST) in flowed
    for rule in DEFAULT_BLACKLIST:
        assert f"| `{rule.label}` |" in DOC
        if rule.shown.startswith("/"):
            assert rule.shown.replace("|", "\\|") in DOC
    for milter, names in DEFAULT_CONDITIONS.items():
        assert f"| {milter} | {', '.join(names) or 'none'} |" in DOC


def test_every_section_documented() -> None:
    for section in SECTION_KEYS:
        if section != "custom":
            assert f"[conditions.{section}]" in DOC
    assert "[[conditions.custom]]" in DOC
    for name in BUILTIN_CONDITIONS:
        assert name in DOC
