"""The shipped units, checked by systemd's own tools and by a real PID 1 in the container."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.container import SystemdContainer

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "units"
CHROOT_DROPIN = ROOT / "packaging" / "systemd" / "milter-manager.socket.d" / "postfix-chroot.conf"
SECURITY_LIMIT = 2.0


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze (package systemd) is required"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def unit_root(tmp_path: Path, service_text: str | None = None) -> Path:
    """A --root= tree: the host's system units, ours, and the executables they name."""
    root = tmp_path / "root"
    system = root / "usr" / "lib" / "systemd" / "system"
    shutil.copytree("/lib/systemd/system", system, symlinks=True)
    for unit in UNITS.glob("milter-manager.*"):
        shutil.copy(unit, system / unit.name)
    if service_text is not None:
        (system / "milter-manager.service").write_text(service_text)
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    daemon = root / "usr" / "sbin" / "milter-manager"
    daemon.write_text("#!/bin/sh\n")
    daemon.chmod(0o755)
    shutil.copy("/usr/bin/busctl", root / "usr" / "bin" / "busctl")
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return analyze("verify", "--man=no", f"--root={root}",
                   "milter-manager.service", "milter-manager.socket")


def test_verify_prints_nothing(tmp_path: Path) -> None:
    result = verify(unit_root(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_with_the_chroot_dropin_prints_nothing(tmp_path: Path) -> None:
    root = unit_root(tmp_path)
    dropins = root / "etc" / "systemd" / "system" / "milter-manager.socket.d"
    dropins.mkdir(parents=True)
    shutil.copy(CHROOT_DROPIN, dropins / CHROOT_DROPIN.name)
    result = verify(root)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_does_complain_about_what_systemd_252_lacks(tmp_path: Path) -> None:
    """The check above can fail: Type=notify-reload (systemd 253) only warns, exit code 0."""
    text = (UNITS / "milter-manager.service").read_text().replace("Type=notify\n",
                                                                   "Type=notify-reload\n")
    result = verify(unit_root(tmp_path, text))
    assert "notify-reload" in result.stdout + result.stderr


def exposure(unit: Path) -> float:
    result = analyze("security", "--offline=yes", "--man=no", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_security_score() -> None:
    score = exposure(UNITS / "milter-manager.service")
    print(f"\nsystemd-analyze security --offline=yes milter-manager.service: {score}")
    assert score <= SECURITY_LIMIT


def test_security_score_can_fail(tmp_path: Path) -> None:
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > SECURITY_LIMIT


# -- inside the container ------------------------------------------------------------------


def test_container_boots(systemd_container: SystemdContainer) -> None:
    assert systemd_container.boot_seconds is not None
    print(f"\ncontainer boot: {systemd_container.boot_seconds:.1f} s")
    assert systemd_container.run(["readlink", "/proc/1/exe"]).stdout.strip().endswith("systemd")
    assert systemd_container.system_state in ("running", "degraded")


def test_install_layout(installed_mmd: SystemdContainer) -> None:
    c = installed_mmd
    for path in ("/usr/sbin/milter-manager", "/usr/bin/milter-test-server"):
        assert c.run(["stat", "-c", "%F %a", path]).stdout.strip() == "regular file 755"
        first_line = c.read_file(path).splitlines()[0]
        assert first_line == "#!/usr/bin/python3 -I"  # the package's launcher
    # bytecode compiled at install time, for every module (nothing may be written below /usr)
    sources = c.run("find /usr/lib/milter-manager -name '*.py' -path '*/mmd/*' | wc -l").stdout
    compiled = c.run(
        "find /usr/lib/milter-manager -name '*.cpython-311.pyc' -path '*/mmd/*' | wc -l"
    ).stdout
    assert int(sources) > 0
    assert int(sources) == int(compiled)
    entry = c.run(["getent", "passwd", "milter-manager"]).stdout.strip().split(":")
    assert entry[6] == "/usr/sbin/nologin"
    assert int(entry[2]) < 1000
    for group in ("opendkim", "postfix"):
        assert group in c.run(["id", "-nG", "milter-manager"]).stdout.split()
    for unit in ("milter-manager.service", "milter-manager.socket"):
        shown = c.run(["systemctl", "show", "-p", "LoadState", "-p", "FragmentPath", unit]).stdout
        # Debian's merged /usr: systemd may name it through the /lib symlink
        fragment = re.search(r"^FragmentPath=(.*)$", shown, re.M)
        assert fragment is not None
        assert c.run(["realpath", fragment.group(1)]).stdout.strip() == (
            f"/usr/lib/systemd/system/{unit}"
        )
        assert "LoadState=loaded" in shown


def test_installed_python_runs_as_the_service_user(
    installed_mmd: SystemdContainer, container_python: str
) -> None:
    result = installed_mmd.run(
        [container_python, "-I", "-c",
         "import mmd.adapters.journal, mmd.adapters.notify, mmd.adapters.activation, pystemd,"
         " dbus_next; print('ok')"],
        user="milter-manager",
    )
    assert result.stdout.strip() == "ok"


def test_verify_inside_with_the_installed_daemon(installed_mmd: SystemdContainer) -> None:
    result = installed_mmd.run(
        ["systemd-analyze", "verify", "--man=no", "milter-manager.service",
         "milter-manager.socket"], check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_pid1_reads_the_service_as_written(installed_mmd: SystemdContainer) -> None:
    properties = ("Type", "NotifyAccess", "User", "Group", "BusName", "Restart", "ExecStart",
                  "ExecReload", "ProtectSystem", "PrivateTmp", "Environment")
    shown = installed_mmd.run(
        ["systemctl", "show", *(f"-p{name}" for name in properties), "milter-manager.service"]
    ).stdout
    values = dict(line.split("=", 1) for line in shown.splitlines())
    assert values["Type"] == "notify"
    assert values["NotifyAccess"] == "main"
    assert (values["User"], values["Group"]) == ("milter-manager", "milter-manager")
    assert values["BusName"] == "org.miltermanager.Manager1"
    assert values["Restart"] == "on-failure"
    # WatchdogUSec= only shows the configured 30 s once the service runs (test_lifecycle)
    assert "path=/usr/sbin/milter-manager" in values["ExecStart"]
    assert "path=/usr/sbin/milter-manager" in values["ExecReload"]
    assert "reload --quiet --timeout=120 --pid=${MAINPID}" in values["ExecReload"]
    assert values["ProtectSystem"] == "strict"
    assert values["PrivateTmp"] == "no"
    assert values["Environment"] == "TMPDIR=/var/cache/milter-manager"


def stat(c: SystemdContainer, path: str) -> str:
    return c.run(["stat", "-c", "%U %G %a", path]).stdout.strip()


CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except PermissionError:\n"
    "    print('denied')\n"
    "else:\n"
    "    print('connected')\n"
)


def connect_as(c: SystemdContainer, user: str, path: str) -> str:
    return c.run(["python3", "-c", CONNECT, path], user=user).stdout.strip()


def stop_all(c: SystemdContainer) -> None:
    c.run(["systemctl", "stop", "milter-manager.socket", "milter-manager.service"])
    c.run(["systemctl", "reset-failed", "milter-manager.socket", "milter-manager.service"],
          check=False)


def test_socket_owner_and_mode(installed_mmd: SystemdContainer) -> None:
    c = installed_mmd
    path = "/run/milter-manager/milter-manager.sock"
    c.run(["systemctl", "start", "milter-manager.socket"])
    try:
        assert stat(c, "/run/milter-manager") == "root root 755"
        assert stat(c, path) == "root postfix 660"
        shown = c.run(["systemctl", "show", "-p", "FileDescriptorName", "-p", "Listen",
                       "milter-manager.socket"]).stdout
        assert f"Listen={path} (Stream)" in shown
        assert "FileDescriptorName=milter" in shown
        assert connect_as(c, "nobody", path) == "denied"
        assert connect_as(c, "postfix", path) == "connected"
    finally:
        stop_all(c)
    assert c.run(["test", "-e", path], check=False).returncode == 1  # RemoveOnStop=yes


def test_chroot_dropin_moves_the_socket(installed_mmd: SystemdContainer) -> None:
    c = installed_mmd
    example = "/usr/share/doc/milter-manager/examples/milter-manager.socket.d/postfix-chroot.conf"
    dropin = "/etc/systemd/system/milter-manager.socket.d/postfix-chroot.conf"
    chrooted = "/var/spool/postfix/milter-manager/milter-manager.sock"
    c.run(["install", "-D", "-m", "0644", example, dropin])
    c.run(["systemctl", "daemon-reload"])
    try:
        c.run(["systemctl", "start", "milter-manager.socket"])
        assert stat(c, chrooted) == "root postfix 660"
        assert c.run(["test", "-e", "/run/milter-manager/milter-manager.sock"],
                     check=False).returncode == 1
        shown = c.run(["systemctl", "show", "-p", "Listen", "milter-manager.socket"]).stdout
        assert shown.strip() == f"Listen={chrooted} (Stream)"
        # what Postfix's chrooted smtpd sees as /milter-manager/milter-manager.sock
        assert connect_as(c, "postfix", chrooted) == "connected"
    finally:
        stop_all(c)
        c.run(["rm", "-f", dropin])
        c.run(["systemctl", "daemon-reload"])


PROBE = r"""
import json, os, grp, socket, sys, tempfile
result = {}
result["groups"] = sorted(grp.getgrgid(g).gr_name for g in os.getgroups())
def reach(family, kind, address):
    s = socket.socket(family, kind)
    try:
        s.connect(address)
        return "ok"
    except OSError as error:
        return type(error).__name__
    finally:
        s.close()
for path in sys.argv[1:]:
    result[path] = reach(socket.AF_UNIX, socket.SOCK_STREAM, path)
result["inet"] = reach(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 10031))
result["journal"] = reach(socket.AF_UNIX, socket.SOCK_DGRAM, "/run/systemd/journal/socket")
result["bus"] = reach(socket.AF_UNIX, socket.SOCK_STREAM, "/run/dbus/system_bus_socket")
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return "ok"
    except OSError as error:
        return type(error).__name__
result["write /usr"] = write("/usr/lib/milter-manager/probe")
result["write /etc"] = write("/etc/milter-manager-probe")
result["write /tmp"] = write("/tmp/milter-manager-probe")
with tempfile.TemporaryFile() as spill:
    spill.write(b"body")
result["tempdir"] = tempfile.gettempdir()
import cysystemd.journal, pystemd, dbus_next, sdnotify
from mmd.adapters.journal import JournalHandler
import logging
logging.getLogger("probe").addHandler(JournalHandler())
logging.getLogger("probe").warning("sandbox probe", extra={"fields": {"MMD_EVENT": "probe"}})
result["imports"] = "ok"
print(json.dumps(result))
"""

LISTENER = r"""
import os, socket, sys, time
unix = socket.socket(socket.AF_UNIX)
unix.bind("/tmp/mmd-child.sock")
os.chmod("/tmp/mmd-child.sock", 0o666)
unix.listen()
inet = socket.socket()
inet.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
inet.bind(("127.0.0.1", 10031))
inet.listen()
print("listening", flush=True)
sys.stdin.read()
"""


def test_hardening_keeps_child_sockets_reachable(
    installed_mmd: SystemdContainer, container_python: str
) -> None:
    """Run a probe with the service's exact sandbox (only the start type and command differ)."""
    c = installed_mmd
    service = c.read_file("/usr/lib/systemd/system/milter-manager.service")
    kept = [
        line for line in service.splitlines()
        if not line.startswith(("Type=", "NotifyAccess=", "ExecStart=", "ExecReload=", "BusName=",
                                "Restart", "WatchdogSec=", "Requires=", "After=", "Also="))
    ]
    c.write_file("/var/tmp/mmd-probe.py", PROBE)
    children = ["/run/opendkim/opendkim.sock", "/var/spool/postfix/spamass/spamass.sock",
                "/tmp/mmd-child.sock"]
    probe_unit = "\n".join(kept).replace(
        "[Service]",
        "[Service]\nType=oneshot\n"
        f"ExecStart={container_python} -I /var/tmp/mmd-probe.py {' '.join(children)}\n"
        "StandardOutput=truncate:/run/mmd-probe.json",
    )
    c.write_file("/etc/systemd/system/mmd-sandbox-probe.service", probe_unit)
    c.run(["systemctl", "daemon-reload"])
    for unit in ("opendkim.service", "spamass-milter.service"):
        assert c.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active", (
            f"{unit} should run in the container (Debian default configuration)"
        )
    listener = c.popen(["python3", "-c", LISTENER])
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "listening"
        started = c.run(["systemctl", "start", "mmd-sandbox-probe.service"], check=False)
        assert started.returncode == 0, c.run(
            ["journalctl", "-u", "mmd-sandbox-probe", "--no-pager"], check=False
        ).stdout
        result = json.loads(c.read_file("/run/mmd-probe.json"))
    finally:
        listener.communicate("", timeout=10)
        c.run(["rm", "-f", "/tmp/mmd-child.sock", "/etc/systemd/system/mmd-sandbox-probe.service"])
        c.run(["systemctl", "daemon-reload"])
    print(f"\nsandbox probe: {result}")
    assert {"milter-manager", "opendkim", "postfix"} <= set(result["groups"])
    for child in children:
        assert result[child] == "ok", child
    assert result["inet"] == "ok"
    assert result["journal"] == "ok"
    assert result["bus"] == "ok"
    assert result["write /usr"] == "OSError"  # EROFS
    assert result["write /etc"] == "OSError"
    assert result["write /tmp"] == "OSError"
    assert result["tempdir"] == "/var/cache/milter-manager"
    assert result["imports"] == "ok"
    assert stat(c, "/var/cache/milter-manager") == "milter-manager milter-manager 700"
