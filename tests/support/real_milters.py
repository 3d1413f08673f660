"""clamd + clamav-milter, opendkim and spamd + spamass-milter, each started by hand.

Each lives in its own folder under a test run's directory, configured there
(sockets, logs, databases, keys), so nothing touches the host's own services.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import Daemon, reachable_dir

EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# the name clamd reports for the local EICAR signature (database file mmdtest.ndb)
EICAR_SIGNATURE = "Test.EICAR.UNOFFICIAL"
SPAMASS_REJECT = "550 5.7.1 Blocked by SpamAssassin"


@dataclass
class RealMilter:
    """A running child milter: its connection spec and the processes behind it."""

    name: str
    spec: str
    folder: Path
    daemons: list[Daemon] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        # all at once: clamav-milter and opendkim take seconds to wind down on SIGTERM
        for daemon in self.daemons:
            daemon.terminate()
        for daemon in reversed(self.daemons):
            daemon.stop(1.0)

    def logs(self) -> str:
        parts = []
        for log in sorted(self.folder.glob("*.log")):
            parts.append(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def start_clamav(base: Path) -> RealMilter:
    """clamd with a one-line EICAR body signature, and clamav-milter rejecting infected mail."""
    folder = reachable_dir(base / "clamav")
    database = reachable_dir(folder / "db")
    (database / "mmdtest.ndb").write_text(f"Test.EICAR:0:*:{EICAR.encode().hex()}\n")
    clamd_socket = folder / "clamd.sock"
    milter_socket = folder / "clamav-milter.sock"
    clamd_conf = _write(folder / "clamd.conf", [
        f"LocalSocket {clamd_socket}",
        "LocalSocketMode 666",
        f"DatabaseDirectory {database}",
        "Foreground yes",
        f"LogFile {folder}/clamd-own.log",
        f"PidFile {folder}/clamd.pid",
        "User root",
    ])
    milter_conf = _write(folder / "clamav-milter.conf", [
        f"MilterSocket unix:{milter_socket}",
        "MilterSocketMode 666",
        f"ClamdSocket unix:{clamd_socket}",
        "OnInfected Reject",
        "AddHeader Replace",
        "LogInfected Basic",
        "Foreground yes",
        f"LogFile {folder}/clamav-milter-own.log",
        f"PidFile {folder}/clamav-milter.pid",
        "User root",
    ])
    milter = RealMilter("clamav-milter", f"unix:{milter_socket}", folder)
    clamd = Daemon("clamd", ["clamd", "-c", str(clamd_conf)], folder / "clamd.log")
    milter.daemons.append(clamd)
    try:
        clamd.wait_for_unix_socket(clamd_socket, 60, folder / "clamd-own.log")
        child = Daemon("clamav-milter", ["clamav-milter", "-c", str(milter_conf)],
                       folder / "clamav-milter.log")
        milter.daemons.append(child)
        child.wait_for_unix_socket(milter_socket, 30, folder / "clamav-milter-own.log")
    except Exception:
        milter.stop()
        raise
    milter.info["clamd_socket"] = str(clamd_socket)
    return milter


def start_opendkim(
    base: Path, domain: str = "example.com", selector: str = "mmdtest"
) -> RealMilter:
    """opendkim signing (and verifying) for ``domain`` with a fresh key."""
    folder = reachable_dir(base / "opendkim")
    subprocess.run(["opendkim-genkey", "-D", str(folder), "-d", domain, "-s", selector],
                   check=True, capture_output=True)
    milter_socket = folder / "opendkim.sock"
    conf = _write(folder / "opendkim.conf", [
        f"Domain {domain}",
        f"Selector {selector}",
        f"KeyFile {folder}/{selector}.private",
        f"Socket local:{milter_socket}",
        "Mode sv",
        "Background no",
        "RequireSafeKeys false",
        "UMask 000",
        f"PidFile {folder}/opendkim.pid",
        "Syslog no",
        "UserID root",
    ])
    milter = RealMilter("opendkim", f"unix:{milter_socket}", folder)
    child = Daemon("opendkim", ["opendkim", "-f", "-x", str(conf)], folder / "opendkim.log")
    milter.daemons.append(child)
    try:
        child.wait_for_unix_socket(milter_socket, 30)
    except Exception:
        milter.stop()
        raise
    milter.info.update(domain=domain, selector=selector,
                       public_key=(folder / f"{selector}.txt").read_text())
    return milter


def start_spamassassin(base: Path) -> RealMilter:
    """spamd without DNS (children as debian-spamd) and spamass-milter -m -r 15."""
    folder = reachable_dir(base / "spamassassin")
    config = reachable_dir(folder / "config")
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, config / pre.name)
    _write(config / "local.cf", ["skip_rbl_checks 1", "dns_available no", "use_bayes 0",
                                 "bayes_auto_learn 0"])
    home = reachable_dir(folder / "home")
    shutil.chown(home, "debian-spamd", "debian-spamd")
    spamd_socket = folder / "spamd.sock"
    milter_socket = folder / "spamass-milter.sock"
    milter = RealMilter("spamass-milter", f"unix:{milter_socket}", folder)
    spamd = Daemon("spamd", [
        "spamd", "-L", "-x", "-u", "debian-spamd", "-g", "debian-spamd",
        f"--socketpath={spamd_socket}", "--socketmode=0666", f"--siteconfigpath={config}",
        "-r", str(folder / "spamd.pid"), "-s", "stderr", "-m", "2", "-H", str(home),
    ], folder / "spamd.log")
    milter.daemons.append(spamd)
    try:
        spamd.wait_for_unix_socket(spamd_socket, 60)
        # Debian's default adds -i 127.0.0.1, which skips loopback clients: not here
        child = Daemon("spamass-milter", [
            "spamass-milter", "-p", str(milter_socket), "-m", "-r", "15",
            "-P", str(folder / "spamass-milter.pid"), "--", "-U", str(spamd_socket),
        ], folder / "spamass-milter.log")
        milter.daemons.append(child)
        child.wait_for_unix_socket(milter_socket, 30)
        milter_socket.chmod(0o666)
    except Exception:
        milter.stop()
        raise
    milter.info["spamd_socket"] = str(spamd_socket)
    return milter
