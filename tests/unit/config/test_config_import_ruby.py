"""Import of the classic manager's Ruby milter-manager.local.conf."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mmd.config.import_ruby import import_ruby_config
from mmd.config.loader import load_configuration
from mmd.config.model import Status
from tests.support.detected import detected_milter

DATA = Path(__file__).parent / "data" / "milter-manager.local.conf"
NAME = "milter-manager.local.conf"


def _import() -> tuple[str, list[str]]:
    return import_ruby_config(DATA.read_text(encoding="utf-8"), NAME)


def test_converted_values() -> None:
    text, _ = _import()
    data = tomllib.loads(text)
    assert data["manager"] == {
        "connection_spec": "inet:10025@[127.0.0.1]",
        "unix_socket_mode": "0660",
        "unix_socket_group": "postfix",
        "fallback_status": "temporary-failure",
        "max_connections": 100,
    }
    assert data["milter"] == [
        {"name": "spamass-milter",
         "connection_spec": "unix:/var/spool/postfix/spamass/spamass.sock",
         "description": "SpamAssassin #1",
         "applicable_conditions": ["Remote Network", "Unauthenticated"],
         "fallback_status": "accept", "end_of_message_timeout": 600},
        {"name": "clamav-milter", "enabled": True, "fallback_status": "temporary-failure",
         "evaluation_mode": False, "reading_timeout": 30.5},
        {"name": "milter-greylist", "applicable_conditions": ["S25R", "Stress Notify"],
         "writing_timeout": 20.0},
        {"name": "opendkim", "evaluation_mode": True},
        {"name": "old-milter", "enabled": False, "connection_spec": "inet:1234@localhost"},
    ]
    assert data["conditions"] == {
        "remote_network": {"extra_local": ["192.168.0.0/24", "2001:db8::/32"],
                           "remote": ["192.168.0.99"]},
        "stress": {"threshold": 40},
    }
    assert f"# {NAME}:29\nconnection_spec = " in text
    assert f"# {NAME}:87\nextra_local = " in text


def test_not_converted_report() -> None:
    text, report = _import()
    assert [entry.split(": not converted: ")[0] for entry in report] == [
        f"{NAME}:{n}" for n in (4, 5, 6, 13, 15, 16, 17, 21, 42, 43, 51, 61, 63, 69, 71)
    ]
    assert f"{NAME}:13: not converted: manager.pid_file = " \
           '"/var/run/milter-manager/milter-manager.pid"; systemd tracks the process' in report
    office = f'{NAME}:21: not converted: define_applicable_condition("Our Office")'
    assert any(e.startswith(office) and "lines 21-26" in e for e in report)
    assert any(e.startswith(f"{NAME}:51: not converted: milter.enabled = ENV") for e in report)
    assert any(e.startswith(f"{NAME}:63: not converted: defined_milters.each")
               and "lines 63-67" in e for e in report)
    assert any(e.startswith(f"{NAME}:71: not converted: define_applicable_condition(\"Dialup\")")
               and "lines 71-80" in e for e in report)
    # the report is repeated as comments in the TOML for whoever reads the file later
    for entry in report:
        assert f"#   {entry}" in text


def test_converted_file_loads_with_detected_milters(tmp_path: Path) -> None:
    text, _ = _import()
    (tmp_path / "milter-manager.toml").write_text(text, encoding="utf-8")
    detected = [detected_milter(name, f"unix:/run/{name}.sock")
                for name in ("clamav-milter", "milter-greylist", "opendkim")]
    config = load_configuration(tmp_path, detected)
    assert [m.name for m in config.milters] == [
        "clamav-milter", "milter-greylist", "opendkim", "spamass-milter", "old-milter"]
    clamav = config.milters[0]
    assert clamav.fallback_status is Status.TEMPORARY_FAILURE
    assert clamav.reading_timeout == 30.5
    assert clamav.origin("reading_timeout").text == f"{tmp_path / 'milter-manager.toml'}:41"
    assert config.manager.unix_socket_mode == 0o660
    assert config.conditions_table["stress"] == {"threshold": 40}
    assert config.condition_origin_for("conditions.stress.threshold").text.endswith(
        "milter-manager.toml:" + str(text.splitlines().index("threshold = 40") + 1))


@pytest.mark.parametrize(
    ("ruby", "expected"),
    [
        ("manager.unix_socket_mode = 0600\n", {"manager": {"unix_socket_mode": "0600"}}),
        ("manager.max_connections = 1_000\n", {"manager": {"max_connections": 1000}}),
        ("manager.connection_spec = nil\n", {}),
        ("define_milter 'a' do |m|\n  m.connection_spec = 'inet:1'; m.enabled = false\nend\n",
         {"milter": [{"name": "a", "connection_spec": "inet:1", "enabled": False}]}),
        ('define_milter("a") { |milter| milter.enabled = false }\n',
         {"milter": [{"name": "a", "enabled": False}]}),
        ('define_milter("a") do |milter|\n  milter.description = "x"\nend\n'
         'define_milter("a") do |milter|\n  milter.enabled = false\nend\n',
         {"milter": [{"name": "a", "description": "x", "enabled": False}]}),
        ("load_default\n", {}),
        ("stress.threshold_n_connections = 0\nremote_network.add_local_address '10.0.0.0/8'\n",
         {"conditions": {"stress": {"threshold": 0},
                         "remote_network": {"extra_local": ["10.0.0.0/8"]}}}),
    ],
)
def test_small_forms(ruby: str, expected: dict[str, object]) -> None:
    text, report = import_ruby_config(ruby, "x.conf")
    assert report == []
    assert tomllib.loads(text) == expected


@pytest.mark.parametrize(
    ("ruby", "reason"),
    [
        ('manager.fallback_status = "tempfail"\n', "unknown status 'tempfail'"),
        ('manager.connection_spec = "inet:#{port}"\n', "string interpolation"),
        ("manager.connection_spec = SPEC\n", "not a literal value"),
        ('manager.frobnicate = 1\n', "unknown setting"),
        ('define_milter("a") do |milter|\n  milter.colour = "red"\nend\n',
         "unknown milter setting"),
        ('define_milter("a") do |milter|\n  other.enabled = true\nend\n', "not a plain setting"),
        ('if File.exist?("/x")\n  manager.max_connections = 1\nend\n', "Ruby block, lines 1-3"),
        ('load("extra.conf")\n', "convert that file too"),
        ('define_milter("a") do |milter|\n  milter.enabled = false\n', "block has no end"),
        ("manager.max_connections = 5 if big\n", "unexpected 'if big' after the value"),
        ('define_milter("#{x}") do |milter|\n  milter.enabled = false\nend\n',
         "string interpolation in the milter name"),
        ("stress.threshold_n_connections = -1\n", "expected a whole number of connections"),
        ("remote_network.add_local_address(NET)\n", "not a literal value"),
        ('remote_network.add_local_address("a", "b")\n', "expected one address in quotes"),
    ],
)
def test_reported_forms(ruby: str, reason: str) -> None:
    _, report = import_ruby_config(ruby, "x.conf")
    assert len(report) == 1, report
    assert report[0].startswith("x.conf:")
    assert reason in report[0]
