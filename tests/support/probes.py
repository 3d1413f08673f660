"""Small probes the system tests share: waiting, unit properties, the journal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.support.container import SystemdContainer


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def show(c: SystemdContainer, unit: str, *properties: str) -> dict[str, str]:
    output = c.run(["systemctl", "show", *[f"-p{p}" for p in properties], unit]).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def journal_cursor(c: SystemdContainer) -> str:
    output = c.run(["journalctl", "-n", "1", "-o", "cat", "--show-cursor", "--no-pager"]).stdout
    for line in output.splitlines():
        if line.startswith("-- cursor: "):
            return line.removeprefix("-- cursor: ")
    raise AssertionError(f"no cursor in {output!r}")


def journal_entries(c: SystemdContainer, cursor: str, **matches: str) -> list[dict[str, Any]]:
    """Entries after ``cursor`` whose fields equal ``matches``.

    Filtered here: journalctl 252 combining --after-cursor with a match (even -u) drops the
    first matching entry after the cursor, or returns nothing.
    """
    output = c.run(["journalctl", f"--after-cursor={cursor}", "-o", "json", "--all",
                    "--no-pager"]).stdout
    found = []
    for line in output.splitlines():
        if line.strip():
            entry = json.loads(line)
            if all(entry.get(key) == value for key, value in matches.items()):
                found.append(entry)
    return found


def manager_entries(c: SystemdContainer, cursor: str, **matches: str) -> list[dict[str, Any]]:
    """milter-manager's own entries after ``cursor`` (see ``journal_entries``)."""
    return journal_entries(c, cursor, SYSLOG_IDENTIFIER="milter-manager", **matches)
