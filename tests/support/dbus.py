"""Real dbus-daemon instances and a fake Control for the D-Bus adapter's tests and docs.

``python -m tests.support.dbus serve ADDRESS`` runs the adapter over the fake
Control on ADDRESS until stdin closes (the policy tests start it as the user
``milter-manager``; docs/dbus.md's outputs come from it too).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mmd.config.loader import load_configuration
from mmd.config.show import render_show_config
from mmd.control import InvalidConfiguration, MilterInfo, MilterStatistics, NoSuchMilter, Statistics
from tests.support.detected import detected_milter
from tests.support.processes import reap, stop_pid

REPO = Path(__file__).resolve().parents[2]
DBUS_DIR = REPO / "dbus"
POLICY_FILE = DBUS_DIR / "org.miltermanager.Manager1.conf"
INTROSPECTION_FILE = DBUS_DIR / "org.miltermanager.Manager1.xml"
ACTIVATION_FILE = DBUS_DIR / "org.miltermanager.Manager1.service"
DOCS_FILE = REPO / "docs" / "dbus.md"

CONFIG_DIR = "/etc/milter-manager"

# The configuration behind the sample milters: opendkim from the file, clamav-milter detected.
SAMPLE_CONFIG_TOML = """\
[[milter]]
name = "opendkim"
connection_spec = "inet:8891@127.0.0.1"
applicable_conditions = ["authentication"]
"""

SAMPLE_DETECTED = detected_milter("clamav-milter", "unix:/run/clamav/clamav-milter.ctl",
                                  "/etc/clamav/clamav-milter.conf")


def sample_show_config() -> str:
    """ShowConfig's text for the sample, from the daemon's own loader and renderer.

    So docs/dbus.md shows the format the daemon really prints; the file is read from a
    temporary folder and named as if it were in /etc/milter-manager.
    """
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "milter-manager.toml").write_text(SAMPLE_CONFIG_TOML)
        config = load_configuration(Path(folder), [SAMPLE_DETECTED])
        return render_show_config(config).replace(folder, CONFIG_DIR)


SHOW_CONFIG_TEXT = sample_show_config()


def sample_milters() -> list[MilterInfo]:
    return [
        MilterInfo(
            name="clamav-milter",
            connection_spec="unix:/run/clamav/clamav-milter.ctl",
            enabled=True,
            source="detected",
            applicable_conditions=(),
            reachable=True,
            last_error="",
            sessions=120,
            verdicts={"accept": 118, "reject": 2},
        ),
        MilterInfo(
            name="opendkim",
            connection_spec="inet:8891@127.0.0.1",
            enabled=True,
            source="configured",
            applicable_conditions=("authentication",),
            reachable=False,
            last_error="connect: connection refused",
            sessions=0,
            verdicts={},
        ),
    ]


def sample_statistics() -> Statistics:
    return Statistics(
        total_sessions=120,
        active_sessions=3,
        statuses={"accept": 115, "reject": 2, "temporary-failure": 3},
        milters={
            "clamav-milter": MilterStatistics(
                sessions=120,
                verdicts={"accept": 118, "reject": 2},
                average_latency=0.042,
                max_latency=0.318,
            ),
            "opendkim": MilterStatistics(
                sessions=0, verdicts={}, average_latency=0.0, max_latency=0.0
            ),
        },
    )


@dataclass
class FakeControl:
    """Enough of a daemon to drive every member of the interface."""

    version: str = "0.1.0"
    milters: dict[str, MilterInfo] = field(
        default_factory=lambda: {m.name: m for m in sample_milters()}
    )
    reject_reload_with: str | None = None  # next reload raises InvalidConfiguration
    reload_seconds: float = 0.0
    reloads_finished: int = 0
    set_calls: list[tuple[str, bool, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=lambda: ["/etc/milter-manager/milter-manager.toml"])
    current_state: str = "running"
    active: int = 3
    total: int = 120
    _state_callbacks: list[Callable[[str, bool, str], None]] = field(default_factory=list)
    _reload_callbacks: list[Callable[[bool, str], None]] = field(default_factory=list)

    def state(self) -> str:
        return self.current_state

    def active_sessions(self) -> int:
        return self.active

    def total_sessions(self) -> int:
        return self.total

    def configuration_files(self) -> list[str]:
        return list(self.files)

    async def reload(self) -> str:
        self.current_state = "reloading"
        try:
            await asyncio.sleep(self.reload_seconds)
            if self.reject_reload_with is not None:
                reason, self.reject_reload_with = self.reject_reload_with, None
                for reloaded in self._reload_callbacks:
                    reloaded(False, reason)
                raise InvalidConfiguration(reason)
            self.files = [*self.files[:1], "/etc/milter-manager/conf.d/local.toml"]
            # as the daemon words it (mmd/daemon/service.py): the milters new sessions use
            used = [m.name for m in self.milters.values() if m.enabled]
            message = f"reloaded: {len(used)} milters: " + ", ".join(used)
            self.reloads_finished += 1
            for reloaded in self._reload_callbacks:
                reloaded(True, message)
            return message
        finally:
            self.current_state = "running"

    def list_milters(self) -> list[MilterInfo]:
        return list(self.milters.values())

    def get_milter(self, name: str) -> MilterInfo:
        try:
            return self.milters[name]
        except KeyError:
            raise NoSuchMilter(name) from None

    async def set_milter_enabled(self, name: str, enabled: bool, caller: str) -> None:
        info = self.get_milter(name)
        self.set_calls.append((name, enabled, caller))
        self.milters[name] = MilterInfo(
            name=info.name,
            connection_spec=info.connection_spec,
            enabled=enabled,
            source=info.source,
            applicable_conditions=info.applicable_conditions,
            reachable=info.reachable,
            last_error=info.last_error,
            sessions=info.sessions,
            verdicts=info.verdicts,
        )
        word = "enabled" if enabled else "disabled"
        for changed in self._state_callbacks:
            changed(name, enabled, f"{word} at runtime by {caller}")  # as the daemon words it

    def statistics(self) -> Statistics:
        return sample_statistics()

    def show_config(self) -> str:
        return SHOW_CONFIG_TEXT

    def subscribe(
        self,
        milter_state_changed: Callable[[str, bool, str], None],
        reloaded: Callable[[bool, str], None],
    ) -> None:
        self._state_callbacks.append(milter_state_changed)
        self._reload_callbacks.append(reloaded)


# -- private buses -------------------------------------------------------------

POLICY_DOCTYPE = """\
<?xml version="1.0"?>
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"""


def user_policy(user: str, *rules: str) -> str:
    """A policy file (system.d) granting ``user`` the ``rules`` (``<allow own="..."/>``)."""
    lines = "".join(f"    {rule}\n" for rule in rules)
    return (f"{POLICY_DOCTYPE}<busconfig>\n  <policy user=\"{user}\">\n{lines}  </policy>\n"
            "</busconfig>\n")


SESSION_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

# The default-deny part of Debian's system.conf, then the project's policy.
SYSTEM_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{servicedir}</servicedir>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
  {extra}
</busconfig>
"""


@dataclass
class PrivateBus:
    """A dbus-daemon this process started; stop() ends exactly that pid."""

    address: str
    pid: int
    directory: Path

    def stop(self, keep: bool = False) -> None:
        stop_pid(self.pid, 5)
        if keep:
            (self.directory / "bus").unlink(missing_ok=True)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_bus(kind: str, directory: Path | None = None, extra: str = "") -> PrivateBus:
    """Start a private dbus-daemon: ``session`` (permissive) or ``system`` (default-deny + policy).

    The directory is world-searchable so callers running as other uids reach the socket.
    Given ``directory`` (kept by ``stop(keep=True)``), a second bus there has the same
    address: a restarted bus. ``extra`` goes into the system configuration (e.g. an
    ``<includedir>`` a test fills later).
    """
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        raise RuntimeError("dbus-daemon is not installed (Debian package: dbus-daemon)")
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="mmd-dbus-"))
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)
    socket = directory / "bus"
    template = SESSION_CONFIG if kind == "session" else SYSTEM_CONFIG
    config = directory / f"{kind}.conf"
    config.write_text(template.format(socket=socket, servicedir=DBUS_DIR, policy=POLICY_FILE,
                                      extra=extra))
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            [
                daemon,
                f"--config-file={config}",
                "--fork",
                f"--print-pid={write_end}",
                "--print-address=1",
            ],
            capture_output=True,
            pass_fds=(write_end,),
            timeout=10,
            check=False,
        )
        os.close(write_end)
        pid_text = os.read(read_end, 64).decode().strip()
    finally:
        os.close(read_end)
    if result.returncode != 0 or not pid_text:
        raise RuntimeError(f"dbus-daemon failed: {result.stderr.decode()}")
    return PrivateBus(result.stdout.decode().strip(), int(pid_text), directory)


# -- running the adapter in a thread of its own ----------------------------------

_T = TypeVar("_T")


class LoopThread:
    """An event loop in a background thread, so blocking busctl calls can run in the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 10) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        # Tasks still pending (a D-Bus handle's ticker) are cancelled and awaited, as
        # asyncio.run does: left behind, the garbage collector destroys them later, in the
        # middle of another test, with an ERROR that test's log capture sees.
        self.run(_cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def as_user(user: str | None) -> list[str]:
    """Command prefix that drops to USER with only that user's groups (None: stay root)."""
    if user is None:
        return []
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]


def busctl(
    address: str, *args: str, user: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [*as_user(user), "busctl", f"--address={address}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {result.stderr}")
    return result


def name_has_owner(address: str, name: str = "org.miltermanager.Manager1") -> bool:
    result = busctl(address, "--json=short", "call", "org.freedesktop.DBus",
                    "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s",
                    name)  # fmt: skip
    owned: bool = json.loads(result.stdout)["data"][0]
    return owned


def dbus_send(
    address: str,
    member: str,
    *args: str,
    user: str | None = None,
    destination: str = "org.miltermanager.Manager1",
    path: str = "/org/miltermanager/Manager1",
) -> subprocess.CompletedProcess[str]:
    """dbus-send prints the error *name*, which busctl does not."""
    command = [
        *as_user(user),
        "dbus-send",
        f"--bus={address}",
        "--print-reply",
        f"--dest={destination}",
        path,
        member,
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def start_fake_daemon(address: str, user: str | None = None) -> subprocess.Popen[str]:
    """The adapter over a FakeControl in a child process, running as USER."""
    process = subprocess.Popen(
        [*as_user(user), sys.executable, "-m", "tests.support.dbus", "serve", address],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        process.wait(5)
        raise RuntimeError(f"fake daemon did not start: {line!r}")
    return process


def stop_fake_daemon(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    reap(process, 5)


async def _serve(address: str) -> None:
    from mmd.adapters.dbus_service import export_control

    handle = await export_control(FakeControl(), address)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await handle.close()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        asyncio.run(_serve(argv[1]))
        return 0
    print("usage: python -m tests.support.dbus serve ADDRESS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# -- docs/dbus.md examples ------------------------------------------------------------------

CONSOLE_BLOCK = "```console\n"


def console_commands(markdown: str) -> list[tuple[str, str]]:
    """(command, documented output) for every ``$ `` line in the ```console blocks, in order."""
    examples: list[tuple[str, str]] = []
    for block in markdown.split(CONSOLE_BLOCK)[1:]:
        for line in block.split("```", 1)[0].splitlines(keepends=True):
            if line.startswith("$ "):
                examples.append((line[2:].rstrip("\n"), ""))
            elif examples:
                command, output = examples[-1]
                examples[-1] = (command, output + line)
    return examples


def run_example(command: str, address: str) -> str:
    """Run a documented busctl command against ADDRESS instead of the system bus."""
    if not command.startswith("busctl "):
        raise ValueError(f"examples must start with busctl: {command}")
    full = command.replace("busctl ", f"busctl --address={address} ", 1)
    result = subprocess.run(full, shell=True, capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr
