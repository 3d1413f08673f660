"""Whole SMTP sessions per second: Postfix-style milter chaining versus mmd, same three children.

Run: ``make bench`` or ``PYTHONPATH=. python bench/sessions.py [--seconds 5] [--profile]``
(as root, so that the open-files limit can be raised for the 2,000 idle sessions).

What it does, all on loopback unix sockets in a fresh folder under /var/tmp:

* builds ``bench/continue_milter.c`` (libmilter, every callback answers continue, no
  protocol-6 short cuts: every stage is sent and replied to) and starts three of them;
* starts mmd (``python -m mmd.cli.manager --no-detection --no-dbus``) with those three
  children, INFO logging on (the real setting), to the journal as under systemd (a private
  journald in a mount namespace; needs root) or with ``--log-to stderr`` to a file;
* drives full sessions as Postfix does (OPTNEG v6 with all actions and Postfix's step offer,
  macros + CONNECT, HELO, MAIL, RCPT, DATA, 6 headers, EOH, one 2 KB body chunk, EOM, QUIT),
  waiting for every reply:

  - "direct": three connections per session, one per child, every command sent to child 1,
    then child 2, then child 3 (Postfix's ``smtpd_milters = a, b, c``);
  - "mmd": one connection per session to mmd, which fans out to the same three children;

  with 1, 10 and 50 session loops running back to back for ``--seconds`` per point, the
  two targets taking turns in ``--rounds`` slices so that other jobs on the machine weigh
  on both alike;
* reads mmd's peak resident memory during the concurrency-50 point (VmHWM, reset just
  before it), then holds 2,000 idle sessions (negotiated, connected, HELO answered) open on
  mmd and divides the growth of its resident memory by their number.

It prints each target of issue 18 as a figure with PASS/MISS; it is not a test.
The driver shares the machine's cores with mmd and the children, so it is kept lean:
asyncio protocols, packets encoded once, one callback per reply. Besides sessions/s and
latency it prints who used the CPU (driver, mmd, children, the rest of the machine) and
mmd's CPU time per session, the steadiest number when other jobs share the machine.

``--profile`` profiles mmd during one concurrency-10 run instead and prints the 25
functions with the most own time: with py-spy (sampling, wall clock, mmd unchanged) when
it is installed, else (or with ``--profile cprofile``) under cProfile with the CPU clock.
``--mmd-nice N`` runs mmd at another nice value, to see how much is CPU scheduling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run without installing mmd

from mmd.protocol import messages as m
from mmd.protocol.codec import Decoder, Direction, encode
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Family, Step

REPO = Path(__file__).resolve().parent.parent
CHILDREN = 3
IDLE_SESSIONS = 2000
FILES_NEEDED = 4 * IDLE_SESSIONS + 1000  # mmd: one MTA socket + three child sockets each

# Targets of issue 18 (2-core machines), printed with PASS/MISS; not asserted by tests.
TARGET_MS_PER_SESSION = 0.55  # mmd CPU time per session over the mmd runs, INFO logging on
TARGET_RATIO = 1.0  # mmd / direct sessions per second at concurrency 1, 10 and 50
TARGET_PEAK_MB = 40.0  # mmd peak resident memory (VmHWM) during the concurrency-50 point
TARGET_IDLE_KB = 8.0  # mmd resident memory per idle MTA connection (2,000 held open)
TARGET_ADDED_P50_MS = 1.0  # mmd p50 - direct p50 at concurrency 1 (issue 2; kept for reference)
PEAK_CONCURRENCY = 50


# ---------------------------------------------------------------- what Postfix sends


@dataclass(frozen=True, slots=True)
class Event:
    """One command as Postfix sends it: its macros and the command in one write."""

    packet: bytes
    macros: bytes  # sent even when the milter asked not to get the event (Postfix does)
    no_event: Step
    no_reply: Step


def _macro(code: bytes, *pairs: tuple[str, str]) -> bytes:
    return encode(m.Macro(code, pairs)) if pairs else b""


def _events() -> tuple[bytes, list[Event], list[Event]]:
    """The OPTNEG offer, then the events up to HELO, then the rest up to end-of-message."""
    offer = encode(m.Negotiate(6, ALL_ACTIONS, ALL_STEPS))  # Postfix's v6 mask is every step
    queue_id = ("i", "4Xyz1234AB")
    opening = [
        Event(
            encode(m.Connect("client.example.net", Family.INET, 52344, "198.51.100.7")),
            _macro(b"C", ("j", "mx.example.org"), ("{daemon_name}", "smtpd"),
                   ("{daemon_addr}", "192.0.2.1"), ("v", "Postfix 3.7.11"),
                   ("_", "client.example.net [198.51.100.7]")),
            Step.NO_CONNECT, Step.NO_REPLY_CONNECT,
        ),
        Event(
            encode(m.Helo("client.example.net")),
            _macro(b"H", ("{tls_version}", "TLSv1.3"), ("{cipher}", "TLS_AES_256_GCM_SHA384"),
                   ("{cipher_bits}", "256")),
            Step.NO_HELO, Step.NO_REPLY_HELO,
        ),
    ]
    headers = [
        ("Received", "from client.example.net (client.example.net [198.51.100.7])\r\n\t"
                     "by mx.example.org (Postfix) with ESMTPS id 4Xyz1234AB"),
        ("From", "Alice Example <alice@example.net>"),
        ("To", "Bob Example <bob@example.org>"),
        ("Subject", "A typical message of about two kilobytes"),
        ("Date", "Thu, 26 Nov 2026 07:00:00 +0000"),
        ("Message-ID", "<20261126070000.12345@client.example.net>"),
    ]
    line = b"this is a line of a typical body text, about seventy characters.\r\n"
    body = b"Hello Bob,\r\n\r\n" + line * 31
    message = [
        Event(
            encode(m.Mail(("<alice@example.net>", "SIZE=2400", "BODY=8BITMIME"))),
            _macro(b"M", queue_id, ("{auth_type}", ""), ("{mail_mailer}", "smtp"),
                   ("{mail_host}", "example.net"), ("{mail_addr}", "alice@example.net")),
            Step.NO_MAIL, Step.NO_REPLY_MAIL,
        ),
        Event(
            encode(m.Rcpt(("<bob@example.org>",))),
            _macro(b"R", ("{rcpt_mailer}", "local"), ("{rcpt_host}", ""),
                   ("{rcpt_addr}", "bob@example.org")),
            Step.NO_RCPT, Step.NO_REPLY_RCPT,
        ),
        Event(encode(m.Data()), _macro(b"T", queue_id), Step.NO_DATA, Step.NO_REPLY_DATA),
        *(
            Event(encode(m.Header(name, value)), b"", Step.NO_HEADERS, Step.NO_REPLY_HEADER)
            for name, value in headers
        ),
        Event(encode(m.EndOfHeaders()), b"", Step.NO_END_OF_HEADERS,
              Step.NO_REPLY_END_OF_HEADERS),
        Event(encode(m.Body(body)), b"", Step.NO_BODY, Step.NO_REPLY_BODY),
        Event(encode(m.EndOfMessage()), _macro(b"E", queue_id), Step(0), Step(0)),
    ]
    return offer, opening, message


OFFER, OPENING, MESSAGE = _events()
QUIT = encode(m.Quit())

# One step of a session after OPTNEG: (link, bytes, wait for a reply).
Script = tuple[tuple[int, bytes, bool], ...]
_scripts: dict[tuple[tuple[Step, ...], bool], Script] = {}


def script_for(steps: tuple[Step, ...], idle: bool) -> Script:
    """Every event to every link in Postfix's order, honouring each link's step flags."""
    key = (steps, idle)
    cached = _scripts.get(key)
    if cached is not None:
        return cached
    items: list[tuple[int, bytes, bool]] = []
    pending = [b""] * len(steps)  # bytes without a reply, sent with the next packet
    for event in OPENING if idle else OPENING + MESSAGE:
        for link, flags in enumerate(steps):
            if flags & event.no_event:
                pending[link] += event.macros
            elif flags & event.no_reply:
                pending[link] += event.macros + event.packet
            else:
                items.append((link, pending[link] + event.macros + event.packet, True))
                pending[link] = b""
    if not idle:
        for link in range(len(steps)):
            items.append((link, pending[link] + QUIT, False))
    script = _scripts[key] = tuple(items)
    return script


# ---------------------------------------------------------------- the MTA side


class SessionFailed(Exception):
    pass


class Link(asyncio.Protocol):
    """One MTA-side connection; replies go straight to the session's state machine."""

    def __init__(self, session: Session, index: int) -> None:
        self.session = session
        self.index = index
        self.decoder = Decoder(Direction.REPLIES)
        self.transport: asyncio.Transport | None = None

    def itself(self) -> Link:
        """The protocol factory for this link's one connection."""
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        decoder = self.decoder
        decoder.receive_data(data)
        while True:
            reply = decoder.next_message()
            if reply is None:
                return
            self.session.reply(self.index, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.session.lost(self.index)


class Session:
    """One SMTP session over one (mmd) or several (direct) milter connections."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths
        self.links: list[Link] = []
        self.steps: list[Step] = []
        self.script: Script = ()
        self.pos = 0
        self.waiting_on = -1
        self.done: asyncio.Future[None] | None = None
        self.negotiated: asyncio.Future[m.Negotiate] | None = None
        self.quitting = False

    async def open(self, idle: bool = False) -> None:
        """Connect and negotiate with each link in turn, then run the script."""
        loop = asyncio.get_running_loop()
        for index, path in enumerate(self.paths):
            link = Link(self, index)
            await loop.create_unix_connection(link.itself, path)
            self.links.append(link)
            self.negotiated = loop.create_future()
            self.waiting_on = index
            assert link.transport is not None
            link.transport.write(OFFER)
            answer = await self.negotiated
            self.steps.append(answer.steps)
        self.negotiated = None
        self.script = script_for(tuple(self.steps), idle)
        self.done = loop.create_future()
        self._advance()
        await self.done

    def quit(self) -> None:
        """QUIT to every link and close (the idle sessions' way out)."""
        self.quitting = True
        for link in self.links:
            if link.transport is not None:
                link.transport.write(QUIT)
                link.transport.close()

    def close(self) -> None:
        self.quitting = True
        for link in self.links:
            if link.transport is not None:
                link.transport.close()

    def _advance(self) -> None:
        script = self.script
        links = self.links
        pos = self.pos
        while pos < len(script):
            index, data, wait = script[pos]
            pos += 1
            transport = links[index].transport
            if transport is None:
                self._fail(f"link {index} closed")
                return
            transport.write(data)
            if wait:
                self.pos = pos
                self.waiting_on = index
                return
        self.pos = pos
        self.waiting_on = -1
        assert self.done is not None
        if not self.done.done():
            self.done.set_result(None)

    def reply(self, index: int, reply: m.Message) -> None:
        if index != self.waiting_on:
            self._fail(f"unexpected {type(reply).__name__} from link {index}")
            return
        negotiated = self.negotiated
        if negotiated is not None:
            if type(reply) is not m.Negotiate:
                self._fail(f"OPTNEG answered with {type(reply).__name__}")
            elif not negotiated.done():
                negotiated.set_result(reply)
            return
        if type(reply) is not m.Continue and type(reply) is not m.Accept:
            self._fail(f"{type(reply).__name__} from link {index}")
            return
        self._advance()

    def lost(self, index: int) -> None:
        if not self.quitting and self.waiting_on >= 0:
            self._fail(f"link {index} closed")

    def _fail(self, reason: str) -> None:
        self.close()
        error = SessionFailed(reason)
        for future in (self.negotiated, self.done):
            if future is not None and not future.done():
                future.set_exception(error)


# ---------------------------------------------------------------- load


@dataclass
class Point:
    target: str
    concurrency: int
    sessions: int
    seconds: float
    latencies: list[float]
    errors: dict[str, int] = field(default_factory=dict)
    driver_cpu: float = 0.0  # share of one core
    mmd_cpu: float = 0.0
    children_cpu: float = 0.0
    other_cpu: float = 0.0  # everything else on the machine (other jobs, kernel threads)

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Milliseconds, nearest rank."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def run_load(
    target: str, paths: Sequence[str], concurrency: int, seconds: float, cpu: CpuMeter
) -> Point:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    clock = time.perf_counter
    deadline = clock() + seconds

    async def loop() -> None:
        while clock() < deadline:
            started = clock()
            session = Session(paths)
            try:
                await session.open()
            except (SessionFailed, OSError) as error:
                reason = str(error) if isinstance(error, SessionFailed) else repr(error)
                errors[reason] = errors.get(reason, 0) + 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(clock() - started)
            session.close()

    cpu.start()
    started = clock()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = clock() - started
    await asyncio.sleep(0.05)  # let the last closes settle before the next point
    point = Point(target, concurrency, len(latencies), elapsed, latencies, errors)
    point.driver_cpu, point.mmd_cpu, point.children_cpu, point.other_cpu = cpu.stop(elapsed)
    return point


def merge(parts: Sequence[Point]) -> Point:
    """One point from slices of the same target and concurrency (CPU shares time-weighted)."""
    seconds = sum(p.seconds for p in parts)
    errors: dict[str, int] = {}
    for part in parts:
        for reason, count in part.errors.items():
            errors[reason] = errors.get(reason, 0) + count
    point = Point(parts[0].target, parts[0].concurrency, sum(p.sessions for p in parts),
                  seconds, [x for p in parts for x in p.latencies], errors)
    if seconds:
        point.driver_cpu = sum(p.driver_cpu * p.seconds for p in parts) / seconds
        point.mmd_cpu = sum(p.mmd_cpu * p.seconds for p in parts) / seconds
        point.children_cpu = sum(p.children_cpu * p.seconds for p in parts) / seconds
        point.other_cpu = sum(p.other_cpu * p.seconds for p in parts) / seconds
    return point


async def hold_idle(path: str, count: int) -> tuple[list[Session], int]:
    """Open ``count`` sessions up to HELO and keep them; returns them and the failures."""
    sessions: list[Session] = []
    failures = 0
    gate = asyncio.Semaphore(100)

    async def one() -> None:
        nonlocal failures
        async with gate:
            session = Session([path])
            try:
                await session.open(idle=True)
            except (SessionFailed, OSError):
                failures += 1
                session.close()
                return
            sessions.append(session)

    await asyncio.gather(*(one() for _ in range(count)))
    return sessions, failures


# ---------------------------------------------------------------- processes


def _ticks(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, threads included."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, key: str) -> float:
    """VmRSS / VmHWM of a process in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for process {pid}")


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Shares of one core used by the driver, mmd, the children and the rest of the machine.

    "other" matters: these machines may run other jobs at the same time, which skews a point.
    """

    def __init__(self, mmd_pid: int, children: Sequence[int]) -> None:
        self.mmd_pid = mmd_pid
        self.children = children
        self._start = (0.0, 0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float, float]:
        own = os.times()
        return (
            own.user + own.system,
            _ticks(self.mmd_pid),
            sum(_ticks(pid) for pid in self.children),
            _machine_busy(),
        )

    def start(self) -> None:
        self._start = self._now()

    def stop(self, elapsed: float) -> tuple[float, float, float, float]:
        now = self._now()
        driver, mmd, children, busy = (
            (b - a) / elapsed for a, b in zip(self._start, now, strict=True)
        )
        return driver, mmd, children, max(0.0, busy - driver - mmd - children)


# ``python -m cProfile -m mmd.cli.manager`` with the process's CPU clock instead of the wall
# clock: on a shared machine the wall clock also counts the time other jobs ran, which piles
# up in the system calls that wake a peer (send). SIGTERM stops mmd cleanly, and the
# profile is written after its event loop ends.
_PROFILED_MMD = """
import cProfile, runpy, sys, time
path = sys.argv[1]
sys.argv = ["milter-manager", *sys.argv[2:]]
profiler = cProfile.Profile(time.process_time)
profiler.enable()
try:
    runpy.run_module("mmd.cli.manager", run_name="__main__")
except SystemExit:
    pass
finally:
    profiler.disable()
    profiler.dump_stats(path)
"""


# mmd as systemd runs it, logging to the journal, but to a private journald: a mount namespace
# with a tmpfs over /run (the host's journal and /run are never touched), Storage=volatile,
# no rate limit. The script starts journald, writes its PID to $JOURNALD_PID and execs mmd,
# so mmd keeps the PID the benchmark started. As tests/unit/adapters/test_journal.py does.
JOURNALD = "/lib/systemd/systemd-journald"
_JOURNAL_SANDBOX = r"""
set -eu
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journald.conf.d /run/systemd/journal /run/log/journal
mount --bind "$JOURNAL_DIR" /run/log/journal
printf '%s\n' '[Journal]' Storage=volatile ReadKMsg=no ForwardToSyslog=no ForwardToWall=no \
  ForwardToConsole=no Audit=no RateLimitBurst=0 > /run/systemd/journald.conf.d/bench.conf
"$JOURNALD" </dev/null >/dev/null 2>&1 &
echo $! > "$JOURNALD_PID"
i=0
while [ ! -S /run/systemd/journal/socket ]; do
  i=$((i + 1)); [ "$i" -lt 250 ] || { echo "journald did not start" >&2; exit 3; }
  sleep 0.02
done
exec "$@"
"""


def journal_possible() -> bool:
    """Root (mount namespaces), unshare and journald: the benchmark can log as shipped."""
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and os.access(JOURNALD, os.X_OK)


class Processes:
    """Everything this benchmark starts, stopped by PID in ``stop_all``."""

    def __init__(self, folder: Path, log_path: str) -> None:
        self.folder = folder
        self.log_path = log_path
        self.children: list[subprocess.Popen[bytes]] = []
        self.mmd: subprocess.Popen[bytes] | None = None
        self.child_paths = [str(folder / f"child{n}.sock") for n in range(1, CHILDREN + 1)]
        self.mmd_path = str(folder / "mmd.sock")
        self.mmd_nice = 0
        self.manager_settings: list[str] = []  # extra [manager] lines, KEY = TOML value
        self.journal = False  # mmd logs to a private journald rather than to log_path
        self.journald_pid = folder / "journald.pid"
        self.journal_dir = folder / "journal"  # journald's files, readable from outside

    def log_description(self) -> str:
        if self.journal:
            return "the journal (a private journald, as systemd runs it)"
        return self.log_path

    def build_child(self) -> str:
        binary = str(self.folder / "continue_milter")
        source = str(REPO / "bench" / "continue_milter.c")
        subprocess.run(
            ["gcc", "-O2", "-o", binary, source, "-lmilter", "-pthread"], check=True
        )
        return binary

    def start_children(self) -> None:
        binary = self.build_child()
        for path in self.child_paths:
            child = subprocess.Popen([binary, f"unix:{path}"], stdin=subprocess.DEVNULL)
            self.children.append(child)
        for path in self.child_paths:
            wait_for_socket(path, self.children)

    def start_mmd(
        self, profile_to: str = "", wrapper: tuple[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """mmd as configured; ``wrapper`` = (a script run as ``python -c`` that runs
        mmd.cli.manager itself, the file it writes), ``profile_to`` the cProfile one."""
        config = self.folder / "config"
        config.mkdir(exist_ok=True)
        lines = ["[manager]", f'connection_spec = "unix:{self.mmd_path}"',
                 *self.manager_settings, ""]
        for n, path in enumerate(self.child_paths, 1):
            lines += ["[[milter]]", f'name = "child{n}"', f'connection_spec = "unix:{path}"', ""]
        (config / "milter-manager.toml").write_text("\n".join(lines))
        arguments = ["-c", str(config), "--no-detection", "--no-dbus"]
        if profile_to:
            wrapper = (_PROFILED_MMD, profile_to)
        if wrapper is not None:
            command = [sys.executable, "-c", wrapper[0], wrapper[1], *arguments]
        else:
            command = [sys.executable, "-m", "mmd.cli.manager", *arguments]
        environment = dict(os.environ, PYTHONPATH=str(REPO))
        for name in ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS",
                     "LISTEN_PID"):
            environment.pop(name, None)  # log to stderr, whoever runs the benchmark
        if self.journal:
            # INVOCATION_ID + journald's socket: mmd picks the journal as under systemd
            self.journal_dir.mkdir(exist_ok=True)
            environment.update(INVOCATION_ID="mmd-bench", JOURNALD=JOURNALD,
                               JOURNALD_PID=str(self.journald_pid),
                               JOURNAL_DIR=str(self.journal_dir))
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       _JOURNAL_SANDBOX, "sandbox", *command]
        with open(self.log_path, "ab") as log:
            self.mmd = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stderr=log, env=environment
            )
        wait_for_socket(self.mmd_path, [self.mmd, *self.children])
        if self.mmd_nice:
            os.setpriority(os.PRIO_PROCESS, self.mmd.pid, self.mmd_nice)
        return self.mmd

    def stop_mmd(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (a clean stop, so that cProfile writes its file); SIGKILL if it hangs."""
        process, self.mmd = self.mmd, None
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def stop_all(self) -> None:
        self.stop_mmd(10.0)
        self.stop_journald()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(10.0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children = []


    def stop_journald(self) -> None:
        """The private journald, by the PID its sandbox wrote (it outlives mmd otherwise)."""
        try:
            pid = int(self.journald_pid.read_text())
        except (OSError, ValueError):
            return
        self.journald_pid.unlink()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it is gone, or a zombie: its files closed
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except FileNotFoundError:
                return
            time.sleep(0.05)

    def journal_entries(self) -> int:
        """mmd's entries in the private journal (after stop_all)."""
        result = subprocess.run(
            ["journalctl", "-D", str(self.journal_dir), "-o", "cat", "--no-pager", "-q",
             "SYSLOG_IDENTIFIER=milter-manager"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
        )
        return result.stdout.count(b"\n")


def wait_for_socket(path: str, processes: Sequence[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise RuntimeError(f"nobody listens on {path} after 30 s")


def raise_file_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE for us and everything we start (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        needed = hard
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


# ---------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(points: Sequence[Point]) -> None:
    print(f"{'target':<8}{'conc':>5}{'sessions/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}{'driver cpu':>12}{'mmd cpu':>9}{'ms/session':>12}{'children cpu':>14}"
          f"{'other cpu':>11}")
    for p in points:
        if p.target == "mmd" and p.rate:
            mmd_cpu = f"{p.mmd_cpu:>8.0%}{p.mmd_cpu / p.rate * 1000:>12.2f}"
        else:
            mmd_cpu = f"{'-':>8}{'-':>12}"
        print(f"{p.target:<8}{p.concurrency:>5}{p.rate:>12.0f}{p.percentile(0.5):>9.2f}"
              f"{p.percentile(0.99):>9.2f}{sum(p.errors.values()):>8}{p.driver_cpu:>12.0%}"
              f" {mmd_cpu}{p.children_cpu:>14.0%}{p.other_cpu:>11.0%}")
    for p in points:
        for reason, count in p.errors.items():
            print(f"  {p.target} c{p.concurrency}: {count} x {reason}")


@dataclass
class Memory:
    """mmd's resident memory readings, in MB."""

    peak_mb: float = 0.0  # VmHWM during the concurrency-50 point (or the whole run, see below)
    peak_at: str = ""  # what the peak covers
    before_idle_mb: float = 0.0  # VmRSS before the idle sessions were opened
    idle_mb: float | None = None  # VmRSS with them open
    idle_open: int = 0

    @property
    def idle_kb_each(self) -> float | None:
        if self.idle_mb is None or not self.idle_open:
            return None
        return (self.idle_mb - self.before_idle_mb) * 1024 / self.idle_open


def ms_per_session(points: Sequence[Point]) -> float | None:
    """mmd's CPU time over all its runs divided by the sessions they completed."""
    mmd = [p for p in points if p.target == "mmd"]
    sessions = sum(p.sessions for p in mmd)
    if not sessions:
        return None
    return sum(p.mmd_cpu * p.seconds for p in mmd) / sessions * 1000


def print_targets(points: Sequence[Point], memory: Memory) -> None:
    by_key = {(p.target, p.concurrency): p for p in points}
    print()
    print("targets of issue 18:")
    cpu = ms_per_session(points)
    if cpu is not None:
        print(f"  mmd CPU per session over the mmd runs: {cpu:.3f} ms"
              f"  target <= {TARGET_MS_PER_SESSION:g} ms: "
              f"{verdict(cpu <= TARGET_MS_PER_SESSION)}")
    for concurrency in sorted({p.concurrency for p in points}):
        direct, mmd = by_key.get(("direct", concurrency)), by_key.get(("mmd", concurrency))
        if direct is None or mmd is None or not direct.rate:
            continue
        ratio = mmd.rate / direct.rate
        print(f"  mmd / direct sessions/s at concurrency {concurrency:>2}: {ratio:.2f}"
              f"  target >= {TARGET_RATIO:g}: {verdict(ratio >= TARGET_RATIO)}")
    if memory.peak_mb:
        mark = (f"  target <= {TARGET_PEAK_MB:g} MB: {verdict(memory.peak_mb <= TARGET_PEAK_MB)}"
                if memory.peak_at.startswith(f"concurrency {PEAK_CONCURRENCY}") else "")
        print(f"  mmd peak RSS (VmHWM) {memory.peak_at}: {memory.peak_mb:.1f} MB{mark}")
    each = memory.idle_kb_each
    if memory.idle_mb is not None and each is not None:
        complete = memory.idle_open == IDLE_SESSIONS
        print(f"  mmd RSS per idle MTA connection ({memory.idle_open} open: "
              f"{memory.before_idle_mb:.1f} MB before, {memory.idle_mb:.1f} MB with them): "
              f"{each:.1f} kB  target <= {TARGET_IDLE_KB:g} kB: "
              f"{verdict(each <= TARGET_IDLE_KB and complete)}"
              + ("" if complete else f" (needs {IDLE_SESSIONS} open)"))
    direct1, mmd1 = by_key.get(("direct", 1)), by_key.get(("mmd", 1))
    if direct1 is not None and mmd1 is not None:
        added = mmd1.percentile(0.5) - direct1.percentile(0.5)
        print()
        print(f"added latency at concurrency 1 (p50 mmd - p50 direct): {added:.2f} ms"
              f"  (issue 2's target <= {TARGET_ADDED_P50_MS:g} ms: "
              f"{verdict(added <= TARGET_ADDED_P50_MS)})")


def reset_peak(pid: int) -> bool:
    """Start a new VmHWM for ``pid`` (``5`` to /proc/PID/clear_refs, Linux 4.0+)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- main


async def measure(procs: Processes, args: argparse.Namespace) -> None:
    mmd = procs.mmd
    assert mmd is not None
    cpu = CpuMeter(mmd.pid, [c.pid for c in procs.children])
    targets: list[tuple[str, list[str]]] = [
        ("direct", procs.child_paths),
        ("mmd", [procs.mmd_path]),
    ]
    for name, paths in targets:  # warm up: imports, caches, children's thread stacks
        await run_load(name, paths, 10, min(1.0, args.seconds), cpu)
    points: list[Point] = []
    memory = Memory()
    for concurrency in args.concurrency:
        fresh_peak = concurrency == PEAK_CONCURRENCY and reset_peak(mmd.pid)
        # direct and mmd take turns in slices, so that other jobs on the machine weigh on
        # both alike rather than on whichever ran while they were busy
        slices: dict[str, list[Point]] = {name: [] for name, _ in targets}
        for _ in range(args.rounds):
            for name, paths in targets:
                part = await run_load(name, paths, concurrency, args.seconds / args.rounds, cpu)
                slices[name].append(part)
                print(f"  {name} c{concurrency}: {part.rate:.0f} sessions/s", file=sys.stderr)
        points += [merge(parts) for parts in slices.values()]
        if fresh_peak:
            memory.peak_mb = memory_mb(mmd.pid, "VmHWM")
            memory.peak_at = f"concurrency {PEAK_CONCURRENCY}"
    if not memory.peak_at:
        memory.peak_mb = memory_mb(mmd.pid, "VmHWM")
        memory.peak_at = "over the whole run (no concurrency-50 point, or no clear_refs)"
    if args.idle:
        memory.before_idle_mb = memory_mb(mmd.pid, "VmRSS")
        sessions, failures = await hold_idle(procs.mmd_path, args.idle)
        memory.idle_open = len(sessions)
        await asyncio.sleep(0.5)
        memory.idle_mb = memory_mb(mmd.pid, "VmRSS")
        if failures:
            print(f"  idle: {failures} of {args.idle} sessions could not be opened",
                  file=sys.stderr)
        for session in sessions:
            session.quit()
        await asyncio.sleep(1.0)
    print()
    print(f"sessions back to back for {args.seconds:g} s per point (in {args.rounds} slices taking"
          f" turns with the other target); 3 always-continue libmilter"
          f" children; mmd logging at INFO to {procs.log_description()}"
          + (f"; mmd at nice {procs.mmd_nice}" if procs.mmd_nice else ""))
    print(f"cpu columns: share of one core during the point ({os.cpu_count()} cores in all;"
          " 'other' = the rest of the machine);")
    print("ms/session: mmd's CPU time per session (steadier than sessions/s on a busy machine)")
    print()
    print_table(points)
    print_targets(points, memory)


async def profile(procs: Processes, args: argparse.Namespace, spy: str, output: str) -> Point:
    """One concurrency-10 mmd run; with ``spy``, py-spy samples mmd during most of it."""
    mmd = procs.mmd
    assert mmd is not None
    cpu = CpuMeter(mmd.pid, [c.pid for c in procs.children])
    load = asyncio.ensure_future(run_load("mmd", [procs.mmd_path], 10, args.seconds, cpu))
    if spy:
        await asyncio.sleep(0.5)
        duration = max(1, int(args.seconds - 1))
        sampler = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(mmd.pid), "--duration", str(duration), "--rate", "500",
            "--format", "raw", "--function", "--idle", "--nonblocking", "--output", output,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await sampler.wait()
        finally:
            if sampler.returncode is None:
                sampler.kill()
                await sampler.wait()
    return await load


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per point (default 5)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="direct and mmd take turns this many times per point, "
                             "seconds/rounds each (default 5)")
    parser.add_argument("--concurrency", type=_numbers, default=[1, 10, 50],
                        help="comma-separated session loops per point (default 1,10,50)")
    parser.add_argument("--idle", type=int, default=IDLE_SESSIONS,
                        help=f"idle sessions to hold on mmd (default {IDLE_SESSIONS}; 0: skip)")
    parser.add_argument("--log-to", choices=("journal", "stderr"),
                        default="journal" if journal_possible() else "stderr",
                        help="mmd's INFO log goes to a private journald, as systemd runs it "
                             "(the default as root, with systemd-journald installed), or to "
                             "its stderr (--log)")
    parser.add_argument("--log", default="",
                        help="where mmd's stderr (the INFO log with --log-to stderr) goes "
                             "(default: a file in the benchmark's folder; /dev/null is allowed)")
    parser.add_argument("--profile", nargs="?", const="auto", choices=("auto", "py-spy",
                        "cprofile"), help="profile mmd during one concurrency-10 run and print "
                        "the top 25 functions by own time: py-spy (sampling, if installed; "
                        "the default) or cProfile")
    parser.add_argument("--mmd-nice", type=int, default=0, metavar="N",
                        help="run mmd at this nice value (an experiment: how much of the gap "
                             "is CPU scheduling between mmd and the children; default 0)")
    parser.add_argument("--manager", action="append", default=[], metavar="KEY=VALUE",
                        help="a [manager] setting for mmd, VALUE in TOML (repeatable; e.g. "
                             "reuse_child_connections=false for the before of a pair)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's folder")
    return parser.parse_args(argv)


def manager_lines(settings: Sequence[str]) -> list[str]:
    """``KEY=VALUE`` arguments as [manager] lines (the value is TOML: true, 16, "text")."""
    lines = []
    for setting in settings:
        key, _, value = setting.partition("=")
        lines.append(f"{key.strip()} = {value.strip()}")
    return lines


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    limit = raise_file_limit(FILES_NEEDED)
    if args.idle and limit < FILES_NEEDED:
        print(f"open-files limit is {limit}; {args.idle} idle sessions may not fit",
              file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="mmd-bench-", dir="/var/tmp"))
    log_path = args.log or str(folder / "mmd.log")
    procs = Processes(folder, log_path)
    procs.mmd_nice = args.mmd_nice
    procs.manager_settings = manager_lines(args.manager)
    if args.log_to == "journal" and not journal_possible():
        print(f"--log-to journal needs root, unshare and {JOURNALD}", file=sys.stderr)
        return 2
    procs.journal = args.log_to == "journal"
    try:
        procs.start_children()
        if args.profile:
            return run_profile(procs, args, folder)
        procs.start_mmd()
        asyncio.run(measure(procs, args))
        if procs.journal:
            procs.stop_all()
            print(f"mmd wrote {procs.journal_entries()} journal entries")
        elif log_path != os.devnull:
            with open(log_path, "rb") as log:
                lines = sum(1 for _ in log)
            print(f"mmd wrote {lines} log lines")
        return 0
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run_profile(procs: Processes, args: argparse.Namespace, folder: Path) -> int:
    spy = "" if args.profile == "cprofile" else _find_py_spy()
    if args.profile == "py-spy" and not spy:
        print("py-spy not found (pip install py-spy)", file=sys.stderr)
        return 1
    if spy:
        output = str(folder / "mmd.spy")
        procs.start_mmd()
        point = asyncio.run(profile(procs, args, spy, output))
        print(f"mmd sampled by py-spy (500/s), concurrency 10, {args.seconds:g} s: "
              f"{point.rate:.0f} sessions/s, p50 {point.percentile(0.5):.2f} ms, "
              f"mmd cpu {point.mmd_cpu:.0%}, {sum(point.errors.values())} errors")
        print()
        print(_spy_report(output))
        return 0
    profile_path = str(folder / "mmd.prof")
    procs.start_mmd(profile_to=profile_path)
    point = asyncio.run(profile(procs, args, "", ""))
    code = procs.stop_mmd()
    if code != 0 or not os.path.exists(profile_path):
        print(f"mmd exited with {code} and left no profile at {profile_path}", file=sys.stderr)
        return 1
    print(f"mmd under cProfile (CPU clock), concurrency 10, {args.seconds:g} s: "
          f"{point.rate:.0f} sessions/s, {point.sessions} sessions (p50 "
          f"{point.percentile(0.5):.2f} ms; cProfile slows it down), "
          f"{sum(point.errors.values())} errors")
    print()
    out = io.StringIO()
    stats = pstats.Stats(profile_path, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(25)
    print(_trim_profile(out.getvalue()))
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(25)
    print()
    print(_trim_profile(out.getvalue()))
    return 0


def _find_py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or ""


def _spy_report(path: str) -> str:
    """Own and total samples per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    with open(path) as raw:
        for line in raw:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            if any("threading.py" in frame for frame in frames):
                continue  # the executor's idle threads: not where mail waits
            samples += count
            leaf = frames[-1] if frames else "(no Python frame)"
            own[leaf] = own.get(leaf, 0) + count
            for frame in set(frames) | {leaf}:
                total[frame] = total.get(frame, 0) + count
    if not samples:
        return "py-spy collected no samples"
    lines = [f"{samples} samples of mmd's main thread (idle time included: the epoll wait)",
             "", f"{'own %':>7}{'total %':>9}  function (file:line of its first line)"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:25]:
        lines.append(f"{count / samples:>7.1%}{total[frame] / samples:>9.1%}  {frame}")
    lines += ["", "by total (own + callees):"]
    for frame, count in sorted(total.items(), key=lambda item: -item[1])[:25]:
        lines.append(f"{own.get(frame, 0) / samples:>7.1%}{count / samples:>9.1%}  {frame}")
    return "\n".join(lines)


def _trim_profile(text: str) -> str:
    """pstats' report without its header noise (the file name and a blank line or two)."""
    lines = text.splitlines()
    return "\n".join(line for line in lines if "mmd.prof" not in line).strip("\n")


if __name__ == "__main__":
    sys.exit(main())
