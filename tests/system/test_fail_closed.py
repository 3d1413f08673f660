"""A broken configuration at start never lets mail through unfiltered (issue 13, defect 3).

The socket-activated start after a reboot, for real: the socket unit listens, the first MTA
connection starts the daemon, which finds a configuration a reload would refuse. It must
still answer, with temporary-failure for every session, and say why in `systemctl status`
and the journal; once the file is fixed, `systemctl reload` makes it serve normally.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.container import SystemdContainer
from tests.support.probes import journal_cursor, manager_entries, show, wait_for

pytestmark = pytest.mark.system

SERVICE = "milter-manager.service"
SOCKET_UNIT = "milter-manager.socket"
SOCKET = "/run/milter-manager/milter-manager.sock"
MAIN = "/etc/milter-manager/milter-manager.toml"
DROP_IN = "/etc/milter-manager/milter-manager.d/50-fail-closed-test.toml"

BROKEN = {
    "malformed-toml": (MAIN, '[manager\nfallback_status = "reject"\n', f"{MAIN}:1: (syntax): "),
    "status-typo": (
        MAIN,
        '[manager]\nfallback_status = "tempfail"\n',
        f"{MAIN}:2: fallback_status: unknown status 'tempfail'",
    ),
    "zero-timeout": (
        DROP_IN,
        '[[milter]]\nname = "extra"\nconnection_spec = "inet:10099@127.0.0.1"\n'
        "connection_timeout = 0\n",
        f"{DROP_IN}:4: connection_timeout: 0 is not a time-out",
    ),
}


def mta_session(c: SystemdContainer) -> str:
    """One session with the installed milter-test-server, as Postfix's user; its status."""
    result = c.run(["milter-test-server", "-s", f"unix:{SOCKET}"], user="postfix",
                   check=False, timeout=90)
    assert result.stdout.startswith("status: "), (result.stdout, result.stderr)
    return result.stdout.splitlines()[0]


def stop_all(c: SystemdContainer) -> None:
    c.run(["systemctl", "stop", SERVICE, SOCKET_UNIT], check=False)
    c.run(["systemctl", "reset-failed", SERVICE, SOCKET_UNIT], check=False)


@pytest.fixture
def clean_start(installed_mmd: SystemdContainer) -> Iterator[SystemdContainer]:
    """The state after a reboot: only the socket listens. The old main file comes back after."""
    c = installed_mmd
    saved = c.run(["cat", MAIN], check=False)
    stop_all(c)
    yield c
    stop_all(c)
    c.run(["rm", "-f", DROP_IN, MAIN])
    if saved.returncode == 0:
        c.write_file(MAIN, saved.stdout)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configuration_at_socket_activated_start_fails_closed(
    clean_start: SystemdContainer, case: str
) -> None:
    c = clean_start
    path, text, problem = BROKEN[case]
    c.run(["rm", "-f", MAIN, DROP_IN])
    c.write_file(path, text)
    c.run(["systemctl", "start", SOCKET_UNIT])
    assert show(c, SERVICE, "ActiveState")["ActiveState"] == "inactive"
    cursor = journal_cursor(c)

    # the first connection starts the daemon: it answers, and not with mail let through
    assert mta_session(c) == "status: temporary-failure"
    state = show(c, SERVICE, "ActiveState", "SubState", "StatusText")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["StatusText"].startswith(
        "configuration refused, every session gets temporary-failure: "), state
    assert problem in state["StatusText"]
    shown = c.run(["systemctl", "status", "--no-pager", "--full", SERVICE], check=False).stdout
    assert f'Status: "{state["StatusText"]}"' in shown

    def refusal() -> list[dict[str, str]]:
        return manager_entries(c, cursor, MMD_EVENT="configuration-error")

    wait_for(lambda: len(refusal()) >= 2, "the configuration-error entries")
    reasons = [entry["MMD_REASON"] for entry in refusal()]
    assert any(reason.startswith(problem) for reason in reasons), reasons
    assert any(entry.get("MMD_STATUS") == "refused" for entry in refusal())
    assert all(entry["PRIORITY"] == "3" for entry in refusal())
    sessions = manager_entries(c, cursor, MMD_EVENT="session-end")
    assert [entry["MMD_STATUS"] for entry in sessions] == ["temporary-failure"]

    # fixed file + reload: the same process serves normally
    pid = show(c, SERVICE, "MainPID")["MainPID"]
    c.run(["rm", "-f", path])
    reload_cursor = journal_cursor(c)
    c.run(["systemctl", "reload", SERVICE], timeout=130)
    assert [e["MMD_STATUS"] for e in manager_entries(c, reload_cursor, MMD_EVENT="reload")] == [
        "success"
    ]
    after = show(c, SERVICE, "MainPID", "StatusText")
    assert after["MainPID"] == pid
    assert "refused" not in after["StatusText"]
    assert " sessions active, " in after["StatusText"]


def test_show_config_fails_on_the_file_the_daemon_refuses(clean_start: SystemdContainer) -> None:
    c = clean_start
    c.write_file(MAIN, '[[milter]]\nname = "extra"\nconnection_spec = "inet:10099@127.0.0.1"\n'
                       'applicable_conditions = ["No Such Condition"]\n')
    result = c.run(["milter-manager", "--show-config"], check=False)
    assert result.returncode == 1, result.stdout
    assert f"{MAIN}:4: milter extra: applicable_conditions: " in result.stderr
    assert result.stdout == ""
    # and the daemon refuses the same file at start
    c.run(["systemctl", "start", SOCKET_UNIT])
    assert mta_session(c) == "status: temporary-failure"
    assert f"{MAIN}:4: milter extra" in show(c, SERVICE, "StatusText")["StatusText"]
