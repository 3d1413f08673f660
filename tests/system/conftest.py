"""Fixtures for system tests: ONE throwaway systemd container per test session.

``systemd_container`` boots it (seconds) and powers it off at the end; ``built_deb`` runs the
install guide's build step (``make deb``, the shell blocks of docs/install-debian.md tagged
``run=build``) verbatim in the checkout, once per session; ``installed_mmd`` runs the guide's
install step (the blocks tagged ``run=install``: ``apt install ./dist/milter-manager_*.deb``)
verbatim inside the container, and nothing else: whatever the package needs (user, D-Bus
policy reload, group memberships, units) its maintainer scripts do, as on a reader's host.
``guide_host`` configures the mail host of the guide once per session (Postfix and the
children; spamd and clamd take long to start); the modules that use it run last, so no other
module sees that host.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.container import SystemdContainer
from tests.support.docblocks import script
from tests.support.guide_setup import GUIDE, restore, run_guide_blocks, set_up

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = "/usr/lib/milter-manager"
# A python for probes run inside the container that imports the installed mmd and the
# bundled cysystemd (a venv over Debian's python3 whose .pth names the package's folders).
CONTAINER_PYTHON_DIR = "/var/lib/mmd-tests/python"


# Modules that use ``guide_host``, in the order they run, after every other module.
GUIDE_HOST_MODULES = ("test_install_guide.py", "test_detection_live_guide.py",
                      "test_child_reuse_system.py", "test_package.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return GUIDE_HOST_MODULES.index(name) + 1 if name in GUIDE_HOST_MODULES else 0

    items.sort(key=rank)  # stable: the order within each group stays as collected


@pytest.fixture(scope="session")
def systemd_container() -> Iterator[SystemdContainer]:
    container = SystemdContainer()
    container.boot()
    print(
        f"\ncontainer {container.name}: booted in {container.boot_seconds:.1f} s "
        f"({container.system_state})",
        file=sys.stderr,
    )
    # The host image (a container image) carries a policy-rc.d that forbids every service
    # start by dpkg; a Debian host has none. Gone from the container's overlay only.
    container.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
    try:
        yield container
    finally:
        container.poweroff()
        shutil.rmtree(container.state_dir, ignore_errors=True)


def build_deb(*args: str) -> Path:
    """Run ``args`` (the guide's build step, or packaging/build-deb) in the checkout."""
    done = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    built = re.findall(r"^build-deb: (\S+\.deb)$", done.stdout + done.stderr, re.M)
    assert built, done.stdout + done.stderr
    name: str = built[-1]
    return ROOT / name


@pytest.fixture(scope="session")
def built_deb() -> Path:
    """dist/milter-manager_*.deb, built by the guide's own build block."""
    return build_deb("bash", "-c", script(GUIDE, "run", "build"))


def stage_deb(deb: Path, folder: Path) -> Path:
    """``folder``/dist/ holding only ``deb``, world-readable: where the install step runs."""
    dist = folder / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("*.deb"):
        old.unlink()
    shutil.copy2(deb, dist / deb.name)
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    return folder


@pytest.fixture(scope="session")
def installed_mmd(systemd_container: SystemdContainer, built_deb: Path) -> SystemdContainer:
    container = systemd_container
    checkout = stage_deb(built_deb, container.state_dir / "checkout")
    run_guide_blocks(container, "install", checkout)
    return container


@pytest.fixture(scope="session")
def container_python(installed_mmd: SystemdContainer) -> str:
    """A python inside the container with mmd and its dependencies, for test probes."""
    c = installed_mmd
    c.run(["python3", "-m", "venv", "--system-site-packages", "--without-pip",
           CONTAINER_PYTHON_DIR])
    python = f"{CONTAINER_PYTHON_DIR}/bin/python3"
    site = c.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    c.write_file(f"{site.stdout.strip()}/milter-manager.pth", f"{PRIVATE}\n{PRIVATE}/vendor\n")
    c.run([python, "-I", "-c", "import mmd, sdnotify, cysystemd"])
    return python


@pytest.fixture(scope="session")
def guide_host(installed_mmd: SystemdContainer) -> Iterator[SystemdContainer]:
    """The install guide's mail host (Postfix, spamass-milter, clamav-milter, opendkim, the
    greylist stand-in) around the installed mmd, put back as it was at the session's end."""
    backup = set_up(installed_mmd)
    try:
        yield installed_mmd
    finally:
        restore(installed_mmd, backup)
