"""The refused start's configuration and the settings only a restart applies (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmd.config.loader import ConfigError, load_configuration
from mmd.config.model import Configuration, ManagerConfig, Origin, Status
from mmd.daemon.startup import REFUSED, keep_listening_settings, refused_configuration


def test_refused_configuration_listens_where_the_files_say_and_has_no_child(
    tmp_path: Path,
) -> None:
    (tmp_path / "milter-manager.toml").write_text(
        '[manager]\nconnection_spec = "inet:10025@127.0.0.1"\nunix_socket_group = "postfix"\n'
        'fallback_status = "tempfail"\n\n'
        '[[milter]]\nname = "spam"\nconnection_spec = "unix:/run/spam.sock"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_configuration(tmp_path)
    config = refused_configuration(raised.value, {})
    assert config.milters == []
    assert config.manager.fallback_status is Status.TEMPORARY_FAILURE
    assert config.manager.origin("fallback_status") is REFUSED
    assert config.manager.connection_spec == "inet:10025@127.0.0.1"
    assert config.manager.origin("connection_spec").text == f"{tmp_path}/milter-manager.toml:2"
    assert config.manager.unix_socket_group == "postfix"
    assert config.files == [str(tmp_path / "milter-manager.toml")]


def test_refused_configuration_keeps_the_command_line() -> None:
    config = refused_configuration(ValueError("bad"), {"connection_spec": "unix:/run/x.sock"})
    assert config.manager.connection_spec == "unix:/run/x.sock"
    assert config.manager.fallback_status is Status.TEMPORARY_FAILURE


def test_socket_activated_reload_points_at_the_socket_unit() -> None:
    at_start = ManagerConfig()
    new = Configuration()
    new.manager.unix_socket_group = "mail"
    new.manager.origins["unix_socket_group"] = Origin("/etc/milter-manager/milter-manager.toml:3")
    assert keep_listening_settings(at_start, new, socket_activated=True) == [
        "/etc/milter-manager/milter-manager.toml:3: unix_socket_group: 'mail' not applied by a "
        "reload (systemd passes the listening socket; change milter-manager.socket instead)"
    ]
    assert new.manager.unix_socket_group == ""
    assert new.manager.origin("unix_socket_group").text == (
        "default; in force since start (/etc/milter-manager/milter-manager.toml:3 asks for "
        "'mail': not applied by a reload)"
    )
    # asked again at the next reload: the origin still names the value from the start
    again = Configuration()
    again.manager.unix_socket_group = "mail"
    again.manager.origins["unix_socket_group"] = Origin("/etc/milter-manager/milter-manager.toml:3")
    keep_listening_settings(at_start, again, socket_activated=True)
    assert again.manager.origin("unix_socket_group") == new.manager.origin("unix_socket_group")


def test_unchanged_listening_settings_say_nothing() -> None:
    assert keep_listening_settings(ManagerConfig(), Configuration(), socket_activated=False) == []
