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
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mmd.adapters.journal_reader import JournalQuery, read_entries
from mmd.report.aggregate import EVENTS, FIELDS, Aggregator, Totals
from mmd.report.layout import updates
from tests.support.journald import PrivateJournald

WEEK_ENTRIES = 30_000_000
SESSIONS_PER_SECOND = 50
MILTERS = ("spamass", "clamav", "opendkim")
HEADERS = (
    ("X-Spam-Status", "No, score=0.4 required=5.0 tests=NONE autolearn=ham"),
    ("Received-SPF", "pass (mx.example.org: domain of a@example.com designates 192.0.2.1)"),
    # a real RSA-2048 signature's length: over journald's 512-byte threshold, so compressed
    ("DKIM-Signature", "v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=mmd; "
     "t=1800000000; bh=" + "A" * 44 + "; h=From:To:Subject:Date:Message-ID; b=" + "B" * 344),
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
print(f"  wrote {count:,} entries to journald in {time.perf_counter() - started:.1f} s")
"""


def bench_journald(count: int) -> None:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="mmd-bench-journal-") as folder:
        journal = Path(folder) / "journal"
        # a script file, not -c: the daemon's _CMDLINE is short too (a long one is compressed
        # and journalctl would unpack it for every entry)
        writer = Path(folder) / "writer.py"
        writer.write_text(WRITER)
        journald = PrivateJournald(journal, settings=("RuntimeMaxUse=4G",
                                                      "RuntimeMaxFileSize=512M"))
        try:
            print(journald.inside(sys.executable, str(writer), str(count), str(root),
                                  timeout=3600), end="")
            journald.sync()
        finally:
            journald.stop()
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


def example_day(folder: Path) -> None:
    """A synthetic day (busy afternoons, quiet nights) through the real databases and graphs:
    the pictures in docs/images come from here."""
    import math
    import random

    from mmd.report import layout
    from mmd.report.run import Databases, draw

    rng = random.Random(9)
    end = int(time.time()) // 86400 * 86400
    start = end - 86400
    aggregator = Aggregator(Totals())
    databases = Databases(folder / "rrd", 60, {})
    statuses = ("pass",) * 60 + ("accept",) * 10 + ("reject",) * 22 + ("temporary-failure",) * 6 \
        + ("discard", "quarantine")
    session_id = 0
    for minute in range(1440):
        hour = minute / 60
        per_minute = 40 + 30 * math.sin((hour - 9) / 24 * 2 * math.pi) + rng.uniform(-8, 8)
        for _ in range(max(0, int(per_minute))):
            session_id += 1
            stamp = str((start + minute * 60 + rng.randrange(60)) * 1_000_000)
            status = rng.choice(statuses)
            spam = status == "reject" or rng.random() < 0.1
            batch = [
                {"MMD_EVENT": "milter-verdict", "MMD_MILTER": "spamass-milter",
                 "MMD_STATUS": "reject" if status == "reject" else "accept",
                 "MMD_ELAPSED": f"{rng.uniform(0.1, 0.6):.6f}"},
                {"MMD_EVENT": "milter-verdict", "MMD_MILTER": "clamav-milter",
                 "MMD_STATUS": "pass", "MMD_ELAPSED": f"{rng.uniform(0.05, 0.2):.6f}"},
                {"MMD_EVENT": "header-add", "MMD_HEADER_NAME": "X-Spam-Flag",
                 "MMD_HEADER_VALUE": "YES" if spam else "NO"},
                {"MMD_EVENT": "header-add", "MMD_HEADER_NAME": "Received-SPF",
                 "MMD_HEADER_VALUE": rng.choice(("pass", "pass", "pass", "softfail", "none"))},
                {"MMD_EVENT": "session-end", "MMD_STATUS": status,
                 "MMD_ELAPSED": f"{rng.uniform(0.2, 2.0):.6f}"},
            ]
            for entry in sorted(batch, key=lambda e: e["MMD_EVENT"] != "milter-verdict"):
                entry.update(__REALTIME_TIMESTAMP=stamp, MMD_SESSION_ID=str(session_id))
                flush = aggregator.add(entry)
                if flush is not None:
                    databases.add(layout.updates(flush.start, flush.end, flush.before,
                                                 flush.after, databases.last_update))
    closing = aggregator.finish(end)
    if closing is not None:
        databases.add(layout.updates(closing.start, closing.end, closing.before, closing.after,
                                     databases.last_update))
    databases.write()
    drawn = draw(folder / "html", folder / "rrd", aggregator.totals, end, 60)
    print(f"example: {session_id:,} sessions over a day, {len(drawn)} graphs in "
          f"{folder / 'html'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("entries", nargs="?", type=int, default=2_000_000)
    parser.add_argument("--journald", metavar="N", type=int, default=0,
                        help="also write N entries to a private journald and read them back")
    parser.add_argument("--example", metavar="DIR", type=Path,
                        help="instead: draw the graphs of a synthetic day into DIR/html")
    args = parser.parse_args()
    if args.example:
        example_day(args.example)
        return
    bench_parser(args.entries)
    if args.journald:
        bench_journald(args.journald)


if __name__ == "__main__":
    main()
