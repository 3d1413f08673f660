"""The least CPU a one-process Python milter relay spends per session: a floor for issue 18.

Run: ``PYTHONPATH=. python bench/floor.py [--seconds 4]`` (the same three libmilter
children and the same Postfix-style sessions as ``bench/sessions.py``, whose driver and
process helpers it uses).

The relay (``--serve``, started as its own process on uvloop as mmd is) does only what
cannot be left out when one socket fans each session out to three children, and less than
mmd does:

* child connections negotiated once and kept across sessions (QUIT_NC), three per MTA
  connection, taken from a free list;
* per packet only the 5-byte header is read: no decoding, no macro handling, no
  conditions, no verdict merge, no header bookkeeping, no time-outs, no journal;
* every command that wants a reply goes to the three children at once (mmd replays the
  message to one child after another), and the MTA gets ``continue`` once all three
  answered.

So its CPU per session is below what any relay with mmd's duties can reach in one CPython
process on this event loop: if it is above the 0.55 ms target, the target needs another
design (native code on the packet path, or several processes), not a faster mmd.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sessions as harness  # bench/sessions.py: the driver, the children, the CPU meter

OPTNEG, MACRO, QUIT, QUIT_NC, ABORT = b"O", b"D", b"Q", b"K", b"A"
CONTINUE = b"\x00\x00\x00\x01c"
QUIT_NC_PACKET = b"\x00\x00\x00\x01K"


def packets(buffer: bytearray) -> list[bytes]:
    """Complete packets at the start of ``buffer`` (taken out of it)."""
    out: list[bytes] = []
    start = 0
    size = len(buffer)
    while size - start >= 5:
        length = int.from_bytes(buffer[start : start + 4], "big")
        end = start + 4 + length
        if end > size:
            break
        out.append(bytes(buffer[start:end]))
        start = end
    del buffer[:start]
    return out


class Child(asyncio.Protocol):
    """One kept child connection."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.owner: Mta | None = None
        self.answer: asyncio.Future[bytes] | None = None
        self.used = False  # served a session: libmilter waits for QUIT_NC

    def itself(self) -> Child:
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclass: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        for packet in packets(buffer):
            answer = self.answer
            if answer is not None:  # the OPTNEG answer
                self.answer = None
                answer.set_result(packet)
            elif self.owner is not None:
                self.owner.child_replied()


class Mta(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.children: list[Child] = []
        self.waiting = 0
        self.queue: list[bytes] = []
        self.quit_nc = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclass: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        self.queue.extend(packets(buffer))
        if not self.waiting:
            self.drain()

    def drain(self) -> None:
        queue = self.queue
        while queue and not self.waiting:
            packet = queue.pop(0)
            code = packet[4:5]
            if code == OPTNEG:
                self.children = self.relay.take(self)
                assert self.transport is not None
                self.transport.write(self.relay.answer)
            elif code == QUIT:
                self.finish()
                return
            else:
                if self.quit_nc:  # a kept triple: QUIT_NC before the session's first packet
                    self.quit_nc = False
                    packet = QUIT_NC_PACKET + packet
                for child in self.children:
                    assert child.transport is not None
                    child.transport.write(packet)
                if code != MACRO and code != ABORT:
                    self.waiting = len(self.children)

    def child_replied(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            assert self.transport is not None
            self.transport.write(CONTINUE)
            self.drain()

    def finish(self) -> None:
        self.relay.give_back(self.children)
        self.children = []
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.children:
            self.finish()


class Relay:
    def __init__(self, child_paths: list[str]) -> None:
        self.child_paths = child_paths
        self.free: list[list[Child]] = []
        self.answer = b""
        self.loop = asyncio.get_event_loop()
        self.pending = 0

    async def prepare(self, count: int) -> None:
        """Negotiate ``count`` triples before serving (the pool warmed up)."""
        for _ in range(count):
            triple: list[Child] = []
            for path in self.child_paths:
                child = Child(self)
                await self.loop.create_unix_connection(child.itself, path)
                child.answer = self.loop.create_future()
                assert child.transport is not None
                child.transport.write(harness.OFFER)
                self.answer = await child.answer
                triple.append(child)
            self.free.append(triple)

    def take(self, mta: Mta) -> list[Child]:
        triple = self.free.pop()
        for child in triple:
            child.owner = mta
        mta.quit_nc = triple[0].used
        return triple

    def give_back(self, triple: list[Child]) -> None:
        for child in triple:
            child.owner = None
            child.used = True
        self.free.append(triple)


async def serve(path: str, child_paths: list[str], kept: int) -> None:
    relay = Relay(child_paths)
    await relay.prepare(kept)
    server = await relay.loop.create_unix_server(lambda: Mta(relay), path)
    async with server:
        await server.serve_forever()


def measure(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="mmd-floor-", dir="/var/tmp"))
    procs = harness.Processes(folder, str(folder / "relay.log"))
    try:
        procs.start_children()
        relay_path = str(folder / "relay.sock")
        relay = subprocess.Popen(
            [sys.executable, __file__, "--serve", relay_path, "--kept", str(args.kept),
             *procs.child_paths],
            stdin=subprocess.DEVNULL,
        )
        harness.wait_for_socket(relay_path, [relay, *procs.children])
        print(f"load: {os.getloadavg()[0]:.2f}; relay pid {relay.pid}")
        print(f"{'conc':>5}{'sessions/s':>12}{'relay cpu':>11}{'ms/session':>12}"
              f"{'children cpu':>14}{'other cpu':>11}")
        for concurrency in args.concurrency:
            meter = harness.CpuMeter(relay.pid, [c.pid for c in procs.children])
            point = asyncio.run(
                harness.run_load("floor", [relay_path], concurrency, args.seconds, meter)
            )
            per = point.mmd_cpu / point.rate * 1000 if point.rate else float("nan")
            print(f"{concurrency:>5}{point.rate:>12.0f}{point.mmd_cpu:>11.0%}{per:>12.3f}"
                  f"{point.children_cpu:>14.0%}{point.other_cpu:>11.0%}"
                  f"  errors {sum(point.errors.values())}")
        relay.terminate()
        relay.wait(10)
    finally:
        procs.stop_all()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per point")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 10, 50],
                        help="session loops per point (default 1 10 50)")
    parser.add_argument("--kept", type=int, default=60,
                        help="child connection triples negotiated before serving")
    parser.add_argument("--serve", metavar="PATH", help="(internal) run the relay on PATH")
    parser.add_argument("children", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        uvloop.install()
        asyncio.run(serve(args.serve, args.children, args.kept))
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
