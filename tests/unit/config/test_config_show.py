"""--show-config output: valid TOML that loads back to the same values, with origins."""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

from mmd.config.loader import apply_overrides, load_configuration
from mmd.config.model import Configuration
from mmd.config.show import format_value, render_show_config
from tests.support.detected import OPENDKIM

CONFIG = """\
[manager]
unix_socket_mode = "0640"
fallback_status = "temporary-failure"
shutdown_timeout = 12.5

[[milter]]
name = "opendkim"
enabled = false

[[milter]]
name = "quote \\"odd\\" name"
connection_spec = "inet6:8891@[::1]"
description = "line one\\nline two\\ttab \\\\ back"
applicable_conditions = ["S25R", "Remote Network"]
end_of_message_timeout = 100

[conditions]
trusted_domains = ["example.com", "example.org"]
when = 2024-01-02T03:04:05Z
"odd key" = 1.5

[conditions.remote_network]
local = ["192.168.0.0/24"]

[[conditions.custom]]
name = "first"
nested = { a = [1, 2], b = "x" }

[conditions.custom.deeper]
flag = true

[[conditions.custom]]
name = "second"
"""


def _values(config: Configuration) -> tuple[object, ...]:
    manager = config.manager
    milters = [
        (m.name, m.connection_spec, m.description, m.enabled, m.fallback_status,
         m.evaluation_mode, m.applicable_conditions, m.connection_timeout, m.writing_timeout,
         m.reading_timeout, m.end_of_message_timeout)
        for m in config.milters
    ]
    return (
        (manager.connection_spec, manager.unix_socket_mode, manager.unix_socket_group,
         manager.fallback_status, manager.fallback_status_at_disconnect, manager.max_connections,
         manager.chunk_size, manager.max_packet_size, manager.body_memory_limit,
         manager.shutdown_timeout),
        milters,
        config.conditions_table,
    )


def _loaded(tmp_path: Path) -> Configuration:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/milter-manager.toml").write_text(CONFIG, encoding="utf-8")
    config = load_configuration(tmp_path / "etc", (OPENDKIM,))
    return apply_overrides(config, {"connection_spec": "inet:10025@localhost"})


def test_round_trip_gives_the_same_values(tmp_path: Path) -> None:
    config = _loaded(tmp_path)
    text = render_show_config(config)
    tomllib.loads(text)
    (tmp_path / "again").mkdir()
    (tmp_path / "again/milter-manager.toml").write_text(text, encoding="utf-8")
    again = load_configuration(tmp_path / "again")  # no detection: every milter is in the file
    assert _values(again) == _values(config)
    # and the output of the reloaded configuration is stable apart from origins
    strip = [line for line in render_show_config(again).splitlines() if not line.startswith("#")]
    assert strip == [line for line in text.splitlines() if not line.startswith("#")]


def test_round_trip_of_defaults(tmp_path: Path) -> None:
    config = load_configuration(tmp_path)
    (tmp_path / "milter-manager.toml").write_text(render_show_config(config), encoding="utf-8")
    assert _values(load_configuration(tmp_path)) == _values(config)


def _comment_before(text: str, line: str) -> str:
    lines = text.splitlines()
    index = lines.index(line)
    assert lines[index - 1].startswith("# "), lines[index - 1]
    return lines[index - 1][2:]


def test_every_value_has_its_origin_comment(tmp_path: Path) -> None:
    config = _loaded(tmp_path)
    text = render_show_config(config)
    main = tmp_path / "etc/milter-manager.toml"
    assert f"# Files read, in order: {main}" in text
    assert _comment_before(text, 'connection_spec = "inet:10025@localhost"') == "command line"
    assert _comment_before(text, 'unix_socket_mode = "0640"') == f"{main}:2"
    assert _comment_before(text, "max_connections = 0") == "default"
    assert _comment_before(text, 'connection_spec = "local:/run/opendkim/opendkim.sock"') == (
        "detected: opendkim.service, /etc/opendkim.conf")
    assert _comment_before(text, 'name = "opendkim"') == (
        "detected: opendkim.service, /etc/opendkim.conf")
    assert _comment_before(text, "enabled = false") == f"{main}:8"
    assert _comment_before(text, "enabled = true") == "default"
    assert _comment_before(text, 'connection_spec = "inet6:8891@[::1]"') == f"{main}:12"
    assert _comment_before(text, "[conditions.remote_network]") == f"{main}:22"
    assert _comment_before(text, 'local = ["192.168.0.0/24"]') == f"{main}:23"
    assert _comment_before(text, 'name = "second"') == f"{main}:33"
    # every non-comment, non-header, non-blank line is preceded by an origin comment
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert lines[index - 1].startswith("# "), line
    # the milters' enabled state and connection_spec are always shown
    assert text.count("\nenabled = ") == 2
    assert text.count("\nconnection_spec = ") == 3


def test_format_value_literals() -> None:
    assert format_value(float("inf")) == "inf"
    assert format_value(float("-inf")) == "-inf"
    assert format_value(float("nan")) == "nan"
    assert format_value("\x01") == '"\\u0001"'
    assert format_value({}) == "{}"
    assert format_value(datetime.date(2024, 1, 2)) == "2024-01-02"
    parsed = tomllib.loads(f"v = {format_value({'a b': [1, 'x'], 'c': {'d': True}})}")
    assert parsed == {"v": {"a b": [1, "x"], "c": {"d": True}}}
