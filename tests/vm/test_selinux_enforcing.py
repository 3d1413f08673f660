"""mmd under SELinux enforcing, in a real kernel: a Debian 12 guest in qemu runs the install guide.

One guest boot per test run (module fixture, several minutes under software emulation): the
guest installs mmd as docs/install-debian.md and docs/selinux.md say, sends clean, GTUBE and
EICAR mail through chrooted Postfix -> socket-activated mmd -> spamass-milter, clamav-milter,
opendkim, reloads, calls every D-Bus control method (one refused to an unprivileged user),
runs the report once, stops and restarts mmd; then the same scenario once more with the
dontaudit rules off (``semodule -DB``). The tests below read what it recorded.

Artefacts (console, guest journal, audit log, every step's output) stay in
build/vm-artifacts/ (or $MMD_VM_ARTIFACTS) for CI. The image is cached in /var/cache/mmd-vm.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support import docblocks
from tests.vm import avc, image, machine

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MMD_VM_ARTIFACTS", ROOT / "build" / "vm-artifacts"))
PHASES = ("enforcing", "dontaudit-off")

# Every dontaudit rule of selinux/milter_manager.te the scenario runs into, and why it is a
# dontaudit and not an allow. With `semodule -DB` these are the only denials of the module's
# types the scenario may show (source, target, class).
DONTAUDITED: dict[tuple[str, str, str], str] = {
    ("milter_manager_t", "milter_manager_t", "anon_inode"):
        "uvloop (libuv) probes io_uring at start and falls back to epoll when refused",
}


# mmd gets into the guest as the guide says: `make deb` on the host, then the guide's own tagged
# blocks of docs/install-debian.md, with guest/between-blocks.sh for its untagged steps.
GUIDE = ROOT / "docs" / "install-debian.md"
GUEST_FILES = Path(__file__).parent / "guest"


def between_blocks() -> dict[str, str]:
    """guest/between-blocks.sh cut at its "# @@ NAME" lines."""
    pieces: dict[str, str] = {}
    name = ""
    for line in (GUEST_FILES / "between-blocks.sh").read_text(encoding="utf-8").splitlines():
        if line.startswith("# @@ "):
            name = line.split()[2]
            pieces[name] = ""
        elif name:
            pieces[name] += line + "\n"
    return pieces


def guide(work: Path) -> tuple[str, dict[str, Path]]:
    """The guide's commands as the guest runs them, and the files they need in the payload."""
    deb = machine.build_deb()
    extra = between_blocks()

    def tagged(value: str) -> str:
        return "\n".join(f"# --- {block.where()}\n{block.text}"
                         for block in docblocks.runnable(GUIDE, "run", value))

    parts = [
        "set -eux",
        # the harness answers apt's questions (the console is not a reader)
        "echo 'APT::Get::Assume-Yes \"true\";' > /etc/apt/apt.conf.d/90mmd-vm",
        "export DEBIAN_FRONTEND=noninteractive",
        'cd "$PAYLOAD"  # the folder holding dist/, as on the mail host',
        tagged("install"),
        "cd /",
        "semodule -l | grep -x 'milter_manager.*'  # the package loaded the module",
        tagged("chroot"),
        tagged("spamassassin"),
        tagged("spamassassin-start"),
        tagged("clamav"),
        tagged("clamav-start"),
        tagged("opendkim"),
        tagged("opendkim-start"),
        extra["postfix-test"],
        tagged("postfix"),
        "set +x",
    ]
    return "\n".join(parts) + "\n", {f"dist/{deb.name}": deb}


@dataclass
class GuestRun:
    results: Path
    steps: dict[str, tuple[int, float]]  # name -> (exit status, seconds)
    timings: dict[str, float | str]

    def text(self, relative: str) -> str:
        path = self.results / relative
        assert path.exists(), f"the guest did not write {relative}"
        return path.read_text(encoding="utf-8", errors="replace")

    def step(self, name: str) -> tuple[int, str]:
        assert name in self.steps, f"the guest did not reach the step {name}"
        return self.steps[name][0], self.text(f"steps/{name}.out")

    def denials(self, phase: str) -> list[avc.Denial]:
        return avc.denials(self.text(f"avc-{phase}.txt"))


@pytest.fixture(scope="module")
def guest() -> Iterator[GuestRun]:
    started = time.monotonic()
    built = image.ensure()
    work = ROOT / "build" / "vm-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    payload_started = time.monotonic()
    script, files = guide(work)
    (work / "guide.sh").write_text(script, encoding="utf-8")
    payload = machine.make_payload(work, script, files)
    payload_seconds = time.monotonic() - payload_started
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    try:
        run = machine.boot(built, payload, work)
    finally:
        for name in ("console.log", "qemu.log", "guide.sh"):
            if (work / name).exists():
                shutil.copy(work / name, ARTIFACTS / name)
    shutil.copytree(run.results, ARTIFACTS / "guest", dirs_exist_ok=True)
    steps: dict[str, tuple[int, float]] = {}
    steps_file = ARTIFACTS / "guest" / "steps.tsv"
    if steps_file.exists():
        for line in steps_file.read_text().splitlines():
            name, code, seconds = line.split("\t")
            steps[name] = (int(code), float(seconds))
    timings: dict[str, float | str] = {
        "image": str(built.folder),
        "image_build_seconds": built.build_seconds if built.build_seconds is not None else -1,
        "payload_seconds": round(payload_seconds, 1),
        "guest_seconds": round(run.seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "accelerator": run.accel,
    }
    uptime = ARTIFACTS / "guest" / "facts" / "uptime-at-start"
    if uptime.exists():  # seconds from the kernel's start to the payload's
        timings["boot_to_shell_seconds"] = float(uptime.read_text().split()[0])
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"\nvm: {json.dumps(timings)}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    yield GuestRun(ARTIFACTS / "guest", steps, timings)


def _message(run: GuestRun, name: str) -> EmailMessage:
    path = run.results / "mail" / f"{name}.eml"
    assert path.exists(), f"{name}: not delivered\n{run.text(f'mail/{name}.swaks')}"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


# ------------------------------------------------------------------------------- the machine


def test_guest_runs_enforcing(guest: GuestRun) -> None:
    assert guest.text("guest.rc").strip() == "0", guest.text("guest.log")[-3000:]
    assert guest.text("facts/getenforce").strip() == "Enforcing"
    assert "enforcing=1" in guest.text("facts/cmdline")
    assert "unconfined_t" in guest.text("facts/shell-context")
    # enforcement bites: postmap may not write below /root, and the kernel says so
    code, output = guest.step("enforcement-proof")
    assert code != 0, output
    proof = [d for d in guest.denials("enforcing") if d.source == "postfix_map_t"]
    assert proof and all(d.permissive == "0" for d in proof), guest.text("avc-enforcing.txt")


def test_guide_commands_succeed(guest: GuestRun) -> None:
    code, output = guest.step("guide")
    assert code == 0, output[-4000:]
    code, output = guest.step("check-show-config")
    assert code == 0, output
    for child in ("spamass-milter", "clamav-milter", "opendkim"):
        assert f'name = "{child}"' in output, output


# ------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("phase", PHASES)
def test_daemon_runs_in_its_domain(guest: GuestRun, phase: str) -> None:
    lines = [line for line in guest.text(f"facts/{phase}-ps").splitlines()
             if "milter-manager" in line]
    assert lines, guest.text(f"facts/{phase}-ps")
    assert all(":milter_manager_t:" in line for line in lines), lines
    assert lines[0].split()[0] == "system_u:system_r:milter_manager_t:s0", lines


def test_paths_carry_the_module_types(guest: GuestRun) -> None:
    labels = {line.split()[1]: line.split()[0].split(":")[2]
              for line in guest.text("facts/enforcing-labels").splitlines() if " /" in line}
    assert labels == {
        "/usr/sbin/milter-manager": "milter_manager_exec_t",
        "/run/milter-manager": "milter_manager_runtime_t",
        "/var/spool/postfix/milter-manager": "milter_manager_runtime_t",
        "/var/spool/postfix/milter-manager/milter-manager.sock": "milter_manager_runtime_t",
        "/var/cache/milter-manager": "milter_manager_cache_t",
    }, guest.text("facts/enforcing-labels")


# ------------------------------------------------------------------------------- mail


@pytest.mark.parametrize("phase", PHASES)
def test_mail_verdicts_and_headers(guest: GuestRun, phase: str) -> None:
    # socket activation: stopped before the first mail, running after it
    assert guest.text(f"facts/{phase}-state-before-mail").strip() == "inactive"
    assert guest.text(f"facts/{phase}-state-after-mail").strip() == "active"
    clean = _message(guest, f"{phase}-clean")
    for header in ("X-Spam-Status", "X-Virus-Scanned", "X-Virus-Status", "DKIM-Signature"):
        assert clean[header], f"{header} missing:\n{clean}"
    assert clean["X-Spam-Status"].startswith("No"), clean["X-Spam-Status"]
    assert clean["X-Virus-Status"] == "Clean", clean["X-Virus-Status"]
    local = _message(guest, f"{phase}-local")
    assert local["DKIM-Signature"] and local["X-Virus-Status"] == "Clean", str(local)
    gtube = guest.text(f"mail/{phase}-gtube.swaks")
    assert "<** 550 5.7.1 Blocked by SpamAssassin" in gtube, gtube
    assert not (guest.results / "mail" / f"{phase}-gtube.eml").exists()
    eicar = guest.text(f"mail/{phase}-eicar.swaks")
    assert "<** 550 5.7.1" in eicar, eicar
    assert not (guest.results / "mail" / f"{phase}-eicar.eml").exists()
    for name in ("after-reload", "after-stop", "after-restart"):
        assert _message(guest, f"{phase}-{name}")["DKIM-Signature"]


# ------------------------------------------------------------------------------- control


@pytest.mark.parametrize("phase", PHASES)
def test_reload_returns(guest: GuestRun, phase: str) -> None:
    code, output = guest.step(f"{phase}-reload")
    assert code == 0, output
    assert guest.steps[f"{phase}-reload"][1] < 60, guest.steps[f"{phase}-reload"]


@pytest.mark.parametrize("phase", PHASES)
def test_every_control_method(guest: GuestRun, phase: str) -> None:
    for method in ("Reload", "ListMilters", "GetMilter", "SetMilterEnabled-off",
                   "SetMilterEnabled-on", "GetStatistics", "ShowConfig", "Version",
                   "introspect", "nobody-ListMilters"):
        code, output = guest.step(f"{phase}-busctl-{method}")
        assert code == 0, f"{method}: {output}"
    assert "opendkim" in guest.step(f"{phase}-busctl-GetMilter")[1]
    code, output = guest.step(f"{phase}-busctl-nobody-SetMilterEnabled")
    assert code != 0 and "Access denied" in output, output


@pytest.mark.parametrize("phase", PHASES)
def test_report_runs_once(guest: GuestRun, phase: str) -> None:
    for name in ("report-timer", "report", "report-timer-stop"):
        code, output = guest.step(f"{phase}-{name}")
        assert code == 0, f"{name}: {output}"


@pytest.mark.parametrize("phase", PHASES)
def test_stop_and_restart(guest: GuestRun, phase: str) -> None:
    for name in ("stop", "restart"):
        code, output = guest.step(f"{phase}-{name}")
        assert code == 0, f"{name}: {output}"
    assert guest.text(f"facts/{phase}-state-after-stop").strip() == "inactive"
    assert guest.text(f"facts/{phase}-state-after-stop-mail").strip() == "active"
    assert guest.text(f"facts/{phase}-state-after-restart").strip() == "active"


# ------------------------------------------------------------------------------- denials


def test_no_denials_with_dontaudit_on(guest: GuestRun) -> None:
    found = guest.denials("enforcing")
    ours = [str(d) for d in found if d.concerns_module()]
    scenario = [str(d) for d in found if d.in_scenario_domain()]
    assert not ours, "denials of the module's types:\n" + "\n".join(ours)
    assert not scenario, "denials in Postfix, milter or D-Bus domains:\n" + "\n".join(scenario)


def test_only_known_dontaudits_with_dontaudit_off(guest: GuestRun) -> None:
    code, output = guest.step("semodule-DB")
    assert code == 0, output
    found = guest.denials("dontaudit-off")
    ours = {d.key(): d for d in found if d.concerns_module()}
    unexplained = [str(d) for key, d in ours.items() if key not in DONTAUDITED]
    summary = [f"{' '.join(key)}: {reason}" for key, reason in DONTAUDITED.items()]
    (ARTIFACTS / "dontaudit.txt").write_text(
        "dontaudit rules of the module the scenario relies on:\n" + "\n".join(summary)
        + "\n\nseen with semodule -DB:\n" + "\n".join(str(d) for d in found) + "\n")
    assert not unexplained, "denials hidden by no documented dontaudit:\n" + "\n".join(unexplained)


def test_listed_dontaudits_are_rules_of_the_module() -> None:
    te = (ROOT / "selinux" / "milter_manager.te").read_text(encoding="utf-8")
    for source, target, tclass in DONTAUDITED:
        target_name = "self" if target == source else target
        assert f"dontaudit {source} {target_name}:{tclass}" in te, (source, target, tclass)
