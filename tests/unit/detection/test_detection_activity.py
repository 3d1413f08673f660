"""Enabled but not running: listed as inactive, left out of sessions, one line per change."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from mmd.config.show import render_show_config
from mmd.daemon.controller import Controller
from mmd.daemon.generation import Loaded, Options, build_generation, load
from mmd.detection.activity import changes, inactive_milters, take_out_inactive
from mmd.detection.detect import detect
from mmd.detection.model import DetectedMilter
from mmd.detection.units import UnitState, not_running
from tests.support.detected import detected_milter
from tests.unit.detection.detection_fakes import FakeUnits, debian_root


def _state(active: str, socket_active: bool = False) -> UnitState:
    return UnitState(name="opendkim.service", load_state="loaded", unit_file_state="enabled",
                     active_state=active, socket_active=socket_active)  # fmt: skip


@pytest.mark.parametrize("active", ["active", "activating", "reloading", "deactivating", ""])
def test_running_or_unknown_is_not_inactive(active: str) -> None:
    assert not_running(_state(active)) == ""


@pytest.mark.parametrize("active", ["inactive", "failed"])
def test_stopped_or_failed_is_inactive_unless_its_socket_listens(active: str) -> None:
    assert not_running(_state(active)) == f"opendkim.service is {active}"
    assert not_running(_state(active, socket_active=True)) == ""


def test_detection_marks_only_enabled_units(tmp_path: Path) -> None:
    units = FakeUnits()
    units.add("opendkim.service", "enabled", active="failed")
    units.add("milter-greylist.service", "disabled", active="inactive")
    milters, _ = detect(debian_root(tmp_path), units)
    found = {m.name: m for m in milters}
    assert found["opendkim"].inactive == "opendkim.service is failed"
    assert found["milter-greylist"].enabled is False
    assert found["milter-greylist"].inactive == ""  # disabled: not "inactive", just off


OPENDKIM = detected_milter(
    "opendkim", "unix:/run/opendkim/opendkim.sock", "/etc/opendkim.conf",
    active_state="failed", unit_file_state="enabled", inactive="opendkim.service is failed",
)


def _options(config_dir: Path, *detected: DetectedMilter) -> Options:
    config_dir.mkdir(exist_ok=True)
    return Options(config_dir=config_dir, detector=lambda: (list(detected), []))


def test_show_config_says_inactive_and_sessions_leave_it_out(tmp_path: Path) -> None:
    config = load(_options(tmp_path / "etc", OPENDKIM), {})
    [milter] = config.milters
    assert milter.enabled is False
    assert inactive_milters(config) == {"opendkim": "opendkim.service is failed"}
    text = render_show_config(config)
    assert (
        "# inactive: opendkim.service is failed; sessions skip it until it is active again "
        "(detected: opendkim.service, /etc/opendkim.conf)\n"
        "enabled = false\n"
    ) in text, text
    assert build_generation(config, 1).children == ()


def test_a_configured_socket_wins(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "milter-manager.toml").write_text(
        '[[milter]]\nname = "opendkim"\nconnection_spec = "inet:8891@127.0.0.1"\n'
    )
    config = load(_options(etc, OPENDKIM), {})
    assert config.milters[0].enabled is True
    assert inactive_milters(config) == {}


def test_configured_off_stays_off_and_is_not_called_inactive(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "milter-manager.toml").write_text('[[milter]]\nname = "opendkim"\nenabled = false\n')
    config = load(_options(etc, OPENDKIM), {})
    assert config.milters[0].enabled is False
    assert inactive_milters(config) == {}


def test_changes_between_two_loads() -> None:
    assert changes({}, {"a": "a.service is failed"}) == [("a", False, "a.service is failed")]
    assert changes({"a": "x"}, {"a": "y"}) == []  # still inactive: no new line
    assert changes({"a": "a.service is failed"}, {}) == [("a", True, "a.service is failed")]


def test_take_out_inactive_leaves_other_milters_alone(tmp_path: Path) -> None:
    config = load(_options(tmp_path / "etc"), {})
    take_out_inactive(config, [OPENDKIM])  # opendkim is not in this configuration
    assert config.milters == []


def test_the_daemon_warns_once_per_change_and_lists_it_inactive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"detected": OPENDKIM}
    (tmp_path / "etc").mkdir()
    daemon = Controller(Options(config_dir=tmp_path / "etc",
                                detector=lambda: ([state["detected"]], [])))  # fmt: skip
    config = load(daemon.options, {})
    signals: list[tuple[str, bool, str]] = []
    daemon.subscribe(lambda *args: signals.append(args), lambda *args: None)

    async def start_and_reload_twice() -> None:
        daemon.start(Loaded(config, build_generation(config, 0), ""))  # at start
        await daemon.reload()  # still failed: nothing new
        [info] = daemon.list_milters()
        assert (info.enabled, info.reachable) == (False, False)
        assert info.last_error == "inactive: opendkim.service is failed"
        state["detected"] = DetectedMilter(
            name="opendkim", connection_spec=OPENDKIM.connection_spec, enabled=True,
            unit="opendkim.service", origin=OPENDKIM.origin, active_state="active",
        )  # fmt: skip
        await daemon.reload()

    with caplog.at_level(logging.INFO, logger="mmd.daemon"):
        asyncio.run(start_and_reload_twice())
    lines = [r.getMessage() for r in caplog.records if "inactive" in r.getMessage()]
    assert lines == [
        "milter opendkim is inactive (opendkim.service is failed): sessions skip it",
        "milter opendkim is no longer inactive (was: opendkim.service is failed)",
    ]
    assert [(name, enabled) for name, enabled, _ in signals] == [
        ("opendkim", False),
        ("opendkim", True),
    ]
    [info] = daemon.list_milters()
    assert (info.enabled, info.reachable, info.last_error) == (True, True, "")
    assert daemon.server is not None
    assert [c.name for c in daemon.server.generation.children] == ["opendkim"]
