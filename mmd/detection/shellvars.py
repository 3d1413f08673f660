"""Read the variable assignments of /etc/default and /etc/sysconfig files.

These files are sourced by init scripts or read as systemd EnvironmentFile=,
so they use a small part of shell syntax: ``NAME=value``, ``export``, quotes,
comments and ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` references to earlier
assignments. Anything richer (conditionals, commands) is ignored line by line:
detection must never fail on a file an init script would accept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(rf"\$(?:\{{({_NAME})(?::?-([^}}]*))?\}}|({_NAME}))")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``$VAR``, ``${VAR}`` and ``${VAR:-default}``; unknown names become empty."""

    def substitute(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        value = variables.get(name, "")
        if not value and match[2] is not None:
            return expand(match[2], variables)
        return value

    return _REFERENCE.sub(substitute, text)


def parse_value(raw: str, variables: Mapping[str, str]) -> str:
    """The value of one assignment's right-hand side, as the shell would see it."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "'":
            end = raw.find("'", i + 1)
            end = len(raw) if end < 0 else end
            out.append(raw[i + 1 : end])
            i = end + 1
        elif char == '"':
            j = i + 1
            chunk: list[str] = []
            while j < len(raw) and raw[j] != '"':
                if raw[j] == "\\" and j + 1 < len(raw):
                    j += 1
                chunk.append(raw[j])
                j += 1
            out.append(expand("".join(chunk), variables))
            i = j + 1
        elif char.isspace() or char in ";#":
            break
        else:
            j = i
            while j < len(raw) and not raw[j].isspace() and raw[j] not in "'\";":
                j += 1
            out.append(expand(raw[i:j], variables))
            i = j
    return "".join(out)


def parse_assignments(text: str, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """All assignments in ``text``, later ones overriding earlier ones.

    ``inherited`` seeds the variables (e.g. an init script's defaults) so that
    ``OPTIONS="${OPTIONS} -r 15"`` keeps what came before.
    """
    variables = dict(inherited or {})
    for line in _logical_lines(text):
        match = _ASSIGNMENT.match(line)
        if match is not None:
            variables[match[1]] = parse_value(match[2], variables)
    return variables


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines
