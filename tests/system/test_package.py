"""The Debian package's life cycle in the systemd test container (issue 12, item 2).

The host is the install guide's (tests/support/guide_setup.py): Postfix with mmd's socket in
smtpd_milters, spamass-milter, clamav-milter, opendkim and the greylist stand-in, each
configured and started by its own unit. On it: purge the package (configuration, user and
SELinux module go), ``apt install`` the guide's .deb and nothing else (the socket listens,
busctl and ``systemctl reload`` work, a mail gets every child's verdict), upgrade to a newer
build under load (no session lost, /etc kept), ``apt remove`` (socket stopped, configuration
kept), purge, and reinstall. The tests run in file order and share one host; the last one
leaves the package installed as ``installed_mmd`` made it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.container import SystemdContainer
from tests.support.guide_setup import (
    MANAGER,
    MANAGER_SOCKET,
    MANAGER_SOCKET_UNIT,
    GuideHost,
    run_guide_blocks,
)
from tests.support.probes import wait_for
from tests.system.conftest import ROOT, build_deb, stage_deb

pytestmark = pytest.mark.system

BUS_NAME = "org.miltermanager.Manager1"
OBJECT = "/org/miltermanager/Manager1"
LOCAL_CONFIG = "/etc/milter-manager/milter-manager.d/50-local.toml"
LOCAL_TEXT = '# kept across upgrades\n[manager]\nshutdown_timeout = 45\n'
MX = ("mx.example.net", "203.0.113.6")  # a remote mail server: every real child applies
CHILDREN = {"spamass-milter", "clamav-milter", "opendkim"}


class Package:
    """The host, the two builds and where the install step runs."""

    def __init__(self, c: SystemdContainer, deb: Path, checkout: Path) -> None:
        self.c = c
        self.host = GuideHost(c)
        self.deb = deb
        self.checkout = checkout
        self.version = deb.name.split("_")[1]

    def install_as_the_guide_says(self) -> float:
        started = time.monotonic()
        run_guide_blocks(self.c, "install", self.checkout)
        return time.monotonic() - started

    def apt(self, *args: str) -> str:
        done = self.c.run(["apt-get", "-y", *args], timeout=300)
        return done.stdout

    def installed_version(self) -> str:
        done = self.c.run(["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}",
                           "milter-manager"], check=False)
        return done.stdout.strip()

    def exists(self, path: str) -> bool:
        return self.c.run(["test", "-e", path], check=False).returncode == 0

    def selinux_modules(self) -> list[str]:
        done = self.c.run(["semodule", "-l"])
        return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def package(guide_host: SystemdContainer, built_deb: Path) -> Iterator[Package]:
    c = guide_host
    checkout = stage_deb(built_deb, c.state_dir / "package-checkout")
    try:
        yield Package(c, built_deb, checkout)
    finally:
        # leave mmd installed from the guide's .deb, as installed_mmd did
        left = Package(c, built_deb, checkout)
        if left.installed_version() != f"installed {left.version}":
            c.run(["apt-get", "-y", "purge", "milter-manager"], check=False, timeout=300)
            run_guide_blocks(c, "install", checkout)


def test_selinux_is_not_enabled_in_the_container(package: Package) -> None:
    """Where SELinux is off the package neither loads nor removes a module (VM test: on)."""
    assert package.c.run(["selinuxenabled"], check=False).returncode != 0
    assert "milter_manager" not in package.selinux_modules()


def test_purge_removes_configuration_user_and_selinux_module(package: Package) -> None:
    c = package.c
    c.write_file(LOCAL_CONFIG, LOCAL_TEXT)
    package.apt("purge", "milter-manager")
    assert package.installed_version() in ("", f"not-installed {package.version}")
    assert not package.exists("/etc/milter-manager")
    assert c.run(["getent", "passwd", "milter-manager"], check=False).returncode != 0
    assert c.run(["getent", "group", "milter-manager"], check=False).returncode != 0
    assert "milter_manager" not in package.selinux_modules()
    assert not package.exists(MANAGER_SOCKET)
    assert not package.exists("/usr/sbin/milter-manager")


def test_apt_install_alone_serves_mail_through_every_child(package: Package) -> None:
    c = package.c
    cursor = package.host.journal_cursor()
    started = time.monotonic()
    apt_seconds = package.install_as_the_guide_says()
    assert package.installed_version() == f"installed {package.version}"
    # the socket listens for Postfix (the host's chroot drop-in puts it in the spool)
    assert c.run(["systemctl", "is-active", MANAGER_SOCKET_UNIT]).stdout.strip() == "active"
    assert c.run(["test", "-S", MANAGER_SOCKET], check=False).returncode == 0
    first = package.host.send(client_name=MX[0], client_address=MX[1])
    package.host.delivered(first, timeout=90)
    to_first_mail = time.monotonic() - started
    package.host.wait_for_session_ends(cursor, 1)
    verdicts = package.host.manager_entries(cursor, MMD_EVENT="milter-verdict")
    assert {entry["MMD_MILTER"] for entry in verdicts} >= CHILDREN, verdicts
    # the control interface: the bus name was taken on the first start after a fresh install
    introspected = c.run(["busctl", "introspect", BUS_NAME, OBJECT], timeout=60).stdout
    assert "org.miltermanager.Manager1" in introspected and ".Reload" in introspected
    c.run(["systemctl", "reload", MANAGER], timeout=130)
    # this install's entries only: other tests in the shared container provoke that line
    messages = [entry.get("MESSAGE", "") for entry in package.host.manager_entries(cursor)]
    assert not [text for text in messages if "not allowed to own" in text], messages
    size = package.deb.stat().st_size
    print(f"\npackage {package.deb.name}: {size / 1024:.0f} KiB; apt install {apt_seconds:.1f} s;"
          f" apt install to the first filtered mail {to_first_mail:.1f} s", flush=True)


LOAD = r"""
sent=0; answered=0
while [ ! -e /run/mmd-load-stop ]; do
  sent=$((sent + 1))
  out="$(PYTHONPATH={source} python3 -m mmd.cli.test_server -s unix:{socket} 2>&1)" || true
  if printf '%s\n' "$out" | grep -qx 'status: accept'; then
    answered=$((answered + 1))
  else
    printf '%s %s\n' "$(date +%T.%N)" "$out" >>/run/mmd-load-failures
  fi
done
echo "$sent $answered"
"""


def test_upgrade_under_load_keeps_etc_and_every_session(package: Package) -> None:
    c = package.c
    c.write_file(LOCAL_CONFIG, LOCAL_TEXT)
    upgrade_version = f"{package.version}+upgrade1"
    newer = build_deb("env", "DIST=build/upgrade-deb", "packaging/build-deb", upgrade_version)
    upgrade = stage_deb(newer, c.state_dir / "upgrade-checkout")
    # the load's client is the checkout's milter-test-server, not the package's (which the
    # upgrade replaces under it)
    source = c.state_dir / "load-client"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(ROOT / "mmd", source / "mmd", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)
    c.run(["systemctl", "start", MANAGER])
    old_pid = package.host.unit(MANAGER, "MainPID")["MainPID"]
    socket_since = package.host.unit(MANAGER_SOCKET_UNIT, "ActiveEnterTimestampMonotonic")
    c.run(["rm", "-f", "/run/mmd-load-stop", "/run/mmd-load-failures"])
    loads = [c.popen(["bash", "-c", LOAD.format(source=source, socket=MANAGER_SOCKET)])
             for _ in range(2)]
    try:
        time.sleep(3)
        c.run(["bash", "-c", f"cd {upgrade} && apt install ./dist/{newer.name}"], timeout=300)
        wait_for(lambda: package.host.unit(MANAGER, "MainPID")["MainPID"] not in ("0", old_pid),
                 "the new daemon after the upgrade", timeout=60)
        time.sleep(3)
    finally:
        c.run(["touch", "/run/mmd-load-stop"])
        counts = [load.communicate(timeout=120)[0].split() for load in loads]
    sent = sum(int(count[0]) for count in counts)
    answered = sum(int(count[1]) for count in counts)
    print(f"\nupgrade under load: {sent} sessions sent, {answered} answered", flush=True)
    failures = c.run(["cat", "/run/mmd-load-failures"], check=False).stdout
    journal = c.run(["journalctl", "-u", MANAGER, "-n", "60", "--no-pager"]).stdout
    assert sent > 10 and answered == sent, f"{counts}\n{failures}\n{journal}"
    assert package.installed_version() == f"installed {upgrade_version}"
    assert c.read_file(LOCAL_CONFIG) == LOCAL_TEXT
    shown = c.run(["milter-manager", "--show-config"]).stdout
    assert f"# {LOCAL_CONFIG}:3\nshutdown_timeout = 45" in shown, shown
    # the socket was never restarted: Postfix's connections waited in it
    assert package.host.unit(MANAGER_SOCKET_UNIT, "ActiveEnterTimestampMonotonic") == socket_since


def test_remove_stops_the_socket_and_keeps_configuration(package: Package) -> None:
    c = package.c
    package.apt("remove", "milter-manager")
    assert package.installed_version().startswith("config-files")
    for unit in (MANAGER_SOCKET_UNIT, MANAGER):
        assert c.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "inactive"
    assert not package.exists(MANAGER_SOCKET)
    assert c.read_file(LOCAL_CONFIG) == LOCAL_TEXT
    assert c.run(["getent", "passwd", "milter-manager"], check=False).returncode == 0


def test_purge_after_remove_then_reinstall(package: Package) -> None:
    c = package.c
    package.apt("purge", "milter-manager")
    assert not package.exists("/etc/milter-manager")
    assert c.run(["getent", "passwd", "milter-manager"], check=False).returncode != 0
    assert "milter_manager" not in package.selinux_modules()
    package.install_as_the_guide_says()
    assert package.installed_version() == f"installed {package.version}"
    assert c.run(["systemctl", "is-active", MANAGER_SOCKET_UNIT]).stdout.strip() == "active"
    introspected = c.run(["busctl", "introspect", BUS_NAME, OBJECT], timeout=60).stdout
    assert ".Reload" in introspected
    package.host.delivered(package.host.send(client_name=MX[0], client_address=MX[1]))


def test_bus_name_is_taken_before_dpkg_triggers_run(package: Package) -> None:
    """The user exists and D-Bus knows it when postinst ends, not only after dbus's trigger.

    A daemon started between postinst and the trigger (Postfix connecting during a long apt
    run) must get its bus name: postinst creates the user, then asks for ReloadConfig.
    Without that call this fails with "not allowed to own the service" (checked by hand).
    """
    c = package.c
    package.apt("purge", "milter-manager")
    assert c.run(["getent", "passwd", "milter-manager"], check=False).returncode != 0
    cursor = package.host.journal_cursor()
    try:
        c.run(["dpkg", "-i", "--no-triggers", f"{package.checkout}/dist/{package.deb.name}"],
              timeout=300)
        c.run(["systemctl", "start", MANAGER], timeout=60)
        introspected = c.run(["busctl", "introspect", BUS_NAME, OBJECT], timeout=60).stdout
        assert ".Reload" in introspected
        messages = [entry.get("MESSAGE", "") for entry in package.host.manager_entries(cursor)]
        assert not [text for text in messages if "not allowed to own" in text], messages
    finally:
        c.run(["dpkg", "--triggers-only", "--pending"], check=False, timeout=300)
    assert package.installed_version() == f"installed {package.version}"
