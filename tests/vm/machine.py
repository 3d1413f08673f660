"""Boot the cached guest image once with a payload, and read back its results.

The guest needs no network: the payload (``guest.sh``, the guide's commands, mmd staged on the
host, the SELinux module sources) is a tar on a second virtio disk, the results come back as a
tar on a third. root's autologin shell on the serial console runs it and powers off; the root
disk is a throwaway qcow2 overlay of the cached raw image.

qemu uses KVM only where the host's KVM can boot a stock kernel (a CPU with vmx or svm);
KVM-PVM (no vmx flag, see ../shared/spec/test-bed.md) cannot, so it falls back to TCG.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.vm.image import Image

ROOT = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).resolve().parent / "guest"
RESULTS_SIZE = 256 * 1024 * 1024
KERNEL_ARGS = "root=/dev/vda rw console=ttyS0 security=selinux selinux=1 enforcing=1 audit=1"


class GuestError(RuntimeError):
    """qemu could not run the guest to its end (the message says why)."""


def accelerator() -> list[str]:
    """KVM where it boots a stock kernel (vmx/svm flags), else multi-threaded TCG."""
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and ("vmx" in flags or "svm" in flags):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def build_deb() -> Path:
    """`make deb` on the host: the package the guest installs with apt."""
    done = subprocess.run(["make", "-C", str(ROOT), "deb"], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode != 0:
        raise GuestError(f"make deb failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    debs = sorted((ROOT / "dist").glob("milter-manager_*.deb"),
                  key=lambda path: path.stat().st_mtime)
    if not debs:
        raise GuestError(f"make deb made no dist/milter-manager_*.deb:\n{done.stdout}")
    return debs[-1]


def make_payload(work: Path, guide: str, files: dict[str, Path]) -> Path:
    """The tar the guest unpacks: guest.sh, guide.sh (the guide's commands), selinux/ and
    ``files`` (name in the payload -> file on the host)."""
    payload = work / "payload.tar"
    with tarfile.open(payload, "w") as tar:
        tar.add(GUEST / "guest.sh", arcname="guest.sh")
        data = guide.encode()
        info = tarfile.TarInfo("guide.sh")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, path in files.items():
            tar.add(path, arcname=name)
        for source in sorted((ROOT / "selinux").iterdir()):
            if source.suffix in {".te", ".if", ".fc"} or source.name == "Makefile":
                tar.add(source, arcname=f"selinux/{source.name}")
    # a disk is read in whole sectors
    size = payload.stat().st_size
    with payload.open("ab") as handle:
        handle.write(b"\0" * (-size % 512 + 512 * 20))
    return payload


@dataclass
class Run:
    """One guest run: where its files are and how long it took."""

    results: Path  # the unpacked results folder
    console: Path
    seconds: float
    accel: str


def boot(image: Image, payload: Path, work: Path, timeout: float = 2400) -> Run:
    """Boot, let the guest run the payload and power off; unpack its results tar."""
    overlay = work / "root.qcow2"
    results_disk = work / "results.img"
    console = work / "console.log"
    for old in (overlay, results_disk, console):
        old.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.disk), str(overlay)], check=True, timeout=60)
    with results_disk.open("wb") as handle:
        handle.truncate(RESULTS_SIZE)
    accel = accelerator()
    argv = [
        "qemu-system-x86_64", *accel, "-m", "2048", "-smp", "2",
        "-display", "none", "-no-reboot", "-nic", "none",
        "-serial", f"file:{console}", "-monitor", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_ARGS,
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={payload},if=virtio,format=raw,readonly=on",
        "-drive", f"file={results_disk},if=virtio,format=raw",
    ]
    started = time.monotonic()
    with (work / "qemu.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise GuestError(
                f"the guest did not power off within {timeout:.0f} s; console tail:\n"
                + _tail(console)) from None
    seconds = time.monotonic() - started
    if code != 0 or "terminating on signal" in (work / "qemu.log").read_text():
        raise GuestError(f"qemu exited {code}: {(work / 'qemu.log').read_text()}\n"
                         f"console tail:\n{_tail(console)}")
    results = work / "results"
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir()
    try:
        with tarfile.open(results_disk, "r:") as tar:
            members = tar.getmembers()
            unsafe = [m.name for m in members if m.name.startswith("/") or ".." in m.name]
            if not members or unsafe:
                raise tarfile.ReadError(f"members {unsafe or 'none'}")
            tar.extractall(results, members)
    except tarfile.ReadError as error:
        raise GuestError(f"the guest wrote no results ({error}); console tail:\n"
                         + _tail(console)) from None
    results_disk.unlink()
    overlay.unlink()
    return Run(results, console, seconds, accel[1])


def _tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return "(no console output)"
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
