"""Child connections kept between MTA connections (``reuse_child_connections``), against
real libmilter children (python3-milter, tests/support/children/scripted_milter.py).

A scripted child records one ``negotiate`` event per connection (libmilter negotiates once
per connection) and one ``connect`` per SMTP session: N sessions over one kept connection
are one negotiate and N connects. Sessions are milter-test-server runs through mmd.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import MmdDaemonFactory
from tests.support.cli_runner import ToolRun, run_test_server
from tests.support.mmd_daemon import MmdDaemon
from tests.support.scripted import Recorder, ScriptedMilters

SESSIONS = 4
HEADER_CHILD = {"eom": {"add_header": [["X-Reuse-Test", "seen"]]}}
REJECTING_CHILD = {"envrcpt": {"verdict": "reject", "match": "refused"}}


@pytest.fixture
def children(integration_dir: Path) -> Iterator[ScriptedMilters]:
    milters = ScriptedMilters(Path(tempfile.mkdtemp(prefix="r", dir=integration_dir)))
    yield milters
    milters.stop_all()


def child(name: str, spec: str) -> dict[str, Any]:
    return {"name": name, "connection_spec": spec}


def session(daemon: MmdDaemon, number: int, *args: str) -> ToolRun:
    run = run_test_server("-s", daemon.spec, "--output-message", *args)
    daemon.wait_for_log("[session][end]", count=number)
    assert run.exit_code == 0, run
    return run


def connections(recorder: Recorder) -> int:
    return recorder.names().count("negotiate")


def test_one_connection_per_child_serves_every_session(
    children: ScriptedMilters, mmd_daemon: MmdDaemonFactory
) -> None:
    first, first_events = children.start(**HEADER_CHILD)
    second, second_events = children.start()
    daemon = mmd_daemon(milters=[child("first", first), child("second", second)])
    for number in range(1, SESSIONS + 1):
        run = session(daemon, number)
        assert run.status_line == "status: pass", run
        assert "+ X-Reuse-Test: seen" in run.stdout.splitlines(), run
    for events in (first_events, second_events):
        assert connections(events) == 1, events.names()
        assert events.names().count("connect") == SESSIONS
        # libmilter's close callback ran for every session but the last (QUIT_NC)
        assert events.names().count("close") == SESSIONS - 1


def test_reuse_off_connects_for_every_session(
    children: ScriptedMilters, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, events = children.start(**HEADER_CHILD)
    daemon = mmd_daemon(milters=[child("only", spec)],
                        manager={"reuse_child_connections": False})
    for number in range(1, SESSIONS + 1):
        session(daemon, number)
    assert connections(events) == SESSIONS


def test_one_child_opted_out_connects_for_every_session(
    children: ScriptedMilters, mmd_daemon: MmdDaemonFactory
) -> None:
    kept_spec, kept_events = children.start(**HEADER_CHILD)
    fresh_spec, fresh_events = children.start()
    daemon = mmd_daemon(milters=[child("kept", kept_spec),
                                 {**child("fresh", fresh_spec), "reuse_connection": False}])
    for number in range(1, SESSIONS + 1):
        run = session(daemon, number)
        assert "+ X-Reuse-Test: seen" in run.stdout.splitlines(), run
    assert connections(kept_events) == 1, kept_events.names()
    assert connections(fresh_events) == SESSIONS, fresh_events.names()
    assert fresh_events.names().count("connect") == SESSIONS


def test_verdicts_and_changes_are_the_same_with_reuse_on_and_off(
    children: ScriptedMilters, mmd_daemon: MmdDaemonFactory
) -> None:
    runs: dict[bool, list[list[str]]] = {}
    counts: dict[bool, int] = {}
    for reuse in (True, False):
        header, header_events = children.start(**HEADER_CHILD)
        rejecting, _ = children.start(**REJECTING_CHILD)
        daemon = mmd_daemon(milters=[child("header", header), child("rejecting", rejecting)],
                            manager={"reuse_child_connections": reuse})
        outputs = []
        for number, recipient in enumerate(
            ["ok@example.org", "refused@example.org", "ok@example.org", "ok@example.org"], 1
        ):
            stdout = session(daemon, number, "-r", recipient).stdout
            outputs.append([li for li in stdout.splitlines() if "elapsed-time" not in li])
        runs[reuse] = outputs
        counts[reuse] = connections(header_events)
        daemon.stop()
    assert runs[True] == runs[False]
    assert runs[True][1][0] == "status: reject"
    # the refused session ended inside a message (ABORT): its connections were closed,
    # the third session opened new ones and the fourth kept them
    assert counts == {True: 2, False: SESSIONS}


def test_child_restarted_between_sessions_still_gives_its_verdict(
    children: ScriptedMilters, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, events = children.start(**HEADER_CHILD)
    daemon = mmd_daemon(milters=[child("restarting", spec)])
    assert "+ X-Reuse-Test: seen" in session(daemon, 1).stdout.splitlines()
    children.restart(spec)  # the kept connection is dead now
    run = session(daemon, 2)
    assert run.status_line == "status: pass", run
    assert "+ X-Reuse-Test: seen" in run.stdout.splitlines(), run
    assert connections(events) == 2
    assert "[milter][error]" not in daemon.log(), daemon.log()


def test_reload_closes_kept_connections(
    children: ScriptedMilters, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, events = children.start(**HEADER_CHILD)
    daemon = mmd_daemon(milters=[child("kept", spec)])
    session(daemon, 1)
    session(daemon, 2)
    assert connections(events) == 1
    closes = events.names().count("close")
    daemon.reload()
    # the kept connection is closed at once (QUIT: libmilter runs the close callback)
    deadline = time.monotonic() + 10
    while events.names().count("close") == closes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events.names().count("close") == closes + 1, events.names()
    run = session(daemon, 3)
    assert "+ X-Reuse-Test: seen" in run.stdout.splitlines(), run
    assert connections(events) == 2  # the old generation's connection was not used
