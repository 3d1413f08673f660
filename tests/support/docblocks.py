"""Shell blocks taken verbatim from the Markdown guides, so the tests run what a reader runs.

A block is runnable when its fence's info string starts with ``sh`` (or ``bash``/``console``)
and names a tag after the language, e.g. a fence of ``sh run`` or ``sh run=debian-chroot``.
Renderers use only the first word of the info string, so the tags stay invisible to a reader.
A block without a tag is an example to read, never run by a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHELLS = ("sh", "bash", "shell")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class ShellBlock:
    """One fenced shell block: where it stands, its tags, and its text."""

    path: Path
    line: int  # 1-based line of the opening fence
    tags: dict[str, str]  # `run` -> "", `run=debian` -> {"run": "debian"}
    text: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def shell_blocks(path: Path) -> list[ShellBlock]:
    """Every fenced shell block of ``path`` in document order (tagged or not)."""
    blocks: list[ShellBlock] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence = opening["fence"]
        words = opening["info"].split()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].lstrip(" ").startswith(fence):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"{path}:{start + 1}: fence opened and never closed")
        i += 1
        if not words or words[0] not in SHELLS:
            continue
        tags: dict[str, str] = {}
        for word in words[1:]:
            key, _, value = word.partition("=")
            tags[key] = value
        blocks.append(ShellBlock(path, start + 1, tags, "\n".join(body) + "\n"))
    return blocks


def runnable(path: Path, tag: str = "run", value: str | None = None) -> list[ShellBlock]:
    """The blocks carrying ``tag`` (and, when given, ``tag=value``), in document order."""
    chosen = [
        block for block in shell_blocks(path)
        if tag in block.tags and (value is None or block.tags[tag] == value)
    ]
    if not chosen:
        raise LookupError(f"{path}: no shell block tagged {tag!r}" + (f"={value}" if value else ""))
    return chosen


def script(path: Path, tag: str = "run", value: str | None = None) -> str:
    """The tagged blocks joined into one `set -eux` script, each preceded by where it came from."""
    parts = ["set -eux"]
    for block in runnable(path, tag, value):
        parts.append(f"# --- {block.where()}")
        parts.append(block.text.rstrip("\n"))
    return "\n".join(parts) + "\n"
