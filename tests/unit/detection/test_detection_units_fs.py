"""Enablement from links on disk (the fallback without a reachable systemd)."""

from __future__ import annotations

import os
from pathlib import Path

from detection_fakes import DEBIAN_EXPECTED, debian_root, unit, write

from mmd.detection.detect import detect
from mmd.detection.units import decide
from mmd.detection.units_fs import FilesystemUnitStates


def _link(root: Path, link: str, target: str) -> None:
    path = root / link.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def test_native_unit_states(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system/a.service", unit("/a"))
    write(tmp_path, "/lib/systemd/system/b.service", unit("/b"))
    write(tmp_path, "/lib/systemd/system/c.service", "[Service]\nExecStart=/c\n")
    _link(tmp_path, "/etc/systemd/system/multi-user.target.wants/a.service", "/lib/a.service")
    _link(tmp_path, "/etc/systemd/system/d.service", "/dev/null")
    source = FilesystemUnitStates(tmp_path)
    states = {n: source.unit_state(n) for n in ("a.service", "b.service", "c.service", "d.service")}
    assert {n: (s.load_state, s.unit_file_state) for n, s in states.items()} == {
        "a.service": ("loaded", "enabled"),
        "b.service": ("loaded", "disabled"),
        "c.service": ("loaded", "static"),
        "d.service": ("masked", "masked"),
    }
    assert [decide(states[n]).enabled for n in sorted(states)] == [True, False, False, False]
    assert source.unit_state("e.service").load_state == "not-found"


def test_sysv_scripts_follow_rc_links(tmp_path: Path) -> None:
    write(tmp_path, "/etc/init.d/spamass-milter", "#!/bin/sh\n")
    write(tmp_path, "/etc/init.d/clamav-milter", "#!/bin/sh\n")
    _link(tmp_path, "/etc/rc2.d/S01spamass-milter", "../init.d/spamass-milter")
    _link(tmp_path, "/etc/rc2.d/K01clamav-milter", "../init.d/clamav-milter")
    source = FilesystemUnitStates(tmp_path)
    spamass = source.unit_state("spamass-milter.service")
    clamav = source.unit_state("clamav-milter.service")
    assert (spamass.unit_file_state, decide(spamass).enabled) == ("generated", True)
    assert (clamav.unit_file_state, decide(clamav).enabled) == ("generated", False)


def test_socket_unit_link(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system/m.service", "[Service]\nExecStart=/m\n")
    write(tmp_path, "/lib/systemd/system/m.socket", "[Socket]\nListenStream=/run/m.sock\n")
    source = FilesystemUnitStates(tmp_path)
    assert decide(source.unit_state("m.service", ("m.socket",))).enabled is False
    _link(tmp_path, "/etc/systemd/system/sockets.target.wants/m.socket", "/lib/m.socket")
    assert decide(source.unit_state("m.service", ("m.socket",))).enabled is True


def test_detect_with_links_on_a_debian_root(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    _link(root, "/etc/systemd/system/multi-user.target.wants/opendkim.service", "/x")
    _link(root, "/etc/rc3.d/S02spamass-milter", "../init.d/spamass-milter")
    milters, errors = detect(root, FilesystemUnitStates(root))
    assert errors == []
    assert {m.name for m in milters} == set(DEBIAN_EXPECTED)
    assert sorted(m.name for m in milters if m.enabled) == ["opendkim", "spamass-milter"]


def test_generator_output_reads_generated(tmp_path: Path) -> None:
    write(tmp_path, "/run/systemd/generator.late/g.service", "[Service]\nExecStart=/g\n")
    _link(tmp_path, "/run/systemd/generator.late/multi-user.target.wants/g.service", "../g.service")
    state = FilesystemUnitStates(tmp_path).unit_state("g.service")
    assert (state.unit_file_state, state.wanted_by_target, decide(state).enabled) == (
        "generated",
        True,
        True,
    )
