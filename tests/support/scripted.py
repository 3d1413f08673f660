"""Scripted child milters (tests/support/children/scripted_milter.py) started per test.

``ScriptedMilters.start(**behaviour)`` returns the child's connection spec and a
``Recorder`` that reads what the child saw (events, arguments, macros).
Behaviour keywords are the script keys of scripted_milter.py: ``stages`` or one
keyword per stage (``eom={...}``), ``steps``, ``actions``, ``macros``,
``symlists``, ``name``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import Daemon, reachable_dir

CHILD = Path(__file__).resolve().parent / "children" / "scripted_milter.py"
# python3-milter exists only for Debian's interpreter
SYSTEM_PYTHON = "/usr/bin/python3"
STAGES = ("connect", "helo", "envfrom", "envrcpt", "data", "header", "eoh", "body", "eom")


@dataclass
class Recorder:
    """Reads the JSON lines a scripted child writes for every event it receives."""

    path: Path

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def names(self) -> list[str]:
        """Event names in order, e.g. ``["negotiate", "connect", "helo", ...]``."""
        return [event["event"] for event in self.events()]

    def first(self, name: str) -> dict[str, Any]:
        for event in self.events():
            if event["event"] == name:
                return event
        raise AssertionError(f"no {name!r} event; saw {self.names()}")

    def last(self, name: str) -> dict[str, Any]:
        """The latest ``name`` event (Postfix reconnects to milters after XCLIENT)."""
        for event in reversed(self.events()):
            if event["event"] == name:
                found: dict[str, Any] = event
                return found
        raise AssertionError(f"no {name!r} event; saw {self.names()}")

    def macros(self, name: str) -> dict[str, str]:
        """Macros visible to the child at the first ``name`` event."""
        macros: dict[str, str] = self.first(name)["macros"]
        return macros

    def wait_for(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event["event"] == name:
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} event within {timeout} s; saw {self.names()}")

    def clear(self) -> None:
        self.path.write_text("")


def script_from(behaviour: dict[str, Any]) -> dict[str, Any]:
    """Accept ``eom={...}`` style keywords as well as ``stages={...}``."""
    script = dict(behaviour)
    stages = dict(script.pop("stages", {}))
    for stage in STAGES:
        if stage in script:
            stages[stage] = script.pop(stage)
    if stages:
        script["stages"] = stages
    return script


class ScriptedMilters:
    """Starts scripted children on unix sockets in ``folder``; stops them by PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = reachable_dir(folder)
        self.children: list[Daemon] = []
        self._numbers = itertools.count(1)

    def start(self, **behaviour: Any) -> tuple[str, Recorder]:
        number = next(self._numbers)
        script = script_from(behaviour)
        name = str(script.get("name", f"scripted{number}"))
        socket_path = self.folder / f"{name}-{number}.sock"
        recorder = Recorder(self.folder / f"{name}-{number}.jsonl")
        recorder.path.write_text("")
        recorder.path.chmod(0o666)
        child = Daemon(name, [
            SYSTEM_PYTHON, str(CHILD), "--socket", f"unix:{socket_path}",
            "--record", str(recorder.path), "--script", json.dumps(script),
        ], self.folder / f"{name}-{number}.log")
        self.children.append(child)
        child.wait_for_unix_socket(socket_path, 15)
        return f"unix:{socket_path}", recorder

    def restart(self, spec: str) -> None:
        """Kill the child serving ``spec`` and start it again on the same socket (a child
        restarted by its service manager); its recorder goes on in the same file."""
        path = spec.removeprefix("unix:")
        (old,) = [c for c in self.children if f"unix:{path}" in c.argv]
        old.process.kill()
        old.process.wait(10)
        self.children.remove(old)
        Path(path).unlink(missing_ok=True)
        child = Daemon(old.name, old.argv, old.log)
        self.children.append(child)
        child.wait_for_unix_socket(Path(path), 15)

    def stop_all(self) -> None:
        for child in self.children:
            # a test child holds nothing worth a graceful stop (libmilter takes seconds)
            if child.alive():
                child.process.kill()
                child.process.wait(10)
        self.children.clear()
