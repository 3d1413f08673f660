"""Control traffic never stalls mail: session latency with and without 100 busctl calls.

    python bench/dbus_control.py            # the real daemon (milter-manager) under session load
    python bench/dbus_control.py --fake     # only the D-Bus side: the adapter over a fake Control

The daemon run starts a private dbus-daemon, then
``milter-manager -s unix:PATH -c DIR --no-detection`` (no child milters: the
manager alone, so any stall is the manager's) with ``DBUS_SYSTEM_BUS_ADDRESS``
pointing at it, waits until it owns org.miltermanager.Manager1, and runs a
session load (milter-test-server's MTA-side client, in this process) against
the daemon's socket twice: alone, and while 100 busctl calls run. It prints the
p50/p95 session latency of both runs and the busctl call times; the difference
of the p50s is what control traffic costs mail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.dbus

from mmd.adapters.dbus_service import BUS_NAME, INTERFACE_NAME, OBJECT_PATH
from mmd.adapters.mta_client import run_session
from mmd.cli.test_server import options_from
from tests.support.dbus import (
    FakeControl,
    LoopThread,
    PrivateBus,
    start_bus,
)

# What an admin's scripts and a monitoring agent would send: read-only calls and properties.
CONTROL_CALLS: list[list[str]] = [
    ["call", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "ListMilters"],
    ["call", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "GetStatistics"],
    ["get-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "ActiveSessions"],
    ["get-property", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "State"],
    ["call", BUS_NAME, OBJECT_PATH, INTERFACE_NAME, "ShowConfig"],
]


def time_busctl_calls(address: str, count: int = 100) -> list[float]:
    """Fire COUNT busctl calls one after another; seconds each. Fails loudly on any error."""
    times: list[float] = []
    for index in range(count):
        call = ["busctl", f"--address={address}", *CONTROL_CALLS[index % len(CONTROL_CALLS)]]
        started = time.perf_counter()
        subprocess.run(call, check=True, capture_output=True, timeout=30)
        times.append(time.perf_counter() - started)
    return times


def command(program: str, module: str) -> list[str]:
    """The installed console script, or the module run by this interpreter (a bare checkout)."""
    found = shutil.which(program)
    return [found] if found else [sys.executable, "-m", module]


def run_session_load(
    socket_path: Path, sessions: int, concurrency: int, running: threading.Event | None = None
) -> list[float]:
    """At least SESSIONS MTA-side sessions (milter-test-server's defaults), CONCURRENCY at a time.

    With RUNNING, keeps going for as long as that event is set, so the whole
    control burst meets mail. The client runs in this process, so the times are
    the daemon's answer times, not a tool's start-up. Seconds each; any failed
    session fails the run.
    """
    options = options_from(["-s", f"unix:{socket_path}"])
    times: list[float] = []

    def more() -> bool:
        return len(times) < sessions or (running is not None and running.is_set())

    async def worker() -> None:
        while more():
            started = time.perf_counter()
            await run_session(options.spec, options.session, options.timeouts)
            times.append(time.perf_counter() - started)

    async def all_workers() -> None:
        await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(all_workers())
    return times


def describe(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000
    return (
        f"{label}: n={len(ordered)} p50={p50:.1f} ms p95={p95:.1f} ms "
        f"max={ordered[-1] * 1000:.1f} ms"
    )


def wait_for_name(address: str, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"milter-manager exited with {process.returncode}")
        result = subprocess.run(
            ["busctl", f"--address={address}", "call", "org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", BUS_NAME],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.stdout.strip() == "b true":
            return
        time.sleep(0.1)
    raise RuntimeError(f"milter-manager did not take {BUS_NAME} within {timeout} s")


def bench_fake(calls: int) -> None:
    bus = start_bus("session")
    loop = LoopThread()
    try:
        from mmd.adapters.dbus_service import export_control

        handle = loop.run(export_control(FakeControl(), bus.address))
        print(describe(f"busctl calls against the adapter over a fake Control ({calls})",
                       time_busctl_calls(bus.address, calls)))  # fmt: skip
        loop.run(handle.close())
    finally:
        loop.stop()
        bus.stop()


def bench_daemon(calls: int, sessions: int, concurrency: int) -> None:
    manager = command("milter-manager", "mmd.cli.manager")
    bus: PrivateBus = start_bus("session")
    work = Path(tempfile.mkdtemp(prefix="mmd-bench-dbus-"))
    config_dir = work / "etc"
    config_dir.mkdir()
    socket_path = work / "milter-manager.sock"
    (config_dir / "milter-manager.toml").write_text(
        f'[manager]\nconnection_spec = "unix:{socket_path}"\n'
    )
    daemon = subprocess.Popen(
        [*manager, "-s", f"unix:{socket_path}", "-c", str(config_dir), "--no-detection"],
        env={
            **os.environ,
            "DBUS_SYSTEM_BUS_ADDRESS": bus.address,
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        },
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_name(bus.address, daemon)
        run_session_load(socket_path, 100, concurrency)  # warm-up, not counted
        alone = run_session_load(socket_path, sessions, concurrency)

        call_times: list[float] = []
        running = threading.Event()
        running.set()

        def control_burst() -> None:
            try:
                call_times.extend(time_busctl_calls(bus.address, calls))
            finally:
                running.clear()

        control = threading.Thread(target=control_burst)
        control.start()
        loaded = run_session_load(socket_path, sessions, concurrency, running)
        control.join()
        if len(call_times) != calls:
            raise RuntimeError("the busctl calls did not all complete")

        print(describe("sessions without control traffic", alone))
        print(describe(f"sessions during {calls} busctl calls", loaded))
        print(describe("busctl calls during the load", call_times))
        difference = (statistics.median(loaded) - statistics.median(alone)) * 1000
        print(f"p50 session latency difference: {difference:+.1f} ms")
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        bus.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--fake",
        action="store_true",
        help="only time busctl calls against the adapter over a fake Control",
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)  # fmt: skip
    options = parser.parse_args(argv)
    if options.fake:
        bench_fake(options.calls)
    else:
        bench_daemon(options.calls, options.sessions, options.concurrency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
