"""Entries the daemon's journal handler writes, read back from a real journald running in a
private mount namespace (tests/support/journald.py), so the host's journal is never touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.journald import PrivateJournald

LOGGING_SCRIPT = r"""
import logging
from mmd.adapters.journal import setup_logging
setup_logging(verbose=True, use_journal=True)
log = logging.getLogger("mmd.test")
log.info("[session][end][end-of-message][accept][0.125](7)", extra={"fields": {
    "MMD_EVENT": "session-end", "MMD_SESSION_ID": 7, "MMD_STATUS": "accept",
    "MMD_ELAPSED": "0.125", "mmd_stage": "end-of-message", "9LIVES": "x",
    "_PID": "1", "MESSAGE": "overwritten", "MMD_REASON": None}})
log.debug("a debug line")
log.error("an error")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("failed")
"""


def journal_entries(folder: Path, script: str) -> list[dict[str, Any]]:
    """Run ``script`` under a private journald and return its milter-manager entries."""
    journald = PrivateJournald(folder)
    try:
        journald.inside(sys.executable, "-c", script)
    finally:
        journald.stop()
    result = subprocess.run(
        ["journalctl", "-D", str(folder), "-o", "json", "--all", "--no-pager",
         "SYSLOG_IDENTIFIER=milter-manager"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_entries_in_a_real_journal(tmp_path: Path) -> None:
    entries = journal_entries(tmp_path / "journal", LOGGING_SCRIPT)
    by_message = {str(e["MESSAGE"]).split("\n")[0]: e for e in entries}
    end = by_message["[session][end][end-of-message][accept][0.125](7)"]
    assert end["SYSLOG_IDENTIFIER"] == "milter-manager"
    assert end["SYSLOG_FACILITY"] == "2"
    assert end["PRIORITY"] == "6"
    assert end["MMD_EVENT"] == "session-end"
    assert end["MMD_SESSION_ID"] == "7"
    assert end["MMD_STATUS"] == "accept"
    assert end["MMD_ELAPSED"] == "0.125"
    assert end["MMD_STAGE"] == "end-of-message"  # lower case repaired
    assert end["LIVES"] == "x"  # a leading digit would make journald drop the field
    assert end["PID"] == "1"  # a leading "_" would claim a trusted field
    assert end["_PID"] != "1"  # journald's own, trusted
    assert "MMD_REASON" not in end
    assert end["LOGGER"] == "mmd.test"
    assert by_message["a debug line"]["PRIORITY"] == "7"
    assert by_message["an error"]["PRIORITY"] == "3"
    failed = by_message["failed"]
    assert failed["PRIORITY"] == "3"
    assert "ValueError: boom" in failed["MESSAGE"]
