"""Where the memory of an idle MTA connection goes: Python objects against native memory.

Run: ``PYTHONPATH=. python bench/idle_memory.py [--idle 2000] [--tracemalloc]`` as root
(the open-files limit is raised for the idle sessions, as in ``bench/sessions.py``).

It starts the three always-continue children and mmd as ``bench/sessions.py`` does (logging
to stderr: the journal does not hold anything per idle session), warms mmd up with a little
load, then opens ``--idle`` sessions up to HELO and keeps them. mmd runs under a thin wrapper
whose thread writes, when asked, what mmd holds: VmRSS, glibc malloc's own figures
(``mallinfo2``: what libuv and uvloop take with ``malloc``), the Python objects by type
(``gc``), ``sys.getallocatedblocks()`` and, with ``--tracemalloc``, every Python-side
allocation by the line that made it. Printed per idle session, as the difference between
before and with the sessions open. Not a test: see bench/PROFILE.md (phase 4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sessions import (  # this folder
    CpuMeter,
    Processes,
    hold_idle,
    manager_lines,
    raise_file_limit,
    run_load,
)

# mmd's __main__ under this benchmark: a thread that, whenever the file argv[1] + ".ask"
# appears, writes what mmd holds to argv[1] + "." + its content, and removes the request.
_WATCHED_MMD = r"""
import collections, ctypes, gc, json, os, runpy, sys, threading, time, tracemalloc
path = sys.argv[1]
sys.argv = ["milter-manager", *sys.argv[2:]]
if os.environ.get("MMD_TRACEMALLOC"):
    tracemalloc.start(int(os.environ["MMD_TRACEMALLOC"]))

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def state(tag):
    gc.collect()
    info = libc.mallinfo2()
    kinds = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    result = dict(rss_kb=rss_kb(), malloc_used=info.uordblks, malloc_free=info.fordblks,
                  malloc_mmapped=info.hblkhd, blocks=sys.getallocatedblocks(),
                  kinds=dict(kinds))
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(path + "." + tag + ".snapshot")
        result["traced"] = tracemalloc.get_traced_memory()[0]
    with open(path + "." + tag, "w") as out:
        json.dump(result, out)

def watch():
    ask = path + ".ask"
    while True:
        time.sleep(0.1)
        if os.path.exists(ask):
            with open(ask) as request:
                tag = request.read().strip()
            state(tag)
            os.unlink(ask)

threading.Thread(target=watch, daemon=True).start()
try:
    runpy.run_module("mmd.cli.manager", run_name="__main__")
except SystemExit:
    pass
"""


async def ask(base: str, tag: str) -> dict[str, object]:
    """mmd's state now, as its watcher thread writes it."""
    ask_path = base + ".ask"
    Path(ask_path).write_text(tag)
    while os.path.exists(ask_path):
        await asyncio.sleep(0.1)
    with open(base + "." + tag) as raw:
        result: dict[str, object] = json.load(raw)
    return result


async def drive(procs: Processes, args: argparse.Namespace, base: str) -> None:
    mmd = procs.mmd
    assert mmd is not None
    cpu = CpuMeter(mmd.pid, [c.pid for c in procs.children])
    for concurrency in (10, 50):  # the heap as after the load points of sessions.py
        await run_load("mmd", [procs.mmd_path], concurrency, args.warm_up, cpu)
    await asyncio.sleep(0.5)
    before = await ask(base, "before")
    sessions, failures = await hold_idle(procs.mmd_path, args.idle)
    await asyncio.sleep(0.5)
    with_them = await ask(base, "idle")
    for session in sessions:
        session.quit()
    await asyncio.sleep(1.0)
    report(before, with_them, len(sessions), failures, base if args.tracemalloc else "")


def report(before: dict[str, object], after: dict[str, object], count: int, failures: int,
           snapshots: str) -> None:
    def per(key: str) -> float:
        return (float(after[key]) - float(before[key])) / count  # type: ignore[arg-type]

    print(f"{count} idle sessions held ({failures} failed to open); per idle session:")
    print(f"  VmRSS growth            {per('rss_kb') * 1024:8.0f} B")
    print(f"  malloc in use (arena)   {per('malloc_used'):8.0f} B   (glibc malloc: libuv, "
          "uvloop, big Python buffers)")
    print(f"  malloc mmapped          {per('malloc_mmapped'):8.0f} B")
    print(f"  malloc free in arena    {per('malloc_free'):8.0f} B")
    print(f"  Python allocated blocks {per('blocks'):8.1f}")
    if "traced" in after:
        print(f"  tracemalloc traced      {per('traced'):8.0f} B   (every Python-side "
              "allocation, raw allocator included)")
    kinds_before = before["kinds"]
    kinds_after = after["kinds"]
    assert isinstance(kinds_before, dict) and isinstance(kinds_after, dict)
    grown = sorted(((n - kinds_before.get(k, 0)) / count, k) for k, n in kinds_after.items())
    print("  gc-tracked objects per idle session, by type:")
    for number, kind in reversed(grown):
        if number >= 0.5:
            print(f"    {number:6.2f} {kind}")
    if snapshots:
        import tracemalloc

        old = tracemalloc.Snapshot.load(snapshots + ".before.snapshot")
        new = tracemalloc.Snapshot.load(snapshots + ".idle.snapshot")
        print("  tracemalloc, bytes per idle session by line (top 25):")
        for stat in new.compare_to(old, "lineno")[:25]:
            frame = stat.traceback[0]
            name = frame.filename.replace(str(Path(__file__).resolve().parent.parent) + "/", "")
            print(f"    {stat.size_diff / count:8.1f} B {stat.count_diff / count:6.2f} blocks"
                  f"  {name}:{frame.lineno}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--idle", type=int, default=2000, help="idle sessions (default 2000)")
    parser.add_argument("--warm-up", type=float, default=1.0,
                        help="seconds of load at c10 and at c50 first (default 1)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace Python allocations (RSS then includes tracemalloc's own)")
    parser.add_argument("--manager", action="append", default=[], metavar="KEY=VALUE",
                        help="a [manager] setting for mmd, VALUE in TOML (repeatable)")
    args = parser.parse_args(argv)
    raise_file_limit(args.idle * 5 + 100)
    folder = Path(tempfile.mkdtemp(prefix="mmd-idle-", dir="/var/tmp"))
    procs = Processes(folder, str(folder / "mmd.log"))
    procs.manager_settings = manager_lines(args.manager)
    base = str(folder / "state")
    if args.tracemalloc:
        os.environ["MMD_TRACEMALLOC"] = "1"
    try:
        procs.start_children()
        procs.start_mmd(wrapper=(_WATCHED_MMD, base))
        started = time.monotonic()
        asyncio.run(drive(procs, args, base))
        print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
        return 0
    finally:
        os.environ.pop("MMD_TRACEMALLOC", None)
        procs.stop_all()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
