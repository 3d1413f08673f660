"""The control implementation on its own: reloads and runtime switches read files off the
event loop and install a generation only when it is whole (issue 15)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from mmd.adapters.server import Generation
from mmd.control import InvalidConfiguration
from mmd.daemon import generation, live
from mmd.daemon.controller import Controller
from mmd.daemon.generation import Options, load_generation
from mmd.detection.model import DetectedMilter

SPAM = '[[milter]]\nname = "spam"\nconnection_spec = "inet:9@127.0.0.1"\n'


def _started(config_dir: Path) -> Controller:
    control = Controller(Options(config_dir=config_dir))
    control.start(load_generation(control.options, {}, 0))
    return control


def test_reload_reads_files_and_detects_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "milter-manager.toml").write_text(SPAM)
    threads: list[str] = []
    fingerprint = live.fingerprint

    def noting_fingerprint(config_dir: Path) -> str:
        threads.append(f"fingerprint {threading.current_thread() is threading.main_thread()}")
        return fingerprint(config_dir)

    def detector() -> tuple[list[DetectedMilter], list[str]]:
        threads.append(f"detection {threading.current_thread() is threading.main_thread()}")
        return [], []

    monkeypatch.setattr(live, "fingerprint", noting_fingerprint)
    control = Controller(Options(config_dir=tmp_path, detector=detector))

    async def scenario() -> str:
        control.start(load_generation(control.options, {}, 0))
        threads.clear()
        return await control.reload()

    assert asyncio.run(scenario()) == "reloaded: 1 milters: spam"
    assert threads == ["fingerprint False", "detection False"]  # both in the executor


def test_a_refused_reload_keeps_the_generation_in_force(tmp_path: Path) -> None:
    main = tmp_path / "milter-manager.toml"
    main.write_text(SPAM)
    control = _started(tmp_path)
    assert control.server is not None
    before = control.server.generation
    main.write_text(SPAM + "connection_timeout = 0\n")

    with pytest.raises(InvalidConfiguration, match="0 is not a time-out"):
        asyncio.run(control.reload())
    assert control.server.generation is before
    assert control.state() == "running"
    assert [m.name for m in control.list_milters()] == ["spam"]


def test_enabling_a_milter_whose_list_file_is_gone_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = tmp_path / "trusted.txt"
    listed.write_text("example.com\n")
    (tmp_path / "milter-manager.toml").write_text(
        f'[conditions.trusted_domain]\nfiles = ["{listed}"]\n\n'
        + SPAM + 'enabled = false\napplicable_conditions = ["Trusted Domain"]\n'
    )
    control = _started(tmp_path)
    assert control.server is not None
    before = control.server.generation
    listed.unlink()
    on_loop: list[bool] = []
    build = generation.build_generation

    def noting_build(*args: object, **kwargs: object) -> object:
        on_loop.append(threading.current_thread() is threading.main_thread())
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("mmd.daemon.controller.build_generation", noting_build)
    with pytest.raises(InvalidConfiguration, match="cannot read list file"):
        asyncio.run(control.set_milter_enabled("spam", True, "test"))
    assert on_loop == [False]
    assert control.server.generation is before
    assert control.get_milter("spam").enabled is False

    listed.write_text("example.com\n")
    asyncio.run(control.set_milter_enabled("spam", True, "test"))
    assert [c.name for c in control.server.generation.children] == ["spam"]
    assert control.get_milter("spam").enabled is True


def test_only_a_live_update_may_keep_child_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload asks every child afresh; a live update from systemd keeps what is kept when
    the children are the same (``ServerState.install`` decides that)."""
    (tmp_path / "milter-manager.toml").write_text(SPAM)
    control = _started(tmp_path)
    assert control.server is not None
    installs: list[bool] = []
    install = control.server.install

    def noting_install(generation: Generation, keep_connections: bool = False) -> None:
        installs.append(keep_connections)
        install(generation, keep_connections)

    monkeypatch.setattr(control.server, "install", noting_install)

    async def scenario() -> None:
        await control.reload()
        await control.refresh_detection("spam.service started")
        await control.set_milter_enabled("spam", False, "test")

    asyncio.run(scenario())
    assert installs == [False, True, False]
