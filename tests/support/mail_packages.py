"""Debian's real child milters, set up in the shared system-test container and put back after.

The container boots with spamass-milter and opendkim running on their packaged configs and
clamav-milter masked (its SysV script waits for clamd, which has no signatures). For the
detection acceptance tests the three must really answer:

- clamd gets a one-line EICAR body signature and a drop-in that empties the unit's
  ``ConditionPathExistsGlob=`` (no main.cvd/daily.cvd offline), then clamav-milter is
  unmasked and started;
- opendkim signs for ``example.com`` with a key from opendkim-genkey, for clients in
  ``InternalHosts`` (TEST-NET-3 below, a "remote" address, so spamass-milter's default
  conditions apply to the same session).

``restore()`` undoes every change, so other system tests see the container as booted.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support import probes
from tests.support.container import SystemdContainer

SERVICE = "milter-manager.service"
SOCKET_UNIT = "milter-manager.socket"
MANAGER_SOCKET = "/run/milter-manager/milter-manager.sock"

OPENDKIM_CONF = "/etc/opendkim.conf"
OPENDKIM_BACKUP = "/var/tmp/mmd-sysdetect-opendkim.conf"
OPENDKIM_KEYS = "/etc/opendkim/mmd-test-keys"
DKIM_DOMAIN = "example.com"
DKIM_SELECTOR = "mmdtest"
# A client address that the "Remote Network" condition calls remote (not RFC 1918, not
# loopback: Debian's spamass-milter ignores 127.0.0.1) and that opendkim signs for.
CLIENT_ADDRESS = "203.0.113.7"

CLAMD_SIGNATURE = "/var/lib/clamav/mmd-test.ndb"
CLAMD_DROPIN = "/run/systemd/system/clamav-daemon.service.d/mmd-test-no-cvd.conf"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

OPENDKIM_ADDITIONS = f"""
# Added by mmd's system tests (tests/support/mail_packages.py)
Domain\t\t\t{DKIM_DOMAIN}
Selector\t\t{DKIM_SELECTOR}
KeyFile\t\t\t{OPENDKIM_KEYS}/{DKIM_SELECTOR}.private
InternalHosts\t\t127.0.0.1,203.0.113.0/24
"""

POSTFIX_CHECKSUM = (
    "find /etc/postfix -printf '%p %m %u %g %l\\n' | sort; "
    "find /etc/postfix -type f -print0 | sort -z | xargs -0 sha256sum"
)


@dataclass
class MailHost:
    """The container with its real child milters configured; one per test module."""

    c: SystemdContainer
    masked_clamav_milter: bool = False
    undo: list[Callable[[], None]] = field(default_factory=list)

    # -- set up / put back ---------------------------------------------------------------

    def set_up(self) -> None:
        for unit in ("opendkim.service", "spamass-milter.service", "spamd.service"):
            state = self.c.run(["systemctl", "is-active", unit], check=False).stdout.strip()
            assert state == "active", f"{unit} is {state!r} in the container, expected active"
        self._set_up_opendkim()
        self._set_up_clamav()
        self.c.run(["systemctl", "start", SOCKET_UNIT, SERVICE], timeout=90)

    def _set_up_opendkim(self) -> None:
        c = self.c
        c.run(["cp", "-a", OPENDKIM_CONF, OPENDKIM_BACKUP])
        self.undo.append(self.restore_opendkim_conf)
        c.run(
            f"mkdir -p {OPENDKIM_KEYS} && "
            f"opendkim-genkey -D {OPENDKIM_KEYS} -d {DKIM_DOMAIN} -s {DKIM_SELECTOR} && "
            f"chown -R opendkim:opendkim {OPENDKIM_KEYS} && chmod 0700 {OPENDKIM_KEYS}"
        )
        c.run(f"cat >> {OPENDKIM_CONF}", input=OPENDKIM_ADDITIONS)
        self.undo.append(self._remove_keys)
        c.run(["systemctl", "restart", "opendkim.service"])

    def _remove_keys(self) -> None:
        self.c.run(["rm", "-rf", OPENDKIM_KEYS], check=False)

    def _set_up_clamav(self) -> None:
        c = self.c
        hexed = EICAR.encode().hex()
        c.write_file(CLAMD_SIGNATURE, f"Test.EICAR:0:*:{hexed}\n")
        c.write_file(CLAMD_DROPIN, "[Unit]\nConditionPathExistsGlob=\n")
        state = c.run(["systemctl", "is-enabled", "clamav-milter.service"], check=False)
        self.masked_clamav_milter = state.stdout.strip() == "masked"
        self.undo.append(self._restore_clamav)
        if self.masked_clamav_milter:
            c.run(["systemctl", "unmask", "clamav-milter.service"])
        c.run(["systemctl", "daemon-reload"])
        c.run(["systemctl", "start", "clamav-daemon.service"], timeout=120)
        c.run(["systemctl", "start", "clamav-milter.service"], timeout=120)

    def _restore_clamav(self) -> None:
        c = self.c
        c.run(["systemctl", "stop", "clamav-milter.service", "clamav-daemon.service"],
              check=False, timeout=120)
        if self.masked_clamav_milter:
            c.run(["systemctl", "mask", "clamav-milter.service"], check=False)
        c.run(["rm", "-f", CLAMD_SIGNATURE, CLAMD_DROPIN], check=False)
        c.run(["systemctl", "daemon-reload"], check=False)
        c.run(["systemctl", "reset-failed", "clamav-milter.service", "clamav-daemon.service"],
              check=False)

    def restore_opendkim_conf(self) -> None:
        """The packaged /etc/opendkim.conf back (also after a test put a folder there)."""
        c = self.c
        c.run(["rm", "-rf", OPENDKIM_CONF])
        c.run(["cp", "-a", OPENDKIM_BACKUP, OPENDKIM_CONF])
        c.run(["systemctl", "enable", "--now", "opendkim.service"], check=False)
        c.run(["systemctl", "restart", "opendkim.service"], check=False)

    def restore(self) -> None:
        errors = []
        for step in reversed(self.undo):
            try:
                step()
            except Exception as error:  # put back as much as possible, then report
                errors.append(error)
        self.undo.clear()
        # Other tests expect the daemon as they left it: reload it with the packaged set.
        self.c.run(["systemctl", "try-reload-or-restart", SERVICE], check=False, timeout=130)
        if errors:
            raise errors[0]

    # -- asking it -----------------------------------------------------------------------

    def postfix_checksum(self) -> str:
        return self.c.run(POSTFIX_CHECKSUM).stdout

    def show_config(self, *options: str) -> str:
        result = self.c.run(["/usr/sbin/milter-manager", "--show-config", *options])
        return result.stdout

    def reload(self) -> None:
        self.c.run(["systemctl", "start", SOCKET_UNIT, SERVICE], timeout=90)
        self.c.run(["systemctl", "reload", SERVICE], timeout=130)

    def session(self, *options: str) -> str:
        """One SMTP session through mmd's socket, as user postfix; the output message."""
        command = [
            "milter-test-server", "-s", f"unix:{MANAGER_SOCKET}",
            "--connect-address", CLIENT_ADDRESS, "--output-message",
            "-f", f"sender@{DKIM_DOMAIN}", "-r", "receiver@example.org",
            "-h", f"From: <sender@{DKIM_DOMAIN}>", "-h", "To: <receiver@example.org>",
            "-h", "Subject: detection acceptance", "-b", "Hello from the test bed.\n",
            *options,
        ]
        result = self.c.run(command, user="postfix", timeout=120, check=False)
        assert result.returncode == 0, (
            f"`{shlex.join(command)}` exited with {result.returncode}\n"
            f"{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def journal_cursor(self) -> str:
        return probes.journal_cursor(self.c)

    def manager_entries(self, cursor: str) -> list[dict[str, Any]]:
        """Journal entries of milter-manager.service after ``cursor`` (filtered here: journalctl
        252 ignores matches combined with --after-cursor)."""
        output = self.c.run(["journalctl", f"--after-cursor={cursor}", "-o", "json", "--all",
                             "--no-pager"]).stdout
        found = []
        for line in output.splitlines():
            if line.strip():
                entry = json.loads(line)
                if entry.get("_SYSTEMD_UNIT") == SERVICE or entry.get("UNIT") == SERVICE:
                    found.append(entry)
        return found

    def verdicts_after(self, cursor: str, timeout: float = 10.0) -> dict[str, str]:
        """MMD_MILTER -> MMD_STATUS of the milter-verdict entries of the session after
        ``cursor`` (waits for its session-end entry)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.manager_entries(cursor)
            if any(e.get("MMD_EVENT") == "session-end" for e in entries):
                return {
                    str(e["MMD_MILTER"]): str(e.get("MMD_STATUS"))
                    for e in entries
                    if e.get("MMD_EVENT") == "milter-verdict"
                }
            if time.monotonic() > deadline:
                raise AssertionError("no session-end entry in the journal:\n"
                                     + "\n".join(str(e.get("MESSAGE")) for e in entries))
            time.sleep(0.1)

    def main_pid(self) -> int:
        output = self.c.run(["systemctl", "show", "-pMainPID", "--value", SERVICE]).stdout
        return int(output.strip())


def milter_blocks(show_config: str) -> dict[str, list[str]]:
    """The ``[[milter]]`` blocks of --show-config output by name: their lines, comments kept."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in show_config.splitlines():
        if line == "[[milter]]":
            current = []
            continue
        if line.startswith("[") or (current is not None and not line.strip()):
            if current is not None:
                name = next(x for x in current if x.startswith("name = "))
                blocks[json.loads(name.removeprefix("name = "))] = current
            current = None
            continue
        if current is not None:
            current.append(line)
    if current is not None:
        name = next(x for x in current if x.startswith("name = "))
        blocks[json.loads(name.removeprefix("name = "))] = current
    return blocks


def origin_of(block: list[str], key: str) -> str:
    """The comment line above ``key = ...`` in a --show-config block, without '# '."""
    for index, line in enumerate(block):
        if line.startswith(f"{key} = "):
            assert index > 0 and block[index - 1].startswith("# "), block
            return block[index - 1].removeprefix("# ")
    raise AssertionError(f"no {key} in {block}")
