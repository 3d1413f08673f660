"""milter-manager's command line: what it decides before the daemon runs."""

from __future__ import annotations

import os

import pytest

from mmd.cli.manager import socket_activated


def test_socket_activated_when_systemd_passed_a_socket_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "milter")
    assert socket_activated()


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LISTEN_PID": "1", "LISTEN_FDS": "1"},  # leaked from a parent
        {"LISTEN_PID": "not-a-pid", "LISTEN_FDS": "1"},  # the daemon reports this one
    ],
)
def test_not_socket_activated(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert not socket_activated()
