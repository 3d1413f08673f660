"""``import-config old.conf > new.toml`` then a start: the output always loads, whatever this
host has installed (entries for undetected milters without connection_spec are commented out)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from mmd.config.import_ruby import import_ruby_config
from tests.support.cli_runner import run_manager

ROOT = Path(__file__).resolve().parents[3]
CLASSIC = ROOT / "tests" / "unit" / "config" / "data" / "milter-manager.local.conf"


def manager(*args: str) -> subprocess.CompletedProcess[str]:
    return run_manager(*args, cwd=ROOT)


@pytest.mark.parametrize("detect", [False, True])
def test_imported_file_loads(tmp_path: Path, detect: bool) -> None:
    """With detection over an empty root (nothing installed: the same on every host) and
    without detection."""
    root = tmp_path / "root"
    root.mkdir()
    detection = ["--detection-root", str(root)] if detect else ["--no-detection"]
    config = tmp_path / "etc"
    config.mkdir()
    imported = manager("import-config", *detection, str(CLASSIC))
    assert imported.returncode == 0, imported.stderr
    assert "# Commented out: 'clamav-milter' is not detected on this host" in imported.stdout
    (config / "milter-manager.toml").write_text(imported.stdout)
    shown = manager("--show-config", *detection, "--config-dir", str(config))
    assert shown.returncode == 0, shown.stderr
    assert 'connection_spec = "inet:10025@[127.0.0.1]"' in shown.stdout


def test_undetected_milters_are_commented_out_with_the_reason() -> None:
    text, report = import_ruby_config(CLASSIC.read_text(), "old.conf", detected=["opendkim"])
    names = [m["name"] for m in tomllib.loads(text)["milter"]]
    # with a connection_spec, or detected here: kept; the others commented out
    assert names == ["spamass-milter", "opendkim", "old-milter"]
    assert "# Commented out: 'clamav-milter' is not detected on this host" in text
    assert '#-name = "clamav-milter"' in text
    assert "old.conf:37: commented out: define_milter('clamav-milter'): not detected on " \
           "this host and no connection_spec" in report
    # taking the '#-' away gives the entry back
    restored = tomllib.loads(text.replace("#-", ""))
    assert "clamav-milter" in [m["name"] for m in restored["milter"]]


def test_without_a_detection_list_nothing_is_commented_out() -> None:
    text, _ = import_ruby_config(CLASSIC.read_text(), "old.conf")
    assert "#-" not in text
