"""The pystemd adapter against a real systemd (PID 1 of the throwaway container).

Fixtures ``systemd_container`` (``run(cmd, check=True)`` inside a booted
container) and ``container_python`` (the venv's python, as seen inside) are
provided by the system-test harness. Debian 12 facts checked here:
opendkim has a native unit ("enabled"); spamass-milter only has a SysV
script, so its unit is "generated" and only multi-user.target's Wants says
whether it is enabled.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

REPO = Path(__file__).resolve().parents[2]

_SNIPPET = """
import dataclasses, json, sys
sys.path.insert(0, {repo!r})
from mmd.adapters.systemd_units import detect_installed_milters, system_unit_states
from mmd.detection.units import decide

out = {{"units": {{}}}}
with system_unit_states() as units:
    for name in ("opendkim.service", "spamass-milter.service", "no-such-milter.service"):
        state = units.unit_state(name)
        out["units"][name] = dict(dataclasses.asdict(state), enabled=decide(state).enabled)
milters, errors = detect_installed_milters()
out["milters"] = {{m.name: dataclasses.asdict(m) for m in milters}}
out["errors"] = errors
print(json.dumps(out))
"""


class Container(Protocol):
    def run(self, cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]: ...


def _ask(container: Container, python: str) -> dict[str, Any]:
    done = container.run([python, "-c", _SNIPPET.format(repo=str(REPO))])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def restore_enablement(systemd_container: Container) -> Iterator[None]:
    yield
    systemd_container.run(["systemctl", "enable", "opendkim.service"], check=False)
    systemd_container.run(["systemctl", "enable", "spamass-milter"], check=False)
    systemd_container.run(["systemctl", "daemon-reload"], check=False)


@pytest.mark.system
def test_unit_states_from_real_systemd(systemd_container: Container, container_python: str) -> None:
    result = _ask(systemd_container, container_python)
    opendkim = result["units"]["opendkim.service"]
    assert (opendkim["load_state"], opendkim["unit_file_state"]) == ("loaded", "enabled")
    assert opendkim["enabled"] is True
    assert opendkim["fragment_path"] == "/lib/systemd/system/opendkim.service"

    spamass = result["units"]["spamass-milter.service"]
    assert (spamass["load_state"], spamass["unit_file_state"]) == ("loaded", "generated")
    assert spamass["wanted_by_target"] is True
    assert spamass["enabled"] is True

    missing = result["units"]["no-such-milter.service"]
    assert missing["load_state"] == "not-found"
    assert missing["enabled"] is False

    milters = result["milters"]
    assert milters["opendkim"]["connection_spec"] == "unix:/run/opendkim/opendkim.sock"
    assert milters["opendkim"]["enabled"] is True
    assert milters["spamass-milter"]["connection_spec"] == (
        "unix:/var/spool/postfix/spamass/spamass.sock"
    )
    assert milters["spamass-milter"]["enabled"] is True
    assert milters["clamav-milter"]["connection_spec"] == ("unix:/var/run/clamav/clamav-milter.ctl")
    assert result["errors"] == []


@pytest.mark.system
@pytest.mark.usefixtures("restore_enablement")
def test_disabling_is_seen_after_daemon_reload(
    systemd_container: Container, container_python: str
) -> None:
    systemd_container.run(["systemctl", "disable", "opendkim.service"])
    # a SysV script: systemctl hands over to systemd-sysv-install (rc links)
    systemd_container.run(["systemctl", "disable", "spamass-milter"])
    systemd_container.run(["systemctl", "daemon-reload"])
    result = _ask(systemd_container, container_python)

    opendkim = result["units"]["opendkim.service"]
    assert (opendkim["unit_file_state"], opendkim["enabled"]) == ("disabled", False)
    spamass = result["units"]["spamass-milter.service"]
    assert spamass["unit_file_state"] == "generated"
    assert (spamass["wanted_by_target"], spamass["enabled"]) == (False, False)
    # installed but disabled milters are still reported
    assert result["milters"]["opendkim"]["enabled"] is False
    assert result["milters"]["spamass-milter"]["enabled"] is False
