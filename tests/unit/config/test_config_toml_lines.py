"""The line locator must agree with tomllib on every key of a valid file."""

from __future__ import annotations

import tomllib
from typing import Any

from mmd.config.toml_lines import Path, line_of, locate_lines

SAMPLE = '''\
# comment with key = 1
[manager]
connection_spec = "unix:/run/a.sock"   # trailing = comment
"quoted key" = 1
dotted.key = 2

[[milter]]
name = "one"
applicable_conditions = [
  "S25R",
  "fake = entry",
]
description = """
not_a_key = 3
"""

[[milter]]
name = "two"
inline = { a = 1, b = 2 }
rows = [
  { c = "]" },
]

[conditions]
x = 1
[conditions.s25r]
allow = ['a']
[[conditions.custom]]
name = "c0"
[conditions.custom.sub]
v = 1
[[conditions.custom]]
name = "c1"
'''


def _paths(data: Any, prefix: Path = ()) -> list[Path]:
    found: list[Path] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        for index, value in enumerate(data):
            found.extend(_paths(value, (*prefix, index)))
    return found


def test_exact_lines() -> None:
    lines = locate_lines(SAMPLE)
    assert lines[("manager",)] == 2
    assert lines[("manager", "connection_spec")] == 3
    assert lines[("manager", "quoted key")] == 4
    assert lines[("manager", "dotted", "key")] == 5
    assert lines[("milter", 0)] == 7
    assert lines[("milter", 0, "description")] == 13
    assert lines[("milter", 1, "name")] == 18
    assert lines[("milter", 1, "inline")] == 19
    assert lines[("milter", 1, "rows")] == 20
    assert lines[("conditions",)] == 24
    assert lines[("conditions", "custom", 0, "sub", "v")] == 31
    assert lines[("conditions", "custom", 1, "name")] == 33
    assert not any("not_a_key" in path or "fake" in path for path in lines)


def test_every_key_tomllib_sees_is_located() -> None:
    data = tomllib.loads(SAMPLE)
    lines = locate_lines(SAMPLE)
    # inline-table members are not separate lines: they resolve to their parent
    for path in _paths(data):
        assert line_of(lines, path) > 0, path
    assert line_of(lines, ("milter", 1, "inline", "b")) == 19


def test_unknown_path_is_zero() -> None:
    assert line_of(locate_lines(SAMPLE), ("nothing",)) == 0
