"""The README's example transcripts, run against the real daemon and milter-test-server: each
command's output has the shape the README shows (the same lines; numbers in
``elapsed-time`` may differ; a line ``…`` stands for the rest of the output).

The examples are the README's fenced ``shell example=NAME`` blocks; NAME picks the setup
below. The README's socket path is replaced with the test daemon's.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import MmdDaemonFactory, ScriptedMilterFactory
from tests.support.cli_runner import ROOT
from tests.support.docblocks import ShellBlock, shell_blocks

README = ROOT / "README.md"
SOCKET = "unix:/run/milter-manager/milter-manager.sock"
PROGRAMS = {"milter-test-server": [sys.executable, "-m", "mmd.cli.test_server"],
            "milter-manager": [sys.executable, "-m", "mmd.cli.manager"]}
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")


def examples() -> dict[str, ShellBlock]:
    return {block.tags["example"]: block for block in shell_blocks(README)
            if "example" in block.tags}


def transcript(block: ShellBlock) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every ``$ `` line of the block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"{block.where()}: output before the first command"
            steps[-1][1].append(line)
    return steps


def shape(line: str) -> str:
    return NUMBER.sub("N", line) if line.startswith("elapsed-time: ") else line


def same_shape(expected: list[str], got: list[str]) -> bool:
    if expected and expected[-1] == "…":
        return [shape(x) for x in expected[:-1]] == [shape(x) for x in got[: len(expected) - 1]]
    return [shape(x) for x in expected] == [shape(x) for x in got]


def run_example(block: ShellBlock, spec: str) -> None:
    for command, expected in transcript(block):
        words = shlex.split(command.replace(SOCKET, spec))
        result = subprocess.run([*PROGRAMS[words[0]], *words[1:]], capture_output=True,
                                text=True, timeout=60, cwd=ROOT, check=False)
        got = result.stdout.splitlines()
        assert same_shape(expected, got), (
            f"{block.where()}: `{command}` printed\n{result.stdout}{result.stderr}"
            f"\nwhere the README shows\n" + "\n".join(expected))


def test_every_example_has_a_setup() -> None:
    assert sorted(examples()) == sorted(SETUPS)


def _no_children(factory: MmdDaemonFactory, scripted: ScriptedMilterFactory) -> str:
    return factory().spec


def _header_child(factory: MmdDaemonFactory, scripted: ScriptedMilterFactory) -> str:
    spec, _ = scripted(eom={"add_header": [["X-A", "1"], ["X-B", "2"]]})
    return factory(milters=[{"name": "headers", "connection_spec": spec}]).spec


def _no_daemon(factory: MmdDaemonFactory, scripted: ScriptedMilterFactory) -> str:
    return f"unix:{ROOT}/nonexistent/milter-manager.sock"


SETUPS: dict[str, Callable[[MmdDaemonFactory, ScriptedMilterFactory], str]] = {
    "no-children": _no_children,
    "header-child": _header_child,
    "no-daemon": _no_daemon,
}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_readme_example(name: str, mmd_daemon: MmdDaemonFactory,
                        scripted_milter: ScriptedMilterFactory) -> None:
    spec = SETUPS[name](mmd_daemon, scripted_milter)
    block = examples()[name]
    if name == "no-daemon":
        # the README's own path in the expected line: compare against the spec used
        block = ShellBlock(block.path, block.line, block.tags, block.text.replace(SOCKET, spec))
    run_example(block, spec)


def test_shape_comparison_can_fail() -> None:
    assert same_shape(["status: pass", "elapsed-time: 0.1 seconds"],
                      ["status: pass", "elapsed-time: 0.00031 seconds"])
    assert not same_shape(["status: pass", "elapsed-time: 0.1 seconds"],
                          ["status: accept", "elapsed-time: 0.1 seconds"])
    assert same_shape(["a", "…"], ["a", "b", "c"])
    assert not same_shape(["a", "b"], ["a"])
    assert Path(README).exists()
