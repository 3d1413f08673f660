"""Run milter-test-server and milter-manager as users do (a separate process), from this
checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class ToolRun:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def status_line(self) -> str:
        return self.stdout.splitlines()[0] if self.stdout else ""


def run_test_server(*args: str, timeout: float = 60.0) -> ToolRun:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "mmd.cli.test_server", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)
    return ToolRun(done.returncode, done.stdout, done.stderr)


def run_manager(*args: str, timeout: float = 120.0,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """milter-manager with ``args``; its exit status and output, whatever they are."""
    return subprocess.run([sys.executable, "-m", "mmd.cli.manager", *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
