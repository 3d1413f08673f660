"""The report's service and timer: systemd 252 accepts them silently, and they stay hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
UNITS = ("milter-manager-report.service", "milter-manager-report.timer")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze (package systemd) is required"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def unit_root(tmp_path: Path) -> Path:
    """A --root= tree: the host's system units, ours, and the binary ExecStart= names."""
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system",
                    symlinks=True)
    ours = root / "etc" / "systemd" / "system"
    ours.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(ROOT / "units" / unit, ours / unit)
    binary = root / "usr" / "sbin" / "milter-manager"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return root


def test_verify_prints_nothing(tmp_path: Path) -> None:
    result = analyze("verify", "--man=no", f"--root={unit_root(tmp_path)}", *UNITS)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_can_complain(tmp_path: Path) -> None:
    root = unit_root(tmp_path)
    service = root / "etc" / "systemd" / "system" / UNITS[0]
    service.write_text(service.read_text().replace("Type=oneshot", "Type=oneshot\nBogus=1"))
    result = analyze("verify", "--man=no", f"--root={root}", *UNITS)
    assert "Bogus" in result.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    root = unit_root(tmp_path)
    result = analyze("security", "--offline=yes", "--man=no", "--no-pager", f"--root={root}",
                     UNITS[0])
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.0, result.stdout


def test_service_reads_the_journal_and_writes_only_its_state() -> None:
    text = (ROOT / "units" / UNITS[0]).read_text()
    assert "\nUser=milter-manager\n" in text
    assert "\nSupplementaryGroups=systemd-journal\n" in text
    assert "\nStateDirectory=milter-manager/report\n" in text
    assert "\nProtectSystem=strict\n" in text
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)
    assert exec_start
    assert exec_start.group(1).split()[:2] == ["/usr/sbin/milter-manager", "report"]
    assert "--output-directory=/var/lib/milter-manager/report/html" in exec_start.group(1)
    timer = (ROOT / "units" / UNITS[1]).read_text()
    assert "\nOnCalendar=*:0/5:30\n" in timer
    assert "\nWantedBy=timers.target\n" in timer
