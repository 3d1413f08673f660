"""milter-manager's command line: help, --show-config, import-config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mmd.cli.manager import build_parser, main
from tests.support.cli_runner import run_manager as run


def test_help_names_every_option() -> None:
    text = build_parser().format_help()
    for option in (
        "--connection-spec",
        "--config-dir",
        "--show-config",
        "--no-detection",
        "--detection-root",
        "--no-dbus",
        "--user-name",
        "--group-name",
        "--verbose",
        "--no-daemon",
        "import-config",
    ):
        assert option in text


def test_show_config_prints_valid_toml_with_origins(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.toml").write_text(
        '[manager]\nfallback_status = "reject"\n\n'
        '[[milter]]\nname = "spam"\nconnection_spec = "unix:/run/spam.sock"\n'
    )
    result = run(
        "-c",
        str(tmp_path),
        "--no-detection",
        "--show-config",
        "-u",
        "milter-manager",
        "-g",
        "milter-manager",
    )
    assert result.returncode == 0, result.stderr
    parsed = tomllib.loads(result.stdout)
    assert parsed["manager"]["fallback_status"] == "reject"
    assert parsed["milter"][0]["connection_spec"] == "unix:/run/spam.sock"
    assert f"# {tmp_path / 'milter-manager.toml'}:2" in result.stdout
    assert "# default" in result.stdout


def test_show_config_reports_errors_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "milter-manager.toml").write_text('[manager]\nfallback_status = "maybe"\n')
    result = run("-c", str(tmp_path), "--no-detection", "--show-config")
    assert result.returncode == 1
    assert f"{tmp_path / 'milter-manager.toml'}:2" in result.stderr
    assert "fallback_status" in result.stderr


def test_import_config_converts_and_lists_what_it_could_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "milter-manager.local.conf"
    old.write_text(
        'define_milter("spamass-milter") do |milter|\n'
        '  milter.connection_spec = "unix:/var/spool/postfix/spamass/spamass.sock"\n'
        '  milter.fallback_status = "reject"\n'
        "end\n"
        "security.privilege_mode = true\n"
    )
    assert main(["import-config", str(old)]) == 0
    out, err = capsys.readouterr()
    parsed = tomllib.loads(out)
    assert parsed["milter"][0]["name"] == "spamass-milter"
    assert parsed["milter"][0]["fallback_status"] == "reject"
    assert "security.privilege_mode" in err and ":5:" in err


def test_import_config_missing_file_fails(tmp_path: Path) -> None:
    assert main(["import-config", str(tmp_path / "nope.conf")]) == 1


def test_report_subcommand_has_its_own_help() -> None:
    result = run("report", "--help")
    assert result.returncode == 0
    assert "--prometheus-file" in result.stdout and "--output-directory" in result.stdout
