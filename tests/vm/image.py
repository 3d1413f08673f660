"""The Debian 12 guest image for the SELinux test: built once with mmdebstrap, then cached.

The image is keyed by everything that goes into it (package list, the apt sources it is built
from, the files written into it): a change of any of them builds a new one under
``/var/cache/mmd-vm/<key>/``, an unchanged key reuses the old one (the build takes minutes,
a boot far less). The cache holds a sparse raw ext4 image labelled offline with the image's
own ``setfiles`` (the host kernel has no SELinux), and the image's kernel and initrd, which
qemu boots directly.

Run by hand: ``python3 -m tests.vm.image`` prints the folder (building it when missing).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MMD_VM_CACHE", "/var/cache/mmd-vm"))
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
IMAGE_SIZE = "4G"

# What the guest needs: a kernel that boots with SELinux, the reference policy and its tools,
# audit, the mail stack of the install guide, and the Debian packages of mmd's dependencies
# (the guest has no PyPI; the .deb depends on these).
PACKAGES = (
    # boot
    "linux-image-amd64", "initramfs-tools", "systemd-sysv", "dbus", "udev", "procps",
    "e2fsprogs", "kmod",
    # SELinux: policy, tools, audit
    "selinux-basics", "selinux-policy-default", "selinux-policy-dev", "policycoreutils",
    "policycoreutils-python-utils", "setools", "semodule-utils", "checkpolicy", "m4", "make",
    "auditd",
    # mmd and the install guide
    "python3", "python3-venv", "python3-dbus-next", "python3-pystemd", "python3-sdnotify",
    "python3-uvloop", "python3-systemd", "rrdtool",
    "postfix", "swaks", "spamassassin", "spamd", "spamc", "spamass-milter",
    "clamav-daemon", "clamav-milter", "opendkim", "opendkim-tools",
)

# Serial console autologin of root; its login shell runs the payload once and powers off.
AUTOLOGIN = """[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 %I vt220
"""
BASH_PROFILE = """# mmd VM test: run the payload of /dev/vdb once, on the serial console only.
if [ -f ~/.bashrc ]; then . ~/.bashrc; fi
if [ "$(tty)" = /dev/ttyS0 ] && [ -b /dev/vdb ] && [ ! -e /run/mmd-vm-started ]; then
    touch /run/mmd-vm-started
    /usr/local/sbin/mmd-vm-run
fi
"""
RUNNER = """#!/bin/bash
# Unpack the payload (/dev/vdb, a tar), run its guest.sh, write the results folder as a tar
# to /dev/vdc and power off. The host reads the tar; the console shows the progress.
payload=/root/payload
results=/root/results
rm -rf "$payload" "$results"
mkdir -p "$payload" "$results"
tar -xf /dev/vdb -C "$payload"
echo "mmd-vm: payload unpacked, running guest.sh"
bash "$payload/guest.sh" "$payload" "$results" 2>&1 | tee "$results/guest.log"
echo "${PIPESTATUS[0]}" > "$results/guest.rc"
tar -cf /dev/vdc -C "$results" .
sync
echo "mmd-vm: results written, powering off"
systemctl poweroff
"""
FSTAB = "/dev/vda / ext4 rw,relatime 0 1\n"
SELINUX_CONFIG = "SELINUX=enforcing\nSELINUXTYPE=default\n"
# "No configuration": the guide writes main.cf itself.
DEBCONF = "postfix postfix/main_mailer_type select No configuration\n"

# Files written into the tree after mmdebstrap: path -> (text, mode).
FILES: dict[str, tuple[str, int]] = {
    "etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf": (AUTOLOGIN, 0o644),
    "root/.bash_profile": (BASH_PROFILE, 0o644),
    "usr/local/sbin/mmd-vm-run": (RUNNER, 0o755),
    "etc/fstab": (FSTAB, 0o644),
    "etc/selinux/config": (SELINUX_CONFIG, 0o644),
    "etc/hostname": ("mail\n", 0o644),
}
# Bump when the build steps below change in a way the inputs above do not show.
RECIPE = 1


@dataclass(frozen=True)
class Image:
    """A built image: the root disk and the kernel and initrd to boot it with."""

    folder: Path
    build_seconds: float | None  # None: taken from the cache

    @property
    def disk(self) -> Path:
        return self.folder / "root.img"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"


def key() -> str:
    """Hash of every input of the image."""
    inputs = {
        "recipe": RECIPE,
        "packages": sorted(PACKAGES),
        "sources": SOURCES.read_text(encoding="utf-8"),
        "files": FILES,
        "debconf": DEBCONF,
        "size": IMAGE_SIZE,
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (parallel test runs on one machine share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure() -> Image:
    """The cached image for the current inputs, built first when missing."""
    folder = CACHE / key()
    with _locked(CACHE / ".lock"):
        if (folder / "complete").exists():
            return Image(folder, None)
        started = time.monotonic()
        _build(folder)
        return Image(folder, time.monotonic() - started)


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), file=sys.stderr)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _build(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    work = folder / "tree"
    work.parent.mkdir(parents=True)
    for tool in ("mmdebstrap", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: run scripts/install-deps")
    debconf = f"printf '{DEBCONF.strip()}\\n' | chroot \"$1\" debconf-set-selections"
    _run([
        "mmdebstrap", "--variant=minbase", "--mode=root",
        "--include=" + ",".join(PACKAGES),
        f"--essential-hook={debconf}",
        "bookworm", str(work), str(SOURCES),
    ], timeout=1800)
    for relative, (text, mode) in FILES.items():
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)
    _label(work)
    boot = work / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    initrds = sorted(boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel or initrd in {boot}: {sorted(os.listdir(boot))}")
    shutil.copyfile(kernels[-1], folder / "vmlinuz")
    shutil.copyfile(initrds[-1], folder / "initrd.img")
    # mkfs.ext4 -d copies the tree with its security.selinux attributes.
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(work), str(folder / "root.img"),
          IMAGE_SIZE], timeout=900)
    shutil.rmtree(work)
    (folder / "complete").write_text(json.dumps({"packages": sorted(PACKAGES)}) + "\n")


def _label(tree: Path) -> None:
    """Label every file as the guest's policy says, with the guest's own setfiles.

    libselinux needs /proc in the chroot, or every file fails "Could not set context".
    """
    contexts = "/etc/selinux/default/contexts/files/file_contexts"
    proc = tree / "proc"
    _run(["mount", "-t", "proc", "proc", str(proc)])
    try:
        _run(["chroot", str(tree), "setfiles", "-F", "-e", "/proc", "-e", "/sys", "-e", "/dev",
              contexts, "/"], timeout=900)
    finally:
        _run(["umount", str(proc)])


if __name__ == "__main__":
    image = ensure()
    taken = "cached" if image.build_seconds is None else f"built in {image.build_seconds:.0f} s"
    print(f"{image.folder} ({taken})")
