"""Throughput and memory of the report's aggregation path (and, optionally, of journalctl).

Target: a week at 50 sessions/s (about 30 million entries) in reasonable time and constant
memory. Run as ``PYTHONPATH=. python bench/report.py [ENTRIES]`` (default 2,000,000): synthetic
``journalctl -o json`` lines (the fields the report asks for) go through json.loads, the
aggregator and the RRD point builder, as in a real run minus the journal and rrdtool. Prints
entries/s, the projected time for 30 million, and peak RSS after a quarter and after all of the
entries (equal numbers mean constant memory).

``--journald N`` (root; uses unshare and a private journald, never the host's journal) also
writes N entries to a real journald and times the full reader (journalctl + parser + aggregator).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mmd.adapters.journal_reader import JournalQuery, read_entries
from mmd.report.aggregate import EVENTS, FIELDS, Aggregator, Totals
from mmd.report.layout import updates

WEEK_ENTRIES = 30_000_000
SESSIONS_PER_SECOND = 50
MILTERS = ("spamass", "clamav", "opendkim")
HEADERS = (
    ("X-Spam-Status", "No, score=0.4 required=5.0 tests=NONE autolearn=ham"),
    ("Received-SPF", "pass (mx.example.org: domain of a@example.com designates 192.0.2.1)"),
    ("DKIM-Signature", "v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=mmd"),
)
ENTRIES_PER_SESSION = len(MILTERS) + len(HEADERS) + 1


def session_entries(index: int, start_us: int) -> list[dict[str, str]]:
    """One session's entries in journalctl's JSON shape."""
    stamp = str(start_us + index * 1_000_000 // SESSIONS_PER_SECOND)
    session_id = str(index)
    common = {"__REALTIME_TIMESTAMP": stamp, "_PID": "4242", "MMD_SESSION_ID": session_id}
    entries = []
    for milter in MILTERS:
        entries.append({**common, "MMD_EVENT": "milter-verdict", "MMD_MILTER": milter,
                        "MMD_STATUS": "accept" if index % 9 else "reject",
                        "MMD_ELAPSED": "0.031250"})
    for name, value in HEADERS:
        entries.append({**common, "MMD_EVENT": "header-add", "MMD_HEADER_NAME": name,
                        "MMD_HEADER_VALUE": value})
    entries.append({**common, "MMD_EVENT": "session-end",
                    "MMD_STATUS": ("pass", "accept", "reject")[index % 3],
                    "MMD_ELAPSED": "0.125000"})
    for serial, entry in enumerate(entries):
        entry["__CURSOR"] = f"s=0;i={index * ENTRIES_PER_SESSION + serial:x};b=0;m=0;t={stamp}"
        entry["__MONOTONIC_TIMESTAMP"] = stamp
    return entries


def lines(count: int) -> Iterator[bytes]:
    """``count`` JSON lines, generated on the fly (never held in memory)."""
    start_us = 1_800_000_000 * 1_000_000
    produced = 0
    index = 0
    while produced < count:
        for entry in session_entries(index, start_us):
            if produced == count:
                return
            yield json.dumps(entry).encode() + b"\n"
            produced += 1
        index += 1


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU time: steadier than wall time on a shared machine."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bench_parser(count: int) -> None:
    aggregator = Aggregator(Totals())
    last_update: dict[str, int] = {}
    loads = json.loads
    quarter = count // 4
    rss_quarter = 0.0
    points = 0
    started = time.perf_counter()
    cpu_started = cpu_seconds()
    for done, line in enumerate(lines(count), 1):
        flush = aggregator.add(loads(line))
        if flush is not None:
            points += sum(len(b) for b in updates(flush.start, flush.end, flush.before,
                                                  flush.after, last_update).values())
        if done == quarter:
            rss_quarter = peak_rss_mib()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_started
    # the synthetic lines' own cost, measured apart and taken off
    sample = min(count, 200_000)
    generation_started = cpu_seconds()
    for _ in lines(sample):
        pass
    generate = (cpu_seconds() - generation_started) * count / sample
    work = cpu - generate
    rate = count / work
    sessions = sum(aggregator.totals.sessions.values())
    print(f"parser+aggregator: {count:,} entries ({sessions:,} sessions, {points:,} RRD points)"
          f": {work:.1f} s CPU (+{generate:.1f} s generating lines; {elapsed:.1f} s wall in "
          f"all): {rate:,.0f} entries/s per CPU second")
    print(f"  projected for {WEEK_ENTRIES:,} entries: {WEEK_ENTRIES / rate / 60:.1f} min CPU")
    print(f"  peak RSS: {rss_quarter:.1f} MiB after {quarter:,} entries, "
          f"{peak_rss_mib():.1f} MiB after {count:,}")


SANDBOX = r"""
set -eu
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/log/journal /run/systemd/journald.conf.d
mount --bind "$JOURNAL_DIR" /run/log/journal
printf '%s\n' '[Journal]' Storage=volatile RuntimeMaxUse=4G RuntimeMaxFileSize=512M \
  ReadKMsg=no ForwardToSyslog=no ForwardToWall=no ForwardToConsole=no Audit=no \
  RateLimitBurst=0 > /run/systemd/journald.conf.d/bench.conf
/lib/systemd/systemd-journald & journald=$!
while [ ! -S /run/systemd/journal/socket ]; do sleep 0.02; done
"$@"
journalctl --sync
kill "$journald"; wait "$journald" || true
"""

WRITER = r"""
import sys, time
from cysystemd import journal
sys.path.insert(0, sys.argv[2])
from bench.report import session_entries
count = int(sys.argv[1])
started = time.perf_counter()
sent = index = 0
while sent < count:
    for entry in session_entries(index, 0):
        if sent == count:
            break
        fields = {k: v for k, v in entry.items() if not k.startswith("_")}
        journal.send(MESSAGE="x", SYSLOG_IDENTIFIER="milter-manager", **fields)
        sent += 1
    index += 1
print(f"  wrote {count:,} entries to journald in {time.perf_counter() - started:.1f} s",
      file=sys.stderr)
"""


def bench_journald(count: int) -> None:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="mmd-bench-journal-") as folder:
        journal = Path(folder)
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "sandbox",
             sys.executable, "-c", WRITER, str(count), str(root)],
            env=dict(os.environ, JOURNAL_DIR=str(journal)), check=True,
        )
        size = sum(p.stat().st_size for p in journal.rglob("*.journal"))
        aggregator = Aggregator(Totals())
        query = JournalQuery(directory=journal, events=EVENTS, fields=FIELDS)
        children_before = cpu_seconds(resource.RUSAGE_CHILDREN)
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        read = 0
        with read_entries(query) as entries:
            for entry in entries:
                aggregator.add(entry)
                read += 1
        elapsed = time.perf_counter() - started
        ours = cpu_seconds() - cpu_before
        journalctl = cpu_seconds(resource.RUSAGE_CHILDREN) - children_before
    # journalctl and the parser run side by side: the slower one sets the pace
    rate = read / max(ours, journalctl)
    print(f"journalctl+parser+aggregator: {read:,} entries from {size / 2**20:.0f} MiB of "
          f"journal: {elapsed:.1f} s wall; CPU: journalctl {journalctl:.1f} s, "
          f"parser+aggregator {ours:.1f} s: {rate:,.0f} entries/s on two free cores, "
          f"{read / (ours + journalctl):,.0f} entries/s on one")
    print(f"  projected for {WEEK_ENTRIES:,} entries: {WEEK_ENTRIES / rate / 60:.1f} min "
          f"(two cores), {WEEK_ENTRIES * (ours + journalctl) / read / 60:.1f} min (one core)")
    print(f"  peak RSS: report {peak_rss_mib():.1f} MiB, "
          f"children (journalctl, journald) {peak_rss_mib(resource.RUSAGE_CHILDREN):.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("entries", nargs="?", type=int, default=2_000_000)
    parser.add_argument("--journald", metavar="N", type=int, default=0,
                        help="also write N entries to a private journald and read them back")
    args = parser.parse_args()
    bench_parser(args.entries)
    if args.journald:
        bench_journald(args.journald)


if __name__ == "__main__":
    main()
