"""What one mmd session costs, counted: system calls, loop wake-ups, timers, allocations, logging.

Run: ``PYTHONPATH=. python bench/session_counts.py [--seconds 6] [--concurrency 10]`` as root
(the private journald of ``bench/sessions.py``; strace for the system calls).

It starts the same three always-continue children and mmd as ``bench/sessions.py`` (logging
at INFO to a private journald), but mmd runs under a thin wrapper that counts, inside the
process, without changing mmd's code:

* event-loop callbacks mmd schedules (``call_soon``, ``call_later``/``call_at`` = timers
  armed, how many of those fired, tasks created), through a subclass of the loop;
* the cyclic garbage collector: collections per generation and the time they took
  (``gc.callbacks``), and the net gc-tracked allocations they imply;
* the journal: entries sent, CPU time in the handler (``JournalHandler.emit``, or
  ``send_entry`` for the entries that skip ``logging``), and CPU time in the recorder's
  methods (building the record, logging machinery and the send);
* sessions finished (``JournalRecorder.session_finished``).

A second pass runs mmd as shipped under ``strace -c -f -p`` for a few seconds and counts its
system calls (``epoll_wait`` calls are the loop's wake-ups; ``accept4`` calls are the
sessions of that window).
It prints figures per session; it is not a test. See bench/PROFILE.md for what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sessions import (  # this folder
    CpuMeter,
    Processes,
    journal_possible,
    manager_lines,
    run_load,
)

# Runs as mmd's __main__: installs the counters, then runs mmd.cli.manager as usual and
# writes the counters to argv[1] when mmd stops (SIGTERM).
_COUNTING_MMD = r"""
import gc, json, runpy, sys, time
path = sys.argv[1]
sys.argv = ["milter-manager", *sys.argv[2:]]
counts = dict(call_soon=0, timers=0, timers_fired=0, tasks=0, sessions=0, entries=0,
              emit_ns=0, recorder_ns=0, recorder_calls=0, gc_ns=[0, 0, 0])
clock = time.thread_time_ns

import uvloop

class CountingLoop(uvloop.Loop):
    def call_soon(self, callback, *args, **kwargs):
        counts["call_soon"] += 1
        return super().call_soon(callback, *args, **kwargs)

    # uvloop's call_at calls call_later: counting here counts both
    def call_later(self, delay, callback, *args, **kwargs):
        counts["timers"] += 1
        def fired(*a):
            counts["timers_fired"] += 1
            return callback(*a)
        return super().call_later(delay, fired, *args, **kwargs)

    def create_task(self, coro, **kwargs):
        counts["tasks"] += 1
        return super().create_task(coro, **kwargs)

uvloop.new_event_loop = CountingLoop

from mmd.adapters import journal
emit = journal.JournalHandler.emit
def counted_emit(self, record):
    counts["entries"] += 1
    started = clock()
    emit(self, record)
    counts["emit_ns"] += clock() - started
journal.JournalHandler.emit = counted_emit
send_entry = journal.JournalHandler.send_entry  # the per-session entries, without logging
def counted_send_entry(self, *args):
    counts["entries"] += 1
    started = clock()
    send_entry(self, *args)
    counts["emit_ns"] += clock() - started
journal.JournalHandler.send_entry = counted_send_entry

from mmd.daemon import records
def timed(method):
    def wrapper(self, *args):
        started = clock()
        try:
            return method(self, *args)
        finally:
            counts["recorder_ns"] += clock() - started
            counts["recorder_calls"] += 1
    return wrapper
for name in ("child_finished", "session_finished", "session_started", "child_error",
             "header_added", "mta_error", "condition_skipped"):
    setattr(records.JournalRecorder, name, timed(getattr(records.JournalRecorder, name)))
finished = records.JournalRecorder.session_finished
def session_finished(self, record):
    counts["sessions"] += 1
    return finished(self, record)
records.JournalRecorder.session_finished = session_finished

gc_started = [0]
counts["gc_collected"] = 0
def on_gc(phase, info):
    if phase == "start":
        gc_started[0] = clock()
    else:
        counts["gc_ns"][info["generation"]] += clock() - gc_started[0]
        counts["gc_collected"] += info["collected"]
gc.callbacks.append(on_gc)
import os
if os.environ.get("MMD_COUNT_GARBAGE"):
    gc.set_debug(gc.DEBUG_SAVEALL)  # cyclic garbage kept in gc.garbage, to name its types

cpu_started = time.process_time()
try:
    runpy.run_module("mmd.cli.manager", run_name="__main__")
except SystemExit:
    pass
finally:
    counts["cpu_s"] = time.process_time() - cpu_started
    import os
    times = os.times()
    counts["user_s"], counts["system_s"] = times.user, times.system
    counts["gc"] = gc.get_stats()
    if gc.garbage:
        import collections
        kinds = collections.Counter(type(thing).__qualname__ for thing in gc.garbage)
        counts["garbage"] = kinds.most_common(25)
    counts["gc_threshold"] = gc.get_threshold()
    with open(path, "w") as out:
        json.dump(counts, out)
"""


def strace_counts(pid: int, seconds: float, output: str) -> subprocess.Popen[bytes] | None:
    strace = shutil.which("strace")
    if not strace:
        return None
    return subprocess.Popen(
        ["timeout", "-s", "INT", f"{seconds:g}", strace, "-c", "-f", "-o", output, "-p",
         str(pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def parse_strace(path: str) -> dict[str, int]:
    """calls per system call from ``strace -c`` output."""
    calls: dict[str, int] = {}
    with open(path) as summary:
        for line in summary:
            parts = line.split()
            if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
                if len(parts) == 6:
                    calls[parts[-1] + " errors"] = int(parts[4])
    return calls


async def drive(procs: Processes, args: argparse.Namespace, trace_to: str) -> int:
    """Warm up, then load mmd; with ``trace_to``, strace counts its system calls meanwhile."""
    mmd = procs.mmd
    assert mmd is not None
    cpu = CpuMeter(mmd.pid, [c.pid for c in procs.children])
    await run_load("mmd", [procs.mmd_path], args.concurrency, 1.0, cpu)
    tracer = None
    load = asyncio.ensure_future(
        run_load("mmd", [procs.mmd_path], args.concurrency, args.seconds, cpu))
    if trace_to:
        await asyncio.sleep(1.0)
        tracer = strace_counts(mmd.pid, max(1.0, args.seconds - 2), trace_to)
    point = await load
    if tracer is not None:
        await asyncio.get_running_loop().run_in_executor(None, tracer.wait)
    return point.sessions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="load time per pass (default 6)")
    parser.add_argument("--concurrency", type=int, default=10, help="session loops (default 10)")
    parser.add_argument("--manager", action="append", default=[], metavar="KEY=VALUE",
                        help="a [manager] setting for mmd, VALUE in TOML (repeatable)")
    parser.add_argument("--no-strace", dest="strace", action="store_false",
                        help="skip the second pass (system calls under strace)")
    args = parser.parse_args(argv)
    if not journal_possible():
        print("needs root, unshare and systemd-journald (the private journal)", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="mmd-counts-", dir="/var/tmp"))
    procs = Processes(folder, str(folder / "mmd.log"))
    procs.journal = True
    procs.manager_settings = manager_lines(args.manager)
    counts_path = str(folder / "counts.json")
    trace_path = str(folder / "strace.txt") if args.strace and shutil.which("strace") else ""
    try:
        procs.start_children()
        # pass 1: the counters (their own clock reads would show up under strace)
        procs.start_mmd(wrapper=(_COUNTING_MMD, counts_path))
        asyncio.run(drive(procs, args, ""))
        procs.stop_mmd()
        procs.stop_journald()
        with open(counts_path) as raw:
            counts = json.load(raw)
        if trace_path:  # pass 2: mmd as shipped, its system calls counted (strace slows it)
            procs.start_mmd()
            asyncio.run(drive(procs, args, trace_path))
        report(counts, trace_path if trace_path and os.path.exists(trace_path) else "")
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(folder, ignore_errors=True)


def report(counts: dict[str, object], trace_path: str) -> None:
    gc_ns = counts["gc_ns"]
    assert isinstance(gc_ns, list)

    def number(key: str) -> float:
        value = counts[key]
        assert isinstance(value, int | float)
        return float(value)

    sessions = number("sessions")
    if not sessions:
        print("mmd finished no session")
        return
    gc_stats = counts["gc"]
    assert isinstance(gc_stats, list)
    threshold = counts["gc_threshold"]
    assert isinstance(threshold, list)
    collections = [int(generation["collections"]) for generation in gc_stats]
    cpu_ms = number("cpu_s") * 1000 / sessions
    print(f"{sessions:.0f} sessions (warm-up included), mmd CPU {cpu_ms:.3f} ms per session"
          " over its whole life (start-up and the counters' own cost included;"
          f" user {number('user_s') * 1000 / sessions:.3f} ms,"
          f" system {number('system_s') * 1000 / sessions:.3f} ms)")
    print()
    print("per session:")
    rows = [
        ("call_soon callbacks", number("call_soon") / sessions, ""),
        ("timers armed (call_at/call_later)", number("timers") / sessions, ""),
        ("timers that fired", number("timers_fired") / sessions, ""),
        ("tasks created", number("tasks") / sessions, ""),
        ("journal entries", number("entries") / sessions, ""),
        ("  CPU in JournalHandler.emit / send_entry", number("emit_ns") / sessions / 1000, "us"),
        ("  CPU in JournalRecorder (record + logging + emit)",
         number("recorder_ns") / sessions / 1000, "us"),
        ("objects in reference cycles, freed only by the collector",
         number("gc_collected") / sessions, ""),
        (f"gen-0 collections (threshold {threshold[0]})", collections[0] / sessions, ""),
        ("gen-1 / gen-2 collections", (collections[1] + collections[2]) / sessions, ""),
        *((f"  CPU in the garbage collector, generation {generation}",
           gc_ns[generation] / sessions / 1000, "us") for generation in range(3)),
    ]
    for label, value, unit in rows:
        print(f"  {label:<68}{value:>10.2f} {unit}")
    garbage = counts.get("garbage")
    if isinstance(garbage, list):
        print("  cyclic garbage by type (MMD_COUNT_GARBAGE=1; the collector keeps it):")
        for kind, count in garbage:
            print(f"    {kind:<66}{count / sessions:>10.2f}")
    if not trace_path:
        return
    calls = parse_strace(trace_path)
    # libuv accepts until EAGAIN: the sessions are the accepts that did not fail
    window = calls.get("accept4", 0) - calls.get("accept4 errors", 0)
    print()
    if not window:
        print("strace saw no accept: no system-call figures")
        return
    total = sum(count for name, count in calls.items() if not name.endswith(" errors"))
    print(f"system calls during strace's window ({window} sessions accepted; strace slows mmd):"
          f" {total / window:.1f} per session")
    for name, count in sorted(calls.items(), key=lambda item: -item[1])[:16]:
        print(f"  {name:<20}{count / window:>8.2f}")
    print(f"  loop wake-ups (epoll_wait) per session: {calls.get('epoll_wait', 0) / window:.2f}")


if __name__ == "__main__":
    sys.exit(main())
