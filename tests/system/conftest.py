"""Fixtures for system tests: ONE throwaway systemd container per test session.

``systemd_container`` boots it (seconds) and powers it off at the end; ``installed_mmd`` runs
the install step inside it once (``scripts/install-files "" /usr``, as ``make install``
does), then the steps a package's scripts would run: systemd-sysusers, systemd-tmpfiles,
daemon-reload, and the group memberships docs/systemd.md asks an administrator for.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.container import SystemdContainer

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/usr"
CONTAINER_PYTHON = f"{PREFIX}/lib/milter-manager/bin/python3"

# What the install step reads. Copied to /var/tmp because the checkout may live anywhere (a CI
# clone under /tmp is emptied in the container's view) and must be readable there.
STAGED = ("pyproject.toml", "README.md", "mmd", "units", "packaging", "scripts", "docs", "dbus",
          "selinux")

# Groups of child milter sockets on Debian (docs/systemd.md, "Child milter sockets").
CHILD_SOCKET_GROUPS = ("opendkim", "postfix", "clamav")


@pytest.fixture(scope="session")
def systemd_container() -> Iterator[SystemdContainer]:
    container = SystemdContainer()
    container.boot()
    print(
        f"\ncontainer {container.name}: booted in {container.boot_seconds:.1f} s "
        f"({container.system_state})",
        file=sys.stderr,
    )
    try:
        yield container
    finally:
        container.poweroff()
        shutil.rmtree(container.state_dir, ignore_errors=True)


def stage_sources(destination: Path) -> Path:
    """A world-readable copy of what scripts/install-files needs, wheelhouse included."""
    subprocess.run([str(ROOT / "scripts" / "install-files"), "--wheels-only"], check=True)
    source = destination / "src"
    source.mkdir(parents=True)
    for name in STAGED:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, source / name)
    shutil.copytree(ROOT / "build" / "wheels", source / "build" / "wheels")
    subprocess.run(["chmod", "-R", "a+rX", str(destination)], check=True)
    return source


@pytest.fixture(scope="session")
def installed_mmd(systemd_container: SystemdContainer) -> SystemdContainer:
    container = systemd_container
    source = stage_sources(container.state_dir)
    container.run([f"{source}/scripts/install-files", "", PREFIX], timeout=300)
    container.run(["systemd-sysusers"])
    container.run(["systemd-tmpfiles", "--create", f"{PREFIX}/lib/tmpfiles.d/milter-manager.conf"])
    for group in CHILD_SOCKET_GROUPS:
        if container.run(["getent", "group", group], check=False).returncode == 0:
            container.run(["usermod", "-a", "-G", group, "milter-manager"])
    policy = f"{PREFIX}/share/dbus-1/system.d/org.miltermanager.Manager1.conf"
    if container.run(["test", "-e", policy], check=False).returncode == 0:
        container.run(["busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                       "org.freedesktop.DBus", "ReloadConfig"])
    container.run(["systemctl", "daemon-reload"])
    return container


@pytest.fixture(scope="session")
def container_python(installed_mmd: SystemdContainer) -> str:
    """A python inside the container with mmd and its dependencies (the installed venv)."""
    installed_mmd.run([CONTAINER_PYTHON, "-c", "import mmd, sdnotify, cysystemd"])
    return CONTAINER_PYTHON
