"""The classic milter-manager command line: accepted, mapped, or named in one warning."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

import pytest

from mmd.cli.classic_options import SYSTEMD_INSTEAD, apply_classic_options
from mmd.cli.manager import build_parser

# an init script's line and a Debian OPTION_ARGS line of the classic package
CLASSIC = ["--daemon", "--pid-file=/run/milter-manager/milter-manager.pid",
           "--user-name", "milter-manager", "--group-name=milter-manager",
           "--socket-group-name", "postfix", "--log-level=error|warning|statistics",
           "--log-path", "/var/log/milter-manager.log", "--no-daemon",
           "--event-loop-backend=glib", "--n-workers=0", "--packet-buffer-size", "0"]


@pytest.fixture
def root_level() -> object:
    root = logging.getLogger()
    statistics = logging.getLogger("mmd.session")
    saved = (root.level, statistics.level)
    yield
    root.setLevel(saved[0])
    statistics.setLevel(saved[1])


def test_every_classic_option_parses() -> None:
    args = build_parser().parse_args(CLASSIC)
    assert args.user_name == "milter-manager" and args.group_name == "milter-manager"
    assert args.socket_group_name == "postfix"
    assert args.log_level == "error|warning|statistics"
    assert args.daemon and args.pid_file and args.log_path


def test_short_forms_parse() -> None:
    args = build_parser().parse_args(["-umilter-manager", "-g", "mail", "-s", "inet:10025"])
    assert (args.user_name, args.group_name, args.connection_spec) == (
        "milter-manager", "mail", "inet:10025")


def test_mapping_and_one_warning(
    caplog: pytest.LogCaptureFixture, root_level: object
) -> None:
    args = build_parser().parse_args(CLASSIC)
    overrides: dict[str, object] = {}
    with caplog.at_level(logging.INFO):
        apply_classic_options(args, overrides)
    assert overrides == {"unix_socket_group": "postfix"}
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("mmd.session").level == logging.INFO  # statistics kept
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    for what in SYSTEMD_INSTEAD.values():
        assert what in text
    assert "journalctl -u milter-manager" in text and "MainPID" in text


def test_the_warning_shows_whatever_the_log_level(
    capsys: pytest.CaptureFixture[str], root_level: object
) -> None:
    from mmd.adapters.journal import setup_logging

    handler = setup_logging(False, use_journal=False)
    try:
        apply_classic_options(build_parser().parse_args(["--daemon", "--log-level=error"]), {})
        logging.getLogger("mmd").warning("hidden by the level")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "ignored options of the classic milter-manager: --daemon" in err
    assert "hidden by the level" not in err


def test_debug_levels_are_verbose(root_level: object) -> None:
    for level in ("debug", "all", "trace|statistics"):
        apply_classic_options(build_parser().parse_args([f"--log-level={level}"]), {})
        assert logging.getLogger().level == logging.DEBUG


def test_no_warning_without_ignored_options(caplog: pytest.LogCaptureFixture) -> None:
    apply_classic_options(build_parser().parse_args(["--no-daemon", "-u", "x"]), {})
    assert not caplog.records


def test_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--log-level", "loud"])
    assert exit_info.value.code == 2
    assert "unknown log level loud" in capsys.readouterr().err


def test_show_config_takes_the_classic_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mmd.cli.manager", *CLASSIC, "--show-config", "--no-detection",
         "--config-dir", "/nonexistent"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '# command line\nunix_socket_group = "postfix"\n' in result.stdout
    assert result.stderr.count("ignored options of the classic milter-manager") == 1


def test_help_lists_the_classic_options() -> None:
    text = build_parser().format_help()
    for option in ("--daemon", "--pid-file", "--log-level", "--socket-group-name",
                   "--log-path", "--event-loop-backend", "--n-workers",
                   "--packet-buffer-size", "docs/systemd.md"):
        assert option in text, option
    assert isinstance(build_parser(), argparse.ArgumentParser)
