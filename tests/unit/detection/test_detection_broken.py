"""A broken or missing file costs one line naming it; the other milters are still found."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detection_fakes import DEBIAN_EXPECTED, DEBIAN_UNITS, all_enabled, debian_root, write

from mmd.detection.detect import detect
from mmd.detection.model import DetectedMilter
from mmd.detection.units import UnitState


def _names(milters: Sequence[DetectedMilter]) -> set[str]:
    return {m.name for m in milters}


def test_directory_where_a_config_file_is_expected(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    (root / "etc/opendkim.conf").unlink()
    (root / "etc/opendkim.conf").mkdir()
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert errors == [
        "detection of opendkim: cannot read /etc/opendkim.conf: it is a directory; skipped"
    ]
    assert _names(milters) == set(DEBIAN_EXPECTED) - {"opendkim"}


def test_invalid_bytes_in_a_config_file(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(root, "/etc/milter-greylist/greylist.conf", b'socket "/run/\xff\xfe.sock"\n')
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert errors == [
        "detection of milter-greylist: cannot read /etc/milter-greylist/greylist.conf: "
        "not UTF-8 text (byte 13); skipped"
    ]
    assert _names(milters) == set(DEBIAN_EXPECTED) - {"milter-greylist"}


def test_unreadable_environment_file_and_unit_drop_in(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    (root / "etc/default/spamass-milter").unlink()
    (root / "etc/default/spamass-milter").mkdir()
    write(root, "/etc/systemd/system/enma.service.d/x.conf", b"[Service]\nExecStart=\xc3\n")
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert errors == [
        "detection of spamass-milter: cannot read /etc/default/spamass-milter: "
        "it is a directory; skipped",
        "detection of enma: cannot read /etc/systemd/system/enma.service.d/x.conf: "
        "not UTF-8 text (byte 20); skipped",
    ]
    assert _names(milters) == set(DEBIAN_EXPECTED) - {"spamass-milter", "enma"}


def test_missing_config_files_fall_back_to_packaged_defaults(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    for path in ("etc/opendkim.conf", "etc/opendmarc.conf", "etc/rspamd", "etc/enma.conf"):
        target = root / path
        if target.is_dir():
            for child in sorted(target.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            target.rmdir()
        else:
            target.unlink()
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert errors == []
    specs = {m.name: m.connection_spec for m in milters}
    assert specs["opendkim"] == "unix:/run/opendkim/opendkim.sock"
    assert specs["opendmarc"] == "unix:/run/opendmarc/opendmarc.sock"
    assert specs["rspamd"] == "inet:11332@localhost"
    assert specs["enma"] == "inet:10025@127.0.0.1"
    notes = {m.name: m.notes for m in milters}
    assert notes["enma"] == (
        "ExecStart names /etc/enma.conf, which does not exist",
        "no socket configured; using the packaged default inet:10025@127.0.0.1",
    )


def test_clamav_example_line_means_not_configured(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(
        root,
        "/etc/clamav/clamav-milter.conf",
        "# Comment out the next line\nExample\nMilterSocket /run/clamav/x.ctl\n",
    )
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert "clamav-milter" not in _names(milters)
    assert errors == [
        "detection of clamav-milter: clamav-milter.service is enabled but "
        "/etc/clamav/clamav-milter.conf: the file still holds the 'Example' line; skipped"
    ]


def test_unconfigured_and_disabled_is_silent(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(root, "/etc/clamav/clamav-milter.conf", "Example\n")
    units = all_enabled(DEBIAN_UNITS)
    units.add("clamav-milter.service", "generated", "inactive")
    milters, errors = detect(root, units)
    assert errors == []
    assert "clamav-milter" not in _names(milters)


def test_enabled_without_any_socket(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(root, "/etc/clamav/clamav-milter.conf", "User clamav\nMilterSocket ftp://nonsense\n")
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert "clamav-milter" not in _names(milters)
    assert errors == [
        "detection of clamav-milter: clamav-milter.service is enabled but no socket found "
        "in its unit, configuration or environment files; skipped"
    ]


class _BrokenUnits:
    """A unit source that fails for one unit, as a D-Bus error would."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.inner = all_enabled(DEBIAN_UNITS)

    def unit_state(self, name: str, socket_units: Sequence[str] = ()) -> UnitState:
        if name == self.failing:
            raise RuntimeError("org.freedesktop.DBus.Error.NoReply")
        return self.inner.unit_state(name, socket_units)


def test_unit_source_failure_skips_only_that_milter(tmp_path: Path) -> None:
    milters, errors = detect(debian_root(tmp_path), _BrokenUnits("rspamd.service"))
    assert errors == [
        "detection of rspamd failed (RuntimeError: org.freedesktop.DBus.Error.NoReply); skipped"
    ]
    assert _names(milters) == set(DEBIAN_EXPECTED) - {"rspamd"}


def test_empty_root_finds_nothing(tmp_path: Path) -> None:
    milters, errors = detect(tmp_path, all_enabled(DEBIAN_UNITS))
    # systemd says the units exist but no file is below the root: packaged
    # defaults still apply where the catalog has one, for any family.
    assert errors == [
        "detection of clamav-milter: clamav-milter.service is enabled but no socket found "
        "in its unit, configuration or environment files; skipped"
    ]
    assert "opendkim" in _names(milters)


def test_nothing_installed(tmp_path: Path) -> None:
    milters, errors = detect(debian_root(tmp_path), all_enabled({}))
    assert (milters, errors) == ([], [])
