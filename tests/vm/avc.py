"""Denials out of ``ausearch -m AVC,USER_AVC`` raw output, and which of them concern mmd."""

from __future__ import annotations

import re
from dataclasses import dataclass

MODULE_PREFIX = "milter_manager_"
# Domains the scenario drives besides mmd's: Postfix, the child milters, spamd, D-Bus.
SCENARIO_DOMAINS = frozenset({
    "spamd_t", "spamc_t", "spamass_milter_t", "clamd_t", "dkim_milter_t", "system_dbusd_t",
})

# Types of the harness's files: results and payload below /root, the serial console.
HARNESS_TYPES = frozenset({"user_home_t", "user_home_dir_t", "admin_home_t", "user_tty_device_t"})

_DENIED = re.compile(r"avc:\s+denied\s+\{ (?P<perms>[^}]*) \}(?P<rest>.*)")
_FIELD = re.compile(
    r"\b(?P<key>scontext|tcontext|tclass|comm|name|permissive)=(?P<value>\"[^\"]*\"|\S+)"
)


@dataclass(frozen=True)
class Denial:
    source: str  # type of scontext
    target: str  # type of tcontext
    tclass: str
    perms: tuple[str, ...]
    comm: str
    name: str
    permissive: str
    line: str

    def key(self) -> tuple[str, str, str]:
        return (self.source, self.target, self.tclass)

    def concerns_module(self) -> bool:
        return self.source.startswith(MODULE_PREFIX) or self.target.startswith(MODULE_PREFIX)

    def in_scenario_domain(self) -> bool:
        """A Postfix, milter or D-Bus domain denied something that is not the harness's.

        The harness's own files and console (root's home, the serial console its shell owns)
        are not the scenario's: a program it starts writing its output there is refused, e.g.
        the postmap of the enforcement proof.
        """
        if self.target in HARNESS_TYPES:
            return False
        return self.source.startswith("postfix_") or self.source in SCENARIO_DOMAINS

    def __str__(self) -> str:
        return (f"{self.source} -> {self.target}:{self.tclass} {{ {' '.join(self.perms)} }} "
                f"comm={self.comm} name={self.name} permissive={self.permissive}")


def _type(context: str) -> str:
    parts = context.split(":")
    return parts[2] if len(parts) >= 3 else context


def denials(text: str) -> list[Denial]:
    """Every ``avc: denied`` record (kernel AVC and dbus-daemon USER_AVC alike)."""
    found: list[Denial] = []
    for line in text.splitlines():
        match = _DENIED.search(line)
        if match is None:
            continue
        fields = {m["key"]: m["value"].strip('"') for m in _FIELD.finditer(match["rest"])}
        found.append(Denial(
            source=_type(fields.get("scontext", "?")),
            target=_type(fields.get("tcontext", "?")),
            tclass=fields.get("tclass", "?"),
            perms=tuple(match["perms"].split()),
            comm=fields.get("comm", ""),
            name=fields.get("name", ""),
            permissive=fields.get("permissive", ""),
            line=line,
        ))
    return found
