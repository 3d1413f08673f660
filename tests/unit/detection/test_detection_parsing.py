"""The small parsers: connection specs, shell variables, unit files, milter configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from detection_fakes import write

from mmd.detection.configs import (
    clamav_milter,
    colon_keyword,
    keyword,
    milter_greylist,
    rspamd_proxy,
)
from mmd.detection.files import RootFiles
from mmd.detection.shellvars import expand, parse_assignments
from mmd.detection.specs import host_port_spec, normalize_spec
from mmd.detection.unitfile import expand_argv, find_unit, option_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/x.sock", "unix:/run/x.sock"),
        ('"/run/x.sock"', "unix:/run/x.sock"),
        ("local:/run/x.sock", "unix:/run/x.sock"),
        ("unix:/run/x.sock", "unix:/run/x.sock"),
        ("inet:8891@localhost", "inet:8891@localhost"),
        ("inet:8891@[127.0.0.1]", "inet:8891@[127.0.0.1]"),
        ("inet:8891", "inet:8891@127.0.0.1"),
        ("inet:8891@0.0.0.0", "inet:8891@127.0.0.1"),
        ("inet6:8891", "inet6:8891@[::1]"),
        ("inet6:8891@[2001:db8::1]", "inet6:8891@[2001:db8::1]"),
        ("INET:25@mx", "inet:25@mx"),
        ("inet:port@host", None),
        ("local:relative", None),
        ("ftp://x", None),
        ("", None),
        ("relative/path", None),
    ],
)
def test_normalize_spec(value: str, expected: str | None) -> None:
    assert normalize_spec(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:11332", "inet:11332@localhost"),
        ("*:11332", "inet:11332@127.0.0.1"),
        ("*v4:11332", "inet:11332@127.0.0.1"),
        ("*v6:11332", "inet6:11332@[::1]"),
        ("[::1]:11332", "inet6:11332@[::1]"),
        ("127.0.0.1:8893", "inet:8893@127.0.0.1"),
        ("8893", "inet:8893@127.0.0.1"),
        ("/run/rspamd/milter.sock", "unix:/run/rspamd/milter.sock"),
        ("localhost", None),
    ],
)
def test_host_port_spec(value: str, expected: str | None) -> None:
    assert host_port_spec(value) == expected


def test_shell_assignments() -> None:
    text = (
        "# comment\n"
        "RUNDIR=/run/opendkim\n"
        "SOCKET=local:$RUNDIR/opendkim.sock\n"
        'OPTIONS="${OPTIONS} -r 15"  # trailing comment\n'
        "export QUOTED='$RUNDIR kept'\n"
        "DEFAULTED=${UNSET:-/fallback}/x\n"
        "LONG=a\\\nb\n"
        "if [ -x /usr/sbin/postfix ]; then SOCKET=ignored; fi\n"
        "  SPACED=1 2\n"
    )
    values = parse_assignments(text, {"OPTIONS": "-m"})
    assert values == {
        "OPTIONS": "-m -r 15",
        "RUNDIR": "/run/opendkim",
        "SOCKET": "local:/run/opendkim/opendkim.sock",
        "QUOTED": "$RUNDIR kept",
        "DEFAULTED": "/fallback/x",
        "LONG": "ab",
        "SPACED": "1",
    }


def test_expand_unknown_is_empty() -> None:
    assert expand("a$NOPE-${NOPE}b", {}) == "a-b"


def test_unit_fragment_drop_ins_and_environment(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/lib/systemd/system/m.service",
        "[Unit]\nDescription=x\nExecStart=/not/a/service/key\n"
        "[Service]\n"
        'Environment=A=1 "B=two words"\n'
        "EnvironmentFile=-/etc/default/m\n"
        "ExecStart=-/usr/sbin/m \\\n  -p $SOCK ${ONE}\n",
    )
    write(tmp_path, "/usr/lib/systemd/system/m.service", "[Service]\nExecStart=/wrong\n")
    write(tmp_path, "/lib/systemd/system/m.service.d/10-a.conf", "[Service]\nEnvironment=C=3\n")
    write(tmp_path, "/lib/systemd/system/m.service.d/20-b.conf", "[Service]\nEnvironment=\n")
    # a same-named drop-in in /etc hides the one in /lib
    write(tmp_path, "/etc/systemd/system/m.service.d/20-b.conf", "[Service]\nEnvironmentFile=/e\n")
    found = find_unit(RootFiles(tmp_path), "m.service")
    assert found is not None
    assert found.files == (
        "/usr/lib/systemd/system/m.service",
        "/lib/systemd/system/m.service.d/10-a.conf",
        "/etc/systemd/system/m.service.d/20-b.conf",
    )
    assert found.exec_start == ("/wrong",)
    assert found.environment == {"C": "3"}  # /lib's resetting 20-b.conf is hidden
    assert found.environment_files == (("/e", False),)


def test_unit_lib_fragment(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/lib/systemd/system/m.service",
        "[Service]\n"
        'Environment=A=1 "B=two words"\n'
        "EnvironmentFile=-/etc/default/m\n"
        "ExecStart=-/usr/sbin/m \\\n  -p $SOCK ${ONE}\n",
    )
    write(tmp_path, "/lib/systemd/system/m.service.d/10-a.conf", "[Service]\nEnvironment=C=3\n")
    found = find_unit(RootFiles(tmp_path), "m.service")
    assert found is not None
    assert found.exec_start == ("/usr/sbin/m", "-p", "$SOCK", "${ONE}")
    assert found.exec_start_file == "/lib/systemd/system/m.service"
    assert found.environment == {"A": "1", "B": "two words", "C": "3"}
    assert found.environment_files == (("/etc/default/m", True),)
    argv = expand_argv(found.exec_start, {"SOCK": "a b", "ONE": "c d"})
    assert argv == ["/usr/sbin/m", "-p", "a", "b", "c d"]


def test_unit_missing(tmp_path: Path) -> None:
    assert find_unit(RootFiles(tmp_path), "none.service") is None


def test_option_value() -> None:
    argv = ["/usr/sbin/x", "-x", "/a", "-p/b", "-P", "/pid", "-x", "/c"]
    assert option_value(argv, "-x") == "/c"
    assert option_value(argv, "-p") == "/b"
    assert option_value(argv, "-s") is None
    assert option_value(["/usr/sbin/x", "-p"], "-p") is None


def test_keyword_parser() -> None:
    parse = keyword("Socket")
    assert parse("#Socket inet:1@x\nSocketMode 1\nSOCKET  inet:2@y\n").spec == "inet:2@y"
    assert parse("Mode sv\n").spec is None
    bad = parse("Socket what\n")
    assert (bad.spec, bad.raw) == (None, "what")


def test_clamav_parser() -> None:
    assert clamav_milter("MilterSocket /run/c.ctl\n").spec == "unix:/run/c.ctl"
    assert clamav_milter("MilterSocket inet:7357\n").spec == "inet:7357@127.0.0.1"
    assert clamav_milter("#Example\nMilterSocket /run/c.ctl\n").not_configured == ""
    assert clamav_milter("Example\n").not_configured


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tarpit 10\n", 10.0),
        ('tarpit 2m\nracl tarpit list "x" tarpit 1h30m\n', 5400.0),
        ("racl tarpit default tarpit 1d\n", 86400.0),
        ("tarpit_scope session\n", 0.0),
        ("# tarpit 9h\n", 0.0),
        ("tarpit soon\n", 0.0),
    ],
)
def test_greylist_tarpit(text: str, expected: float) -> None:
    assert milter_greylist(text).extra_timeout == expected


def test_greylist_socket() -> None:
    finding = milter_greylist('socket "inet:3333@127.0.0.1"\nsocket "/second"\n')
    assert finding.spec == "inet:3333@127.0.0.1"


def test_rspamd_parser() -> None:
    assert rspamd_proxy('bind_socket = "*:11332";\n').spec == "inet:11332@127.0.0.1"
    assert rspamd_proxy("bind_socket = localhost:11332;\n").spec == "inet:11332@localhost"
    assert rspamd_proxy("milter = false;\n").not_configured
    assert rspamd_proxy("timeout = 120s;\n").spec is None


def test_colon_keyword_parser() -> None:
    parse = colon_keyword("milter.socket")
    assert parse("milter.socket: unix:/run/enma.sock\n").spec == "unix:/run/enma.sock"
    assert parse("milter.user: x\n").spec is None


def test_root_files_reads_below_root(tmp_path: Path) -> None:
    write(tmp_path, "/etc/x", "hello")
    files = RootFiles(tmp_path)
    assert files.read("/etc/x") == "hello"
    assert files.read("/etc/none") is None
    (tmp_path / "etc/dangling").symlink_to(tmp_path / "etc/none")
    assert files.read("/etc/dangling") is None
