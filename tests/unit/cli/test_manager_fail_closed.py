"""``milter-manager --show-config`` checks what a reload checks; -s is checked before start;
the non-root default socket folder (issue 13, defects 3 and 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmd.cli.manager import default_connection_spec, private_socket_root
from tests.support.cli_runner import run_manager as run


def test_show_config_refuses_an_unknown_applicable_condition(tmp_path: Path) -> None:
    main = tmp_path / "milter-manager.toml"
    main.write_text('[[milter]]\nname = "spam"\nconnection_spec = "unix:/run/spam.sock"\n'
                    'applicable_conditions = ["S25R", "No Such Condition"]\n')
    result = run("-c", str(tmp_path), "--no-detection", "--show-config")
    assert result.returncode == 1, result.stdout
    assert f"{main}:4: milter spam: applicable_conditions: " in result.stderr
    assert "No Such Condition" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[manager]\nshutdown_timeout = 0\n", ":2: shutdown_timeout: 0 is not a time-out"),
        ('[conditions.trusted_domain]\ndomains = "example.com"\n',
         ":2: conditions.trusted_domain.domains: expected an array of strings"),
    ],
)
def test_show_config_exits_non_zero_on_any_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "milter-manager.toml").write_text(text)
    result = run("-c", str(tmp_path), "--no-detection", "--show-config")
    assert result.returncode == 1, result.stdout
    assert f"{tmp_path / 'milter-manager.toml'}{problem}" in result.stderr


def test_show_config_of_a_folder_in_place_of_the_main_file(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.toml").mkdir()
    result = run("-c", str(tmp_path), "--no-detection", "--show-config")
    assert result.returncode == 1
    assert f"{tmp_path / 'milter-manager.toml'}: a folder, expected a file" in result.stderr


def test_bad_connection_spec_on_the_command_line_stops_at_once(tmp_path: Path) -> None:
    result = run("-c", str(tmp_path), "--no-detection", "--no-dbus", "-s", "unix:relative.sock")
    assert result.returncode == 2
    assert "-s/--connection-spec: " in result.stderr
    assert "must be absolute" in result.stderr


def test_non_root_default_socket_and_its_private_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert default_connection_spec() == (
        "unix:/tmp/milter-manager-1000/milter-manager/milter-manager.sock"
    )
    assert private_socket_root() == Path("/tmp/milter-manager-1000")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_connection_spec() == "unix:/run/user/1000/milter-manager/milter-manager.sock"
    assert private_socket_root() == Path("/run/user/1000/milter-manager")
