"""Big messages through a no-reply child: does one large mail stall everybody else?

Run: ``make bench`` or ``python bench/big_messages.py [--sizes 10,50,100] [--replace]``.

What it does, on loopback unix sockets in a fresh folder under /var/tmp:

* builds ``bench/noreply_milter.c`` (libmilter; asks for the body and end-of-message
  only, and for no reply to body chunks) and starts it as mmd's one child;
* for each size, starts a fresh mmd (``python -m mmd.cli.manager --no-detection
  --no-dbus``) and sends one message of that many MB (64 KiB body chunks, as Postfix
  sends them) as an MTA would, up to the end-of-message verdict;
* with ``--replace`` the child replaces the body at end-of-message by one of the same
  size, so mmd streams a big new body to the MTA too;
* meanwhile another thread opens new sessions one after another and times how long
  mmd takes to answer their option negotiation, and samples mmd's resident memory.

It prints, per size, the longest negotiation wait of the concurrent sessions and how
far mmd's resident memory rose above what it was before the message (peak VmHWM minus
VmRSS before), against the targets of issue 13: no wait over 0.25 s, no growth over
64 MB. It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sessions import memory_mb, verdict, wait_for_socket  # this folder: run as a script

from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, encode
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, MAX_BODY_CHUNK, Family, Step

REPO = Path(__file__).resolve().parent.parent
TARGET_WAIT = 0.25  # seconds, longest negotiation wait of another session
TARGET_GROWTH_MB = 64.0
PROBE_PAUSE = 0.02  # between two probe sessions

OFFER = encode(m.Negotiate(6, ALL_ACTIONS, ALL_STEPS))


@dataclass
class Result:
    size_mb: int
    seconds: float
    longest_wait: float
    probes: int
    growth_mb: float
    verdict: str


def read_reply(conn: socket.socket, decoder: Decoder) -> m.Message:
    while (reply := decoder.next_message()) is None:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("mmd closed the connection")
        decoder.receive_data(data)
    return reply


def send_message(path: str, size_mb: int) -> str:
    """One whole SMTP transaction carrying ``size_mb`` MB of body; returns the verdict
    (with the MB of a new body the child sent, if any)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(600)
        conn.connect(path)
        decoder = Decoder(Direction.REPLIES)
        conn.sendall(OFFER)
        answer = read_reply(conn, decoder)
        assert isinstance(answer, m.Negotiate), answer
        steps = answer.steps
        envelope: list[tuple[m.CommandMessage, Step]] = [
            (m.Connect("client.example.net", Family.INET, 40000, "192.0.2.9"),
             Step.NO_REPLY_CONNECT),
            (m.Helo("client.example.net"), Step.NO_REPLY_HELO),
            (m.Mail(("<sender@example.net>",)), Step.NO_REPLY_MAIL),
            (m.Rcpt(("<receiver@example.org>",)), Step.NO_REPLY_RCPT),
            (m.Data(), Step.NO_REPLY_DATA),
            (m.Header("Subject", f"{size_mb} MB"), Step.NO_REPLY_HEADER),
            (m.EndOfHeaders(), Step.NO_REPLY_END_OF_HEADERS),
        ]
        for command, no_reply in envelope:
            conn.sendall(encode(command))
            if not steps & no_reply:
                read_reply(conn, decoder)
        line = b"x" * 76 + b"\r\n"
        chunk = encode(m.Body((line * (MAX_BODY_CHUNK // len(line) + 1))[:MAX_BODY_CHUNK]))
        body_reply = not steps & Step.NO_REPLY_BODY
        for _ in range(size_mb * 1024 * 1024 // MAX_BODY_CHUNK):
            conn.sendall(chunk)
            if body_reply:
                read_reply(conn, decoder)
        conn.sendall(encode(m.EndOfMessage()))
        new_body = 0
        while True:
            reply = read_reply(conn, decoder)
            if isinstance(reply, m.ReplaceBody):
                new_body += len(reply.chunk)
            elif not isinstance(reply, m.Progress | m.Modification):
                conn.sendall(encode(m.Quit()))
                replaced = f"+{new_body / 2**20:.0f}MB" if new_body else ""
                return type(reply).__name__ + replaced


class Prober(threading.Thread):
    """New sessions back to back: the longest wait for mmd's OPTNEG answer, and peak RSS."""

    def __init__(self, path: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.pid = pid
        self.stop = threading.Event()
        self.longest = 0.0
        self.probes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(600)
                conn.connect(self.path)
                conn.sendall(OFFER)
                read_reply(conn, Decoder(Direction.REPLIES))
                self.longest = max(self.longest, time.monotonic() - started)
                self.probes += 1
                conn.sendall(encode(m.Quit()))
            time.sleep(PROBE_PAUSE)


def start_mmd(folder: Path, child: str, log_path: Path) -> subprocess.Popen[bytes]:
    config = folder / "config"
    config.mkdir(exist_ok=True)
    mmd_path = folder / "mmd.sock"
    mmd_path.unlink(missing_ok=True)
    (config / "milter-manager.toml").write_text(
        "[manager]\n"
        f'connection_spec = "unix:{mmd_path}"\n\n'
        "[[milter]]\n"
        'name = "noreply"\n'
        f'connection_spec = "unix:{child}"\n'
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mmd.cli.manager", "-c", str(config), "--no-detection",
             "--no-dbus"],
            stdin=subprocess.DEVNULL, stderr=log, cwd=str(REPO),
        )
    wait_for_socket(str(mmd_path), [process])
    return process


def measure(folder: Path, child: str, size_mb: int) -> Result:
    mmd = start_mmd(folder, child, folder / f"mmd-{size_mb}.log")
    path = str(folder / "mmd.sock")
    try:
        send_message(path, 1)  # warm-up: every module loaded, one child connection made
        before = memory_mb(mmd.pid, "VmRSS")
        prober = Prober(path, mmd.pid)
        prober.start()
        started = time.monotonic()
        answer = send_message(path, size_mb)
        seconds = time.monotonic() - started
        prober.stop.set()
        prober.join(600)
        growth = memory_mb(mmd.pid, "VmHWM") - before
        return Result(size_mb, seconds, prober.longest, prober.probes, growth, answer)
    finally:
        mmd.terminate()
        try:
            mmd.wait(30)
        except subprocess.TimeoutExpired:
            mmd.kill()
            mmd.wait()


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50,100",
                        help="comma-separated message sizes in MB (default 10,50,100)")
    parser.add_argument("--replace", action="store_true",
                        help="the child replaces the body by one of the same size")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size]
    folder = Path(tempfile.mkdtemp(prefix="mmd-bench-big-", dir="/var/tmp"))
    binary = folder / "noreply_milter"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(REPO / "bench" / "noreply_milter.c"),
                    "-lmilter", "-pthread"], check=True)
    child_path = str(folder / "child.sock")
    extra = ["--replace"] if args.replace else []
    child = subprocess.Popen([str(binary), f"unix:{child_path}", *extra],
                             stdin=subprocess.DEVNULL)
    results: list[Result] = []
    try:
        wait_for_socket(child_path, [child])
        for size in sizes:
            results.append(measure(folder, child_path, size))
            print(f"  {size} MB done", flush=True)
    finally:
        child.terminate()
        child.wait(30)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    kept = f"; logs in {folder}" if args.keep else ""
    replacing = ", which replaces the body," if args.replace else ""
    print(f"\none message through a no-reply libmilter child{replacing} while other sessions"
          f" negotiate{kept}")
    print(f"{'size':>7} {'seconds':>8} {'verdict':>14} {'probes':>7} {'longest wait s':>15}"
          f" {'RSS growth MB':>14}")
    for r in results:
        print(f"{r.size_mb:>4} MB {r.seconds:>8.2f} {r.verdict:>14} {r.probes:>7}"
              f" {r.longest_wait:>15.3f} {r.growth_mb:>14.1f}")
    worst_wait = max(r.longest_wait for r in results)
    worst_growth = max(r.growth_mb for r in results)
    print(f"\nlongest wait of a concurrent session: {worst_wait:.3f} s  target <= {TARGET_WAIT} s:"
          f" {verdict(worst_wait <= TARGET_WAIT)}")
    print(f"largest RSS growth: {worst_growth:.1f} MB  target <= {TARGET_GROWTH_MB:g} MB:"
          f" {verdict(worst_growth <= TARGET_GROWTH_MB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
