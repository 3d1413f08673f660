"""Fixtures that start real mail components for integration tests.

Session-scoped (started once, stopped at the end, by PID):
  ``integration_dir`` -> Path      a world-traversable temp folder for sockets and logs
  ``clamav_milter``   -> RealMilter  clamd + clamav-milter (EICAR rejected)
  ``opendkim_milter`` -> RealMilter  opendkim signing example.com (selector mmdtest)
  ``spamass_milter``  -> RealMilter  spamd + spamass-milter -m -r 15 (GTUBE rejected)
  ``postfix``         -> Postfix     private instance; ``set_milters(*specs)``, ``send(...)``,
                                     ``wait_for_mail(queue_id)``
Per test:
  ``scripted_milter`` -> callable(**behaviour) -> (connection_spec, Recorder)
  ``mmd_daemon``      -> callable(milters=[...], manager={...}, conditions={...}) -> MmdDaemon
                         (milter-manager from this checkout; ``.spec``, ``.log()``, ``.reload()``)

A component that cannot start fails the test loudly with its log; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.mmd_daemon import MmdDaemon, MmdDaemons
from tests.support.postfix import Postfix
from tests.support.processes import reachable_dir
from tests.support.real_milters import (
    RealMilter,
    start_clamav,
    start_opendkim,
    start_spamassassin,
)
from tests.support.scripted import Recorder, ScriptedMilters

ScriptedMilterFactory = Callable[..., tuple[str, Recorder]]
MmdDaemonFactory = Callable[..., MmdDaemon]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def integration_dir() -> Iterator[Path]:
    # not pytest's tmp_path: /tmp/pytest-of-root is 0700 and Postfix's user must reach sockets
    folder = reachable_dir(Path(tempfile.mkdtemp(prefix="mmd-integration-", dir="/tmp")))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def clamav_milter(integration_dir: Path) -> Iterator[RealMilter]:
    milter = start_clamav(integration_dir)
    yield milter
    milter.stop()


@pytest.fixture(scope="session")
def opendkim_milter(integration_dir: Path) -> Iterator[RealMilter]:
    milter = start_opendkim(integration_dir)
    yield milter
    milter.stop()


@pytest.fixture(scope="session")
def spamass_milter(integration_dir: Path) -> Iterator[RealMilter]:
    milter = start_spamassassin(integration_dir)
    yield milter
    milter.stop()


@pytest.fixture(scope="session")
def postfix(integration_dir: Path) -> Iterator[Postfix]:
    instance = Postfix(integration_dir)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def scripted_milter(integration_dir: Path) -> Iterator[ScriptedMilterFactory]:
    # short paths: a unix socket path must stay under 108 bytes
    folder = Path(tempfile.mkdtemp(prefix="s", dir=integration_dir))
    milters = ScriptedMilters(folder)

    def start(**behaviour: Any) -> tuple[str, Recorder]:
        return milters.start(**behaviour)

    yield start
    milters.stop_all()


@pytest.fixture
def mmd_daemon(integration_dir: Path) -> Iterator[MmdDaemonFactory]:
    """``mmd_daemon(milters=[...], manager={...}, conditions={...})`` -> a running MmdDaemon.

    Every daemon started in the test is stopped by PID at teardown; each must exit 0.
    """
    daemons = MmdDaemons(integration_dir / "mmd")

    def start(milters: Sequence[Mapping[str, Any]] = (),
              manager: Mapping[str, Any] | None = None,
              conditions: Mapping[str, Any] | None = None) -> MmdDaemon:
        # MMD_VERBOSE=1 in the environment adds the debug lines (condition skips) to .log()
        verbose = ["--verbose"] if os.environ.get("MMD_VERBOSE") else []
        return daemons.start(milters, manager, conditions, extra_args=verbose)

    yield start
    results = daemons.stop_all()
    failed = [(daemon, code) for daemon, code in results if code != 0]
    assert not failed, "; ".join(f"milter-manager {d.pid} exited with {code}:\n{d.log()[-3000:]}"
                                 for d, code in failed)
