"""The daemon in this process, on a real Unix socket: start with a refused configuration,
reload of settings only a restart applies, the socket file at exit (issue 13, defects 3, 10)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mmd.adapters.mta_client import SessionInput, Timeouts, run_session
from mmd.config.connection_spec import parse_connection_spec
from mmd.daemon.generation import Options
from mmd.daemon.service import Daemon

BROKEN = {
    "malformed-toml": ('[manager\nfallback_status = "accept"\n', ":1: (syntax): "),
    "status-typo": ('[manager]\nfallback_status = "tempfail"\n',
                    ":2: fallback_status: unknown status 'tempfail'"),
    "zero-timeout": ('[[milter]]\nname = "spam"\nconnection_spec = "inet:9@127.0.0.1"\n'
                     "connection_timeout = 0\n", ":4: connection_timeout: 0 is not a time-out"),
    "unknown-condition": ('[[milter]]\nname = "spam"\nconnection_spec = "inet:9@127.0.0.1"\n'
                          'applicable_conditions = ["No Such Condition"]\n',
                          ":4: milter spam: applicable_conditions: "),
}


async def session_status(path: Path) -> str:
    data = SessionInput(
        connect_host="mx.example.net",
        connect_address=parse_connection_spec("inet:50443@192.0.2.1"),
        helo_fqdn="mx.example.net",
        envelope_from="<sender@example.net>",
        recipients=["<receiver@example.org>"],
        headers=[("From", "<sender@example.net>")],
        body_chunks=[b"Hello.\r\n"],
    )
    spec = parse_connection_spec(f"unix:{path}")
    return (await run_session(spec, data, Timeouts(connection=5, reading=5))).status


@contextlib.asynccontextmanager
async def running(options: Options) -> AsyncIterator[Daemon]:
    daemon = Daemon(options)
    task = asyncio.create_task(daemon.run())
    while daemon.control.state() != "running":
        if task.done():
            task.result()
            raise AssertionError("the daemon stopped before it was ready")
        await asyncio.sleep(0.01)
    try:
        yield daemon
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 15) == 0


def options(config_dir: Path, socket_path: Path | None = None) -> Options:
    overrides: dict[str, object] = {}
    if socket_path is not None:
        overrides["connection_spec"] = f"unix:{socket_path}"
    return Options(config_dir=config_dir, overrides=overrides, bus_address="")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_refused_configuration_at_start_answers_temporary_failure(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    text, problem = BROKEN[case]
    main = tmp_path / "milter-manager.toml"
    main.write_text(text)
    sock = tmp_path / "mmd.sock"

    async def scenario() -> None:
        async with running(options(tmp_path, sock)) as daemon:
            assert await session_status(sock) == "temporary-failure"
            status = daemon.control.status_text()
            assert status.startswith("configuration refused, every session gets "
                                     "temporary-failure: "), status
            assert f"{main}{problem}" in status
            assert "systemctl reload milter-manager" in status
            assert "configuration refused" in daemon.control.show_config()

            main.write_text('[manager]\nfallback_status = "accept"\n')
            await daemon.control.reload()
            assert await session_status(sock) == "accept"  # no child: the fallback
            assert not daemon.control.status_text().startswith("configuration refused")

    with caplog.at_level(logging.INFO, logger="mmd"):
        asyncio.run(scenario())
    errors = [r for r in caplog.records if getattr(r, "fields", {}).get("MMD_EVENT")
              == "configuration-error"]
    assert any(f"{main}{problem}" in r.getMessage() for r in errors), caplog.text
    assert all(r.levelno == logging.ERROR for r in errors)


def test_reload_does_not_move_the_socket_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = tmp_path / "first.sock"
    second = tmp_path / "second.sock"
    main = tmp_path / "milter-manager.toml"
    main.write_text(f'[manager]\nconnection_spec = "unix:{first}"\nunix_socket_mode = "0660"\n'
                    "chunk_size = 4096\n")

    async def scenario() -> str:
        async with running(options(tmp_path)) as daemon:
            main.write_text(f'[manager]\nconnection_spec = "unix:{second}"\n'
                            'unix_socket_mode = "0600"\nchunk_size = 2048\n')
            await daemon.control.reload()
            assert await session_status(first) == "accept"
            assert not second.exists()
            return daemon.control.show_config()

    with caplog.at_level(logging.WARNING, logger="mmd"):
        shown = asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"reload: {main}:2: connection_spec: 'unix:{second}' not applied by a reload "
        "(the socket is opened at start; restart milter-manager to apply it)",
        f"reload: {main}:3: unix_socket_mode: 0600 not applied by a reload "
        "(the socket is opened at start; restart milter-manager to apply it)",
    ]
    assert (f"# {main}:2; in force since start ({main}:2 asks for 'unix:{second}': not "
            f"applied by a reload)\nconnection_spec = \"unix:{first}\"") in shown
    assert 'unix_socket_mode = "0660"' in shown
    assert "chunk_size = 2048" in shown  # what a reload can apply, it does


def test_socket_file_is_removed_at_exit(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "mmd.sock"

    async def scenario() -> None:
        async with running(options(tmp_path, sock)):
            assert sock.is_socket()

    asyncio.run(scenario())
    assert not sock.exists()
    client = socket.socket(socket.AF_UNIX)
    with pytest.raises(FileNotFoundError):  # "no such file", not "connection refused"
        client.connect(str(sock))
    client.close()


def test_socket_made_by_someone_else_since_is_left_alone(tmp_path: Path) -> None:
    sock = tmp_path / "mmd.sock"
    other = socket.socket(socket.AF_UNIX)

    async def scenario() -> None:
        async with running(options(tmp_path, sock)):
            sock.unlink()
            other.bind(str(sock))

    try:
        asyncio.run(scenario())
        assert sock.is_socket()
    finally:
        other.close()
