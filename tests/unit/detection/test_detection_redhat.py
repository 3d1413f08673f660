"""Detection on a fake RHEL/Fedora root: /usr/lib units, /etc/sysconfig, /etc/mail."""

from __future__ import annotations

from pathlib import Path

from detection_fakes import FakeUnits, unit, write

from mmd.detection.detect import detect


def redhat_root(root: Path) -> Path:
    write(root, "/etc/redhat-release", "Red Hat Enterprise Linux release 9.4 (Plow)\n")
    write(root, "/usr/sbin/postfix", "#!/bin/sh\n")
    write(
        root,
        "/usr/lib/systemd/system/spamass-milter.service",
        unit(
            "/usr/sbin/spamass-milter -p ${SOCKET} -g ${SOCKET_GROUP} $EXTRA_FLAGS",
            "EnvironmentFile=-/etc/sysconfig/spamass-milter",
        ),
    )
    write(
        root,
        "/etc/sysconfig/spamass-milter",
        "# spamass-milter\nSOCKET=/run/spamass-milter/postfix/sock\nSOCKET_GROUP=postfix\n"
        'EXTRA_FLAGS="-m -r 15"\n',
    )
    write(
        root,
        "/usr/lib/systemd/system/clamav-milter.service",
        unit("/usr/sbin/clamav-milter -c /etc/mail/clamav-milter.conf"),
    )
    write(
        root,
        "/etc/mail/clamav-milter.conf",
        "# clamav-milter\nMilterSocket inet:7357@127.0.0.1\nUser clamilt\n",
    )
    write(
        root, "/usr/lib/systemd/system/milter-greylist.service", unit("/usr/sbin/milter-greylist")
    )
    write(root, "/etc/mail/greylist.conf", 'socket "/run/milter-greylist/milter-greylist.sock"\n')
    write(
        root,
        "/usr/lib/systemd/system/opendkim.service",
        unit("/usr/sbin/opendkim -x /etc/opendkim.conf"),
    )
    write(root, "/etc/opendkim.conf", "Mode\tv\nSocket\tinet:8891@localhost\n")
    write(
        root,
        "/usr/lib/systemd/system/opendmarc.service",
        unit("/usr/sbin/opendmarc -c /etc/opendmarc.conf"),
    )
    write(root, "/etc/opendmarc.conf", "## Socket local:/wrong\nAuthservID mail\n")
    return root


def redhat_units() -> FakeUnits:
    units = FakeUnits()
    for name in ("spamass-milter", "clamav-milter", "milter-greylist", "opendkim", "opendmarc"):
        units.add(f"{name}.service", "enabled")
    units.add("opendmarc.service", "disabled", "inactive")
    return units


def test_redhat_layout(tmp_path: Path) -> None:
    milters, errors = detect(redhat_root(tmp_path), redhat_units())
    assert errors == []
    found = {m.name: (m.connection_spec, m.origin, m.enabled) for m in milters}
    assert found == {
        "spamass-milter": (
            "unix:/run/spamass-milter/postfix/sock",
            "detected: spamass-milter.service, "
            "/usr/lib/systemd/system/spamass-milter.service ExecStart -p",
            True,
        ),
        "clamav-milter": (
            "inet:7357@127.0.0.1",
            "detected: clamav-milter.service, /etc/mail/clamav-milter.conf",
            True,
        ),
        "milter-greylist": (
            "unix:/run/milter-greylist/milter-greylist.sock",
            "detected: milter-greylist.service, /etc/mail/greylist.conf",
            True,
        ),
        "opendkim": (
            "inet:8891@localhost",
            "detected: opendkim.service, /etc/opendkim.conf",
            True,
        ),
        "opendmarc": (
            "inet:8893@localhost",
            "detected: opendmarc.service, packaged default",
            False,
        ),
    }


def test_redhat_packaged_defaults_are_chosen_by_family(tmp_path: Path) -> None:
    root = redhat_root(tmp_path)
    (root / "etc/sysconfig/spamass-milter").unlink()
    write(root, "/usr/lib/systemd/system/spamass-milter.service", unit("/usr/sbin/spamass-milter"))
    milters, errors = detect(root, redhat_units())
    assert errors == []
    spamass = next(m for m in milters if m.name == "spamass-milter")
    assert spamass.connection_spec == "unix:/run/spamass-milter/spamass-milter.sock"


def test_sysconfig_generic_variable(tmp_path: Path) -> None:
    root = redhat_root(tmp_path)
    write(root, "/usr/lib/systemd/system/spfmilter.service", unit("/usr/sbin/spfmilter $OPTS"))
    write(root, "/etc/sysconfig/spfmilter", "CONNECTION_SPEC=inet:10026@localhost\n")
    units = redhat_units()
    units.add("spfmilter.service", "enabled")
    milters, _ = detect(root, units)
    spf = next(m for m in milters if m.name == "spfmilter")
    assert spf.connection_spec == "inet:10026@localhost"
    assert spf.origin == "detected: spfmilter.service, /etc/sysconfig/spfmilter CONNECTION_SPEC"


def test_shell_wrapped_exec_start(tmp_path: Path) -> None:
    root = redhat_root(tmp_path)
    write(root, "/etc/sysconfig/spamass-milter", "SOCKET_GROUP=postfix\n")
    write(
        root,
        "/usr/lib/systemd/system/spamass-milter.service",
        unit(
            "/bin/sh -c 'exec /usr/sbin/spamass-milter -p ${SOCKET:-/run/sm/default.sock} $FLAGS'",
            "EnvironmentFile=-/etc/sysconfig/spamass-milter",
        ),
    )
    milters, errors = detect(root, redhat_units())
    assert errors == []
    spamass = next(m for m in milters if m.name == "spamass-milter")
    assert spamass.connection_spec == "unix:/run/sm/default.sock"
