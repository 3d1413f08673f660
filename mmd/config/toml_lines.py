"""Line numbers for TOML keys, which ``tomllib`` does not report.

Error messages and ``--show-config`` say ``FILE:LINE``. Our schema is flat
(``[manager]``, ``[[milter]]``, ``[conditions...]``), so a scan for table
headers and ``key =`` lines is enough: it only has to agree with ``tomllib``
on files that ``tomllib`` already accepted. Multi-line arrays, inline tables
and multi-line strings are skipped over so their insides are not mistaken
for keys.

A path is a tuple of table names, array indexes and key names, e.g.
``("milter", 1, "connection_spec")`` or ``("manager",)`` for the header.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str) -> tuple[list[str], str] | None:
    """Split a dotted key at the start of ``text``; return (parts, rest)."""
    parts: list[str] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        if text[i] in "\"'":
            quote = text[i]
            j = i + 1
            buf = []
            while j < n and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                return None
            parts.append("".join(buf))
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, text[i:]


def _value_state(value: str, depth: int, in_multi: str) -> tuple[int, str]:
    """Track bracket depth and an open multi-line string across a value's lines."""
    i = 0
    n = len(value)
    while i < n:
        if in_multi:
            end = value.find(in_multi, i)
            if end < 0:
                return depth, in_multi
            i = end + 3
            in_multi = ""
            continue
        c = value[i]
        if c == "#":
            break
        if value.startswith('"""', i) or value.startswith("'''", i):
            in_multi = value[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and value[j] != c:
                j += 2 if (c == '"' and value[j] == "\\") else 1
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth, in_multi


def locate_lines(text: str) -> dict[Path, int]:
    """Map each table header and key in ``text`` to its 1-based line number."""
    lines: dict[Path, int] = {}
    counts: dict[Path, int] = {}
    arrays: set[tuple[str, ...]] = set()  # header name paths declared with [[...]]
    table: Path = ()
    depth = 0
    in_multi = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        if depth > 0 or in_multi:
            depth, in_multi = _value_state(raw, depth, in_multi)
            continue
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            is_array = line.startswith("[[")
            inner = line[2:] if is_array else line[1:]
            split = _split_key(inner)
            if split is None:
                continue
            names = split[0]
            resolved: list[str | int] = []
            for k, name in enumerate(names):
                resolved.append(name)
                prefix = tuple(names[: k + 1])
                if prefix in arrays and (k < len(names) - 1 or not is_array):
                    resolved.append(counts.get(tuple(resolved), 1) - 1)
            if is_array:
                arrays.add(tuple(names))
                key = tuple(resolved)
                index = counts.get(key, 0)
                counts[key] = index + 1
                lines.setdefault(key, number)
                table = (*key, index)
            else:
                table = tuple(resolved)
            lines.setdefault(table, number)
            continue
        split = _split_key(line)
        if split is None:
            continue
        parts, rest = split
        if not rest.startswith("="):
            continue
        lines.setdefault((*table, *parts), number)
        depth, in_multi = _value_state(rest[1:], 0, "")
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, else of its nearest located parent, else 0."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return 0
