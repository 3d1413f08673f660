"""Detection on a fake Debian 12 root with every catalog milter installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from detection_fakes import (
    DEBIAN_EXPECTED,
    DEBIAN_UNITS,
    FakeUnits,
    all_enabled,
    debian_root,
    write,
)

from mmd.detection.catalog import CATALOG
from mmd.detection.detect import detect


def test_every_catalog_milter_is_covered_by_the_debian_fixture() -> None:
    assert set(DEBIAN_EXPECTED) == {entry.name for entry in CATALOG}


def test_every_milter_is_found_with_its_socket_and_source(tmp_path: Path) -> None:
    milters, errors = detect(debian_root(tmp_path), all_enabled(DEBIAN_UNITS))
    assert errors == []
    found = {m.name: (m.connection_spec, m.origin) for m in milters}
    expected = {
        name: (spec, f"detected: {DEBIAN_UNITS[name]}, {source}")
        for name, (spec, source) in DEBIAN_EXPECTED.items()
    }
    assert found == expected
    assert all(m.enabled for m in milters)


def test_result_keeps_catalog_order(tmp_path: Path) -> None:
    milters, _ = detect(debian_root(tmp_path), all_enabled(DEBIAN_UNITS))
    assert [m.name for m in milters] == [entry.name for entry in CATALOG]


def test_default_conditions_and_descriptions(tmp_path: Path) -> None:
    milters, _ = detect(debian_root(tmp_path), all_enabled(DEBIAN_UNITS))
    by_name = {m.name: m for m in milters}
    assert by_name["milter-greylist"].applicable_conditions == (
        "S25R",
        "Remote Network",
        "Unauthenticated",
        "Trusted Domain",
        "Stress Notify",
    )
    for name in ("spamass-milter", "rspamd"):
        assert by_name[name].applicable_conditions == (
            "Remote Network",
            "Unauthenticated",
            "No Stress",
        )
    for name in ("clamav-milter", "opendkim", "opendmarc", "enma"):
        assert by_name[name].applicable_conditions == ()
    assert all(m.description for m in milters)


def test_greylist_largest_tarpit_becomes_extra_timeout(tmp_path: Path) -> None:
    milters, _ = detect(debian_root(tmp_path), all_enabled(DEBIAN_UNITS))
    greylist = next(m for m in milters if m.name == "milter-greylist")
    assert greylist.extra_timeout == 90.0  # "1m30s" beats "5s"
    assert all(m.extra_timeout == 0.0 for m in milters if m.name != "milter-greylist")


def test_spamass_packaged_default_depends_on_postfix(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    (root / "usr/sbin/postfix").unlink()
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    spamass = next(m for m in milters if m.name == "spamass-milter")
    assert spamass.connection_spec == "unix:/var/run/spamass/spamass.sock"
    assert any("packaged default" in note for note in spamass.notes)


def test_spamass_socket_from_etc_default(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(root, "/etc/default/spamass-milter", 'OPTIONS="-m"\nSOCKET="/run/spamass/other.sock"\n')
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    spamass = next(m for m in milters if m.name == "spamass-milter")
    assert spamass.connection_spec == "unix:/run/spamass/other.sock"
    assert spamass.origin == "detected: spamass-milter.service, /etc/default/spamass-milter SOCKET"
    assert spamass.notes == ()


def test_generated_units_follow_target_wants(tmp_path: Path) -> None:
    """Debian 12: GetUnitFileState says "generated" whatever the rc links say."""
    units = all_enabled(DEBIAN_UNITS)
    units.add("clamav-milter.service", "generated", "inactive", wanted_by_target=False)
    milters, errors = detect(debian_root(tmp_path), units)
    assert errors == []
    by_name = {m.name: m for m in milters}
    assert by_name["clamav-milter"].enabled is False
    assert by_name["clamav-milter"].unit_file_state == "generated"
    assert by_name["clamav-milter"].active_state == "inactive"
    assert by_name["spamass-milter"].enabled is True


def test_disabled_milter_is_kept_not_installed_is_omitted(tmp_path: Path) -> None:
    units = FakeUnits()
    units.add("opendkim.service", "disabled", "inactive")
    units.add("opendmarc.service", "masked", "inactive")
    milters, errors = detect(debian_root(tmp_path), units)
    assert errors == []
    assert [(m.name, m.enabled) for m in milters] == [("opendkim", False), ("opendmarc", False)]


def test_catalog_socket_units_are_passed_to_the_source(tmp_path: Path) -> None:
    units = all_enabled(DEBIAN_UNITS)
    detect(debian_root(tmp_path), units)
    asked = dict(units.asked)
    assert set(asked) >= set(DEBIAN_UNITS.values())


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ("Socket inet:8891@localhost\n", "inet:8891@localhost"),
        ("Socket inet:8891\n", "inet:8891@127.0.0.1"),
        ("socket /run/x.sock\n", "unix:/run/x.sock"),
        ("Socket local:/run/opendkim/o.sock # comment\n", "unix:/run/opendkim/o.sock"),
    ],
)
def test_opendkim_socket_forms(tmp_path: Path, conf: str, expected: str) -> None:
    root = debian_root(tmp_path)
    write(root, "/etc/opendkim.conf", conf)
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    assert next(m for m in milters if m.name == "opendkim").connection_spec == expected


def test_opendkim_x_option_and_drop_in_override(tmp_path: Path) -> None:
    """A drop-in resets ExecStart and names another config file; its -p wins over the file."""
    root = debian_root(tmp_path)
    write(root, "/etc/opendkim-alt.conf", "Socket inet:9999@127.0.0.1\n")
    write(
        root,
        "/etc/systemd/system/opendkim.service.d/override.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/opendkim -x /etc/opendkim-alt.conf\n",
    )
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    opendkim = next(m for m in milters if m.name == "opendkim")
    assert opendkim.connection_spec == "inet:9999@127.0.0.1"
    assert opendkim.origin == "detected: opendkim.service, /etc/opendkim-alt.conf"

    write(
        root,
        "/etc/systemd/system/opendkim.service.d/zz-socket.conf",
        "[Service]\nExecStart=\n"
        "ExecStart=/usr/sbin/opendkim -P /run/o.pid -p local:/run/o/o.sock\n",
    )
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    opendkim = next(m for m in milters if m.name == "opendkim")
    assert opendkim.connection_spec == "unix:/run/o/o.sock"
    assert opendkim.origin == (
        "detected: opendkim.service, "
        "/etc/systemd/system/opendkim.service.d/zz-socket.conf ExecStart -p"
    )


def test_unit_in_etc_overrides_lib(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(
        root,
        "/etc/systemd/system/opendmarc.service",
        "[Service]\nExecStart=/usr/sbin/opendmarc -p inet:8893@localhost\n",
    )
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    assert next(m for m in milters if m.name == "opendmarc").connection_spec == (
        "inet:8893@localhost"
    )


def test_socket_unit_listen_stream(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    (root / "etc/opendmarc.conf").unlink()
    write(root, "/lib/systemd/system/opendmarc.socket", "[Socket]\nListenStream=127.0.0.1:8893\n")
    units = all_enabled(DEBIAN_UNITS)
    units.add("opendmarc.service", "static", "inactive", socket_units=("opendmarc.socket",))
    milters, _ = detect(root, units)
    opendmarc = next(m for m in milters if m.name == "opendmarc")
    assert opendmarc.connection_spec == "inet:8893@127.0.0.1"
    assert opendmarc.origin == (
        "detected: opendmarc.service, /lib/systemd/system/opendmarc.socket ListenStream"
    )
    assert opendmarc.enabled is False  # static, socket not enabled, no target wants it


def test_rspamd_milter_no_means_not_a_milter(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    write(root, "/etc/rspamd/local.d/worker-proxy.inc", "milter = no;\n")
    milters, errors = detect(root, all_enabled(DEBIAN_UNITS))
    assert "rspamd" not in {m.name for m in milters}
    assert errors == [
        "detection of rspamd: rspamd.service is enabled but "
        "/etc/rspamd/local.d/worker-proxy.inc: the proxy worker has 'milter = no'; skipped"
    ]


def test_rspamd_stock_file_only(tmp_path: Path) -> None:
    root = debian_root(tmp_path)
    (root / "etc/rspamd/local.d/worker-proxy.inc").unlink()
    milters, _ = detect(root, all_enabled(DEBIAN_UNITS))
    assert next(m for m in milters if m.name == "rspamd").connection_spec == "inet:11332@localhost"
