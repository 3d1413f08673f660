"""A configuration folder the daemon's user may not enter is a reported problem, not a crash.

Seen in the system-test container: /etc/milter-manager at 0700 root made ``Path.is_file()``
raise PermissionError in the daemon (running as milter-manager), which exited and restarted
in a loop instead of starting with a logged problem (it now starts refused: every session
gets temporary-failure until a reload succeeds).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mmd.config.loader import ConfigError, load_configuration
from tests.support.detected import detected_milter
from tests.support.users import effective_user


def test_unreadable_config_folder_is_a_problem() -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        Path(scratch).chmod(0o755)
        config_dir = Path(scratch) / "milter-manager"
        config_dir.mkdir(mode=0o700)
        (config_dir / "milter-manager.toml").write_text('[manager]\nchunk_size = 4096\n')
        detected = detected_milter("opendkim", "unix:/run/opendkim/opendkim.sock",
                                   "/etc/opendkim.conf")
        with effective_user("nobody"), pytest.raises(ConfigError) as raised:
            load_configuration(config_dir, [detected])
    (problem,) = raised.value.problems
    assert problem.startswith(f"{config_dir}: cannot read: ")
    assert "Permission denied" in problem
    # what could be loaded is kept (the refused daemon still listens where it says)
    assert raised.value.configuration is not None
    assert [m.name for m in raised.value.configuration.milters] == ["opendkim"]
