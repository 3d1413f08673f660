"""mmd itself, started as users start it: ``milter-manager -c DIR --no-detection --no-dbus``.

``MmdDaemons.start(milters=[...], manager={...}, conditions={...})`` writes a
configuration folder (``milter-manager.toml``), starts the daemon from this
checkout with the test's interpreter, waits until its socket accepts and its
"ready" line is logged, and returns an ``MmdDaemon``. The socket lives under
the integration folder so Postfix's user reaches it; the first daemon alive
always gets the same path, so Postfix's ``smtpd_milters`` need not change
(and Postfix need not reload) from one test to the next.

Stopping is by PID: SIGTERM, then the exit status must be 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cli_runner import ROOT
from tests.support.processes import DaemonError, reachable_dir, read_tail, reap

READY_LINE = "ready: "
RELOADED_LINE = "reloaded: "


def toml_value(value: Any) -> str:
    """A TOML literal for the few value types our configuration uses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _table_lines(header: str, table: Mapping[str, Any], array: bool = False) -> list[str]:
    """``[header]`` with its plain keys, then its sub-tables (arrays of tables as ``[[...]]``)."""
    lines = [f"[[{header}]]" if array else f"[{header}]"]
    nested: list[str] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            nested += ["", *_table_lines(f"{header}.{key}", value)]
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:
                nested += ["", *_table_lines(f"{header}.{key}", item, array=True)]
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return lines + nested


def render_config(manager: Mapping[str, Any], milters: Sequence[Mapping[str, Any]],
                  conditions: Mapping[str, Any]) -> str:
    lines = _table_lines("manager", manager)
    for milter in milters:
        lines += ["", *_table_lines("milter", milter, array=True)]
    if conditions:
        lines += ["", *_table_lines("conditions", conditions)]
    return "\n".join(lines) + "\n"


@dataclass
class MmdDaemon:
    """A running ``milter-manager``; ``spec`` is where the MTA side connects."""

    spec: str
    socket_path: Path
    config_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    stopped: bool = field(default=False)
    signalled: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def log_lines(self, containing: str = "") -> list[str]:
        return [line for line in self.log().splitlines() if containing in line]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10.0) -> str:
        """Wait until ``text`` appears ``count`` times in the log; returns the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not logged {count} time(s) within {timeout} s "
                             f"(exit status {self.process.poll()}):\n{read_tail(self.log_path)}")

    def write_config(self, milters: Sequence[Mapping[str, Any]] = (),
                     manager: Mapping[str, Any] | None = None,
                     conditions: Mapping[str, Any] | None = None) -> None:
        settings = _manager_settings(self.spec, manager)
        (self.config_dir / "milter-manager.toml").write_text(
            render_config(settings, milters, conditions or {}))

    def reload(self, timeout: float = 10.0) -> str:
        """SIGHUP, then wait for the next "reloaded" line (a refused reload fails the test)."""
        before = self.log().count(RELOADED_LINE)
        refused = self.log().count("reload refused")
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(RELOADED_LINE) > before:
                return log
            if log.count("reload refused") > refused:
                raise AssertionError(f"reload refused:\n{read_tail(self.log_path)}")
            time.sleep(0.02)
        raise AssertionError(f"no reload within {timeout} s:\n{read_tail(self.log_path)}")

    def terminate(self) -> None:
        """One SIGTERM (a second one during shutdown would meet the default action)."""
        if not self.signalled and self.process.poll() is None:
            self.signalled = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM by PID; returns the exit status (SIGKILL and -9 if it hangs)."""
        if not self.stopped:
            self.stopped = True
            self.terminate()
            reap(self.process, timeout)
        code = self.process.returncode
        assert code is not None
        return code


def _manager_settings(spec: str, manager: Mapping[str, Any] | None) -> dict[str, Any]:
    # Postfix runs as its own user: the socket must be reachable for it
    settings: dict[str, Any] = {"connection_spec": spec, "unix_socket_mode": "0666"}
    settings.update(manager or {})
    return settings


class MmdDaemons:
    """Starts daemons in ``folder``; the first slot's socket path is stable across tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = reachable_dir(folder)
        self.running: list[MmdDaemon] = []
        self._started = 0

    def _free_slot(self) -> Path:
        used = {daemon.socket_path for daemon in self.running if not daemon.stopped}
        slot = 1
        while True:
            name = "mmd.sock" if slot == 1 else f"mmd{slot}.sock"
            path = self.folder / name
            if path not in used:
                return path
            slot += 1

    def start(self, milters: Sequence[Mapping[str, Any]] = (),
              manager: Mapping[str, Any] | None = None,
              conditions: Mapping[str, Any] | None = None,
              extra_args: Sequence[str] = (), timeout: float = 20.0) -> MmdDaemon:
        self._started += 1
        socket_path = self._free_slot()
        config_dir = reachable_dir(self.folder / f"config-{self._started}")
        log_path = self.folder / f"mmd-{self._started}.log"
        spec = f"unix:{socket_path}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # stderr, not the host's journal: the test reads the log lines
        for name in ("JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET", "LISTEN_FDS",
                     "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(name, None)
        (config_dir / "milter-manager.toml").write_text(
            render_config(_manager_settings(spec, manager), milters, conditions or {}))
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mmd.cli.manager", "-c", str(config_dir),
                 "--no-detection", "--no-dbus", *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=str(ROOT),
            )
        daemon = MmdDaemon(spec, socket_path, config_dir, log_path, process)
        self.running.append(daemon)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DaemonError(f"milter-manager exited with {process.returncode}:\n"
                                  f"{read_tail(log_path)}")
            # no probe connection: it would count as an MTA session in the log
            if READY_LINE in daemon.log() and socket_path.exists():
                return daemon
            time.sleep(0.02)
        raise DaemonError(f"milter-manager not ready after {timeout} s:\n{read_tail(log_path)}")

    def stop_all(self) -> list[tuple[MmdDaemon, int]]:
        """Stop every daemon started here; (daemon, exit status) for each."""
        for daemon in self.running:
            daemon.terminate()
        results = [(daemon, daemon.stop()) for daemon in self.running]
        self.running.clear()
        return results
