"""The install guide (docs/install-debian.md) as steps run inside the test container.

Each ``configure_*`` function does what the guide tells an administrator to do on Debian 12:
edit the packages' own files, start the packaged services with their own units, point
Postfix at mmd's one socket. mmd itself gets no configuration file: detection finds the
children. ``GuideHost`` then sends mail over SMTP (swaks, inside the container, to
127.0.0.1:25) and reads what was delivered and what the journal says.

The container is shared by every system test, so ``restore`` puts back every file the guide
changed and stops what it started (``Backup`` keeps the originals).

Two deviations from a real host, both because the container shares the host's network:
spamd listens on a unix socket instead of 127.0.0.1:783 (another container may hold that
port), and mail is delivered to one virtual mailbox for every recipient of example.org.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.support import probes
from tests.support.container import SystemdContainer
from tests.support.docblocks import script
from tests.support.postfix import SwaksResult
from tests.support.probes import wait_for
from tests.support.real_milters import EICAR, GTUBE, SPAMASS_REJECT
from tests.support.scripted import CHILD as SCRIPTED_CHILD

__all__ = ["EICAR", "GTUBE", "SPAMASS_REJECT", "Backup", "GuideHost", "restore", "set_up"]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "install-debian.md"

MANAGER = "milter-manager.service"
MANAGER_SOCKET_UNIT = "milter-manager.socket"
CHROOT_DROPIN = "/etc/systemd/system/milter-manager.socket.d/postfix-chroot.conf"
CHROOT_EXAMPLE = (
    "/usr/share/doc/milter-manager/examples/milter-manager.socket.d/postfix-chroot.conf"
)
# The socket as seen from the host, and as chrooted smtpd/cleanup name it.
MANAGER_SOCKET = "/var/spool/postfix/milter-manager/milter-manager.sock"
POSTFIX_MILTER_SPEC = "unix:/milter-manager/milter-manager.sock"

MAILBOX = "/var/mail/vhosts/inbox/new"
DKIM_SELECTOR = "mail"
DKIM_DOMAIN = "example.com"
BRANCH_NETWORK = "203.0.113.0/24"  # documentation addresses, only ever XCLIENT data

SPAMD_SOCKET = "/run/spamd/spamd.sock"
SPAMASS_SOCKET = "/var/spool/postfix/spamass/spamass.sock"
CLAMD_SOCKET = "/run/clamav/clamd.ctl"
CLAMAV_MILTER_SOCKET = "/run/clamav/clamav-milter.ctl"
OPENDKIM_SOCKET = "/run/opendkim/opendkim.sock"

# The greylist stand-in: a scripted libmilter child run as milter-greylist.service, with the
# configuration file milter-greylist would have, so detection takes it for milter-greylist
# and gives it the reference's default conditions (S25R, Remote Network, ...).
GREYLIST_UNIT = "milter-greylist.service"
GREYLIST_CONFIG = "/etc/milter-greylist/greylist.conf"
GREYLIST_SOCKET = "/run/milter-greylist/milter-greylist.sock"
GREYLIST_SCRIPT = "/usr/local/lib/mmd-guide/scripted_milter.py"
GREYLIST_RECORD = "/var/lib/milter-greylist/calls.jsonl"
GREYLIST_REPLY = ("451", "4.7.1", "Greylisting in action, please come back later")

# What the guide tells the administrator to write; docs/install-debian.md shows the same lines
# (a test compares them).
SPAMASS_OPTIONS = "-u spamass-milter -m -r 15"
SPAMASSASSIN_NO_DNS = ("skip_rbl_checks 1", "dns_available no")
OPENDKIM_SETTINGS = (
    f"Domain {DKIM_DOMAIN}",
    f"Selector {DKIM_SELECTOR}",
    f"KeyFile /etc/dkimkeys/{DKIM_SELECTOR}.private",
    f"InternalHosts 127.0.0.1,{BRANCH_NETWORK}",
)
POSTFIX_MILTER_SETTINGS = (
    "milter_protocol = 6",
    "milter_default_action = tempfail",
    "milter_mail_macros = {auth_author} {auth_type} {auth_authen}",
    f"smtpd_milters = {POSTFIX_MILTER_SPEC}",
    f"non_smtpd_milters = {POSTFIX_MILTER_SPEC}",
)

# Files the guide edits in place: their original text is put back afterwards (or they are
# removed, when they did not exist: Debian's "No configuration" Postfix has no main.cf).
EDITED_FILES = (
    "/etc/postfix/main.cf",
    "/etc/spamassassin/local.cf",
    "/etc/default/spamd",
    "/etc/default/spamass-milter",
    "/etc/clamav/clamav-milter.conf",
    "/etc/opendkim.conf",
)
# Files and folders the guide creates: removed afterwards.
CREATED_PATHS = (
    CHROOT_DROPIN,
    "/etc/systemd/system/spamd.service.d/guide-socket.conf",
    "/etc/systemd/system/clamav-daemon.service.d/local-signatures.conf",
    "/var/lib/clamav/local.ndb",
    f"/etc/dkimkeys/{DKIM_SELECTOR}.private",
    f"/etc/dkimkeys/{DKIM_SELECTOR}.txt",
    "/etc/milter-greylist",
    f"/etc/systemd/system/{GREYLIST_UNIT}",
    "/usr/local/lib/mmd-guide",
    "/var/lib/private/milter-greylist",  # StateDirectory= of a DynamicUser= service
    "/var/lib/milter-greylist",
    "/var/mail/vhosts",
)
# Packaged services the guide starts (restarted with their original files afterwards).
PACKAGED_SERVICES = ("spamd", "spamass-milter", "clamav-daemon", "clamav-milter", "opendkim")


@dataclass
class Backup:
    """Original contents of the files the guide edits (None: the file did not exist)."""

    files: dict[str, str | None] = field(default_factory=dict)
    clamav_milter_masked: bool = False
    manager_socket_enabled: bool = False

    def save(self, c: SystemdContainer) -> None:
        for path in EDITED_FILES:
            if c.run(["test", "-f", path], check=False).returncode == 0:
                self.files[path] = c.read_file(path)
            else:
                self.files[path] = None
        state = c.run(["systemctl", "is-enabled", "clamav-milter"], check=False).stdout
        self.clamav_milter_masked = state.strip() == "masked"
        state = c.run(["systemctl", "is-enabled", MANAGER_SOCKET_UNIT], check=False).stdout
        self.manager_socket_enabled = state.strip() == "enabled"


# ------------------------------------------------------------------------------- the steps


def configure_spamassassin(c: SystemdContainer) -> None:
    """The guide's blocks (spamd without DNS; spamass-milter -m -r 15 without Debian's
    -i 127.0.0.1), then the container's deviation: spamd on a unix socket, not 127.0.0.1:783."""
    run_guide_blocks(c, "spamassassin")
    options = f'OPTIONS="{SPAMASS_OPTIONS}"'
    assert options in c.read_file("/etc/default/spamass-milter").splitlines()
    c.run(["sed", "-i", "s|^OPTIONS=.*|OPTIONS=\"--create-prefs --max-children 2 "
           f"--helper-home-dir --socketpath={SPAMD_SOCKET} --socketmode=0666\"|",
           "/etc/default/spamd"])
    c.write_file("/etc/systemd/system/spamd.service.d/guide-socket.conf",
                 "[Service]\nRuntimeDirectory=spamd\n")
    c.run(["sed", "-i", f"s|^OPTIONS=.*|OPTIONS=\"{SPAMASS_OPTIONS} -- -U {SPAMD_SOCKET}\"|",
           "/etc/default/spamass-milter"])


def configure_clamav(c: SystemdContainer) -> None:
    """The guide's blocks: reject infected mail, add headers, a local EICAR signature."""
    run_guide_blocks(c, "clamav")
    # the test container masks clamav-milter (its boot would wait for clamd)
    c.run(["systemctl", "unmask", "clamav-milter"])


def configure_opendkim(c: SystemdContainer) -> None:
    """The guide's block: sign mail from example.com for clients in InternalHosts.

    Besides this host, InternalHosts names a "branch office" network (TEST-NET-3, which the
    Remote Network condition calls remote): one message from there meets all the children.
    """
    run_guide_blocks(c, "opendkim")


def install_greylist_standin(c: SystemdContainer) -> None:
    """A scripted child under milter-greylist's unit name, socket and configuration file."""
    c.write_file(GREYLIST_SCRIPT, SCRIPTED_CHILD.read_text(),
                 mode=0o755)
    c.write_file(GREYLIST_CONFIG, f'# milter-greylist stand-in\nsocket "{GREYLIST_SOCKET}"\n')
    script = json.dumps({
        "name": "milter-greylist",
        "stages": {"envrcpt": {"verdict": "tempfail", "reply": list(GREYLIST_REPLY)}},
    })
    # systemd unquotes ExecStart= like a shell: single quotes keep the JSON one argument
    c.write_file(f"/etc/systemd/system/{GREYLIST_UNIT}", "\n".join([
        "[Unit]",
        "Description=milter-greylist stand-in (scripted libmilter child for tests)",
        "",
        "[Service]",
        "DynamicUser=yes",
        "RuntimeDirectory=milter-greylist",
        "StateDirectory=milter-greylist",
        f"ExecStart=/usr/bin/python3 {GREYLIST_SCRIPT} --socket unix:{GREYLIST_SOCKET} "
        f"--record {GREYLIST_RECORD} --script '{script}'",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]))


def configure_postfix(c: SystemdContainer) -> None:
    """The test container's own settings (loopback only, virtual mailbox, XCLIENT), then the
    guide's block: main.cf for the "No configuration" install, with mmd as the only milter."""
    c.run(["touch", "/etc/postfix/main.cf"])
    if c.run(["id", "vmail"], check=False).returncode != 0:
        c.run(["useradd", "--system", "--home-dir", "/var/mail/vhosts", "--shell",
               "/usr/sbin/nologin", "vmail"])
    c.run(["install", "-d", "-o", "vmail", "-g", "vmail", "/var/mail/vhosts"])
    uid = c.run(["id", "-u", "vmail"]).stdout.strip()
    gid = c.run(["id", "-g", "vmail"]).stdout.strip()
    postconf(
        c,
        "myhostname = mail.example.com",
        "mydomain = example.com",
        "myorigin = $mydomain",
        "mydestination = $myhostname, localhost",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "mynetworks = 127.0.0.0/8",
        "virtual_mailbox_domains = example.org",
        "virtual_mailbox_base = /var/mail/vhosts",
        "virtual_mailbox_maps = static:inbox/",
        f"virtual_uid_maps = static:{uid}",
        f"virtual_gid_maps = static:{gid}",
        "smtpd_authorized_xclient_hosts = 127.0.0.1",
    )
    run_guide_blocks(c, "postfix")


def postconf(c: SystemdContainer, *settings: str) -> None:
    c.run(["postconf", "-e", *settings])


def run_guide_blocks(c: SystemdContainer, value: str, cwd: Path | str = "/",
                     timeout: float = 600) -> None:
    """The guide's shell blocks tagged ``run=value``, verbatim and in order, as root in ``cwd``."""
    c.run(["bash", "-c", f"cd {cwd} && {{\n{script(GUIDE, 'run', value)}}}"], timeout=timeout)


def enable_chroot_socket(c: SystemdContainer) -> None:
    """The guide's block: the shipped drop-in puts mmd's socket below /var/spool/postfix."""
    run_guide_blocks(c, "chroot")


def start_services(c: SystemdContainer) -> None:
    """Start everything by its own unit; mmd only through its socket unit."""
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "stop", MANAGER, MANAGER_SOCKET_UNIT])
    c.run(["systemctl", "reset-failed", MANAGER, MANAGER_SOCKET_UNIT], check=False)
    for unit in PACKAGED_SERVICES:
        c.run(["systemctl", "enable", unit], timeout=120)
    c.run(["systemctl", "enable", GREYLIST_UNIT])
    c.run(["systemctl", "restart", GREYLIST_UNIT], timeout=120)
    for step in ("spamassassin-start", "clamav-start", "opendkim-start"):
        run_guide_blocks(c, step, timeout=180)
    wait_for_sockets(c, SPAMD_SOCKET, CLAMD_SOCKET, timeout=90)
    wait_for_sockets(c, SPAMASS_SOCKET, CLAMAV_MILTER_SOCKET, OPENDKIM_SOCKET, GREYLIST_SOCKET)
    c.run(["systemctl", "enable", "--now", MANAGER_SOCKET_UNIT])
    wait_for_sockets(c, MANAGER_SOCKET)
    c.run(["systemctl", "restart", "postfix"], timeout=120)
    host = GuideHost(c)
    wait_for(host.smtp_listening, "Postfix on 127.0.0.1:25 (is the host's port 25 taken? "
             "the container shares the host's network)", timeout=30)
    # the probe's SMTP connection made smtpd connect to mmd, which started it: stop it again,
    # so that the first mail shows socket activation
    c.run(["systemctl", "stop", MANAGER], timeout=120)


def wait_for_sockets(c: SystemdContainer, *paths: str, timeout: float = 30.0) -> None:
    def exists(path: str) -> Callable[[], bool]:
        return lambda: c.run(["test", "-S", path], check=False).returncode == 0

    for path in paths:
        wait_for(exists(path), f"the socket {path}", timeout)


def set_up(c: SystemdContainer) -> Backup:
    """Every step of the guide; returns what ``restore`` needs."""
    backup = Backup()
    backup.save(c)
    try:
        enable_chroot_socket(c)
        configure_spamassassin(c)
        configure_clamav(c)
        configure_opendkim(c)
        install_greylist_standin(c)
        configure_postfix(c)
        start_services(c)
    except BaseException:
        restore(c, backup)
        raise
    return backup


def restore(c: SystemdContainer, backup: Backup) -> None:
    """Put the container back as the other system tests expect it; never raises."""

    def run(*argv: str) -> Callable[[], object]:
        return lambda: c.run(list(argv), check=False, timeout=120)

    def put_back(path: str, text: str | None) -> Callable[[], object]:
        if text is None:
            return run("rm", "-f", path)
        return lambda: c.write_file(path, text)

    steps = [
        run("systemctl", "stop", "postfix", MANAGER, MANAGER_SOCKET_UNIT),
        run("systemctl", "disable", "--now", GREYLIST_UNIT),
        run("systemctl", "stop", "clamav-milter", "clamav-daemon"),
        *(put_back(path, text) for path, text in backup.files.items()),
        run("rm", "-rf", *CREATED_PATHS),
    ]
    if backup.clamav_milter_masked:
        steps.append(run("systemctl", "mask", "clamav-milter"))
    if not backup.manager_socket_enabled:
        steps.append(run("systemctl", "disable", MANAGER_SOCKET_UNIT))
    steps += [
        run("systemctl", "daemon-reload"),
        run("systemctl", "restart", "spamd", "spamass-milter", "opendkim"),
        run("systemctl", "reset-failed"),
        run("systemctl", "start", MANAGER_SOCKET_UNIT),
    ]
    for step in steps:
        try:
            step()
        except Exception as error:  # keep going: the next step may still help
            print(f"guide restore step failed: {error}")


# ------------------------------------------------------------------------------- using it


class GuideHost:
    """Mail in (swaks over SMTP), mail out (the mailbox), and mmd's journal."""

    def __init__(self, c: SystemdContainer) -> None:
        self.c = c
        # mmd's ActiveState before and after the first mail (socket activation)
        self.first_mail_states: tuple[str, str] = ("", "")

    def smtp_listening(self) -> bool:
        probe = ("import socket; s = socket.create_connection(('127.0.0.1', 25), 2); "
                 "print(s.recv(100).decode())")
        done = self.c.run(["python3", "-c", probe], check=False)
        return done.returncode == 0 and done.stdout.startswith("220 mail.example.com")

    def send(
        self,
        body: str = "La de da de da.\n",
        *,
        client_name: str | None = None,
        client_address: str | None = None,
        sender: str = "sender@example.com",
        recipient: str = "receiver@example.org",
    ) -> SwaksResult:
        """One SMTP transaction to 127.0.0.1:25; the client's identity through XCLIENT."""
        argv = ["swaks", "--server", "127.0.0.1:25", "--helo", "client.example.net",
                "--from", sender, "--to", recipient, "--body", body,
                "--timeout", "60", "--hide-informational"]
        if client_name is not None:
            argv += ["--xclient-name", client_name]
        if client_address is not None:
            argv += ["--xclient-addr", client_address]
        done = self.c.run(argv, check=False, timeout=90)
        return SwaksResult(done.returncode, done.stdout + done.stderr)

    def delivered(self, result: SwaksResult, timeout: float = 20.0) -> EmailMessage:
        """The message that swaks transaction queued, once delivered to the mailbox."""
        assert result.exit_code == 0 and result.queue_id, (
            f"the mail was not accepted:\n{result.transcript}"
        )
        marker = f"with ESMTP id {result.queue_id}"
        found: list[str] = []

        def arrived() -> bool:
            done = self.c.run(["grep", "-rlF", "--", marker, MAILBOX], check=False)
            found[:] = done.stdout.split()
            return bool(found)

        wait_for(arrived, f"delivery of {result.queue_id}\n{self.mail_log()}", timeout)
        data = self.c.run(["cat", found[0]]).stdout
        message = email.message_from_string(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def mail_log(self) -> str:
        return self.c.run(["journalctl", "-t", "postfix/smtpd", "-t", "postfix/cleanup",
                           "-t", "postfix/virtual", "-n", "30", "--no-pager", "-o", "cat"],
                          check=False).stdout

    def journal_cursor(self) -> str:
        return probes.journal_cursor(self.c)

    def manager_entries(self, cursor: str, **matches: str) -> list[dict[str, Any]]:
        """milter-manager.service's own entries after ``cursor`` whose fields equal ``matches``."""
        return probes.manager_entries(self.c, cursor, _SYSTEMD_UNIT=MANAGER, **matches)

    def wait_for_session_ends(self, cursor: str, count: int) -> None:
        """Until at least ``count`` sessions after ``cursor`` ended and none is still open.

        mmd logs a session's entries when Postfix closes the milter connection, which may be
        after the SMTP client saw its reply.
        """

        def ended() -> bool:
            entries = self.manager_entries(cursor)
            seen = {entry["MMD_SESSION_ID"] for entry in entries if entry.get("MMD_SESSION_ID")}
            ends = {entry["MMD_SESSION_ID"] for entry in entries
                    if entry.get("MMD_EVENT") == "session-end"}
            return len(ends) >= count and seen <= ends

        wait_for(ended, f"{count} session-end entries in mmd's journal", timeout=20)

    def greylist_calls(self) -> list[dict[str, Any]]:
        done = self.c.run(["cat", GREYLIST_RECORD], check=False)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def postfix_checksum(self) -> str:
        return self.c.run("find /etc/postfix -type f | sort | xargs sha256sum").stdout

    def unit(self, unit: str, *properties: str) -> dict[str, str]:
        args = [f"-p{name}" for name in properties]
        output = self.c.run(["systemctl", "show", *args, unit]).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    @contextlib.contextmanager
    def milter_default_action(self, action: str) -> Iterator[None]:
        """Postfix's ``milter_default_action`` set to ``action`` for a while, then as the guide
        says (tempfail)."""
        postconf(self.c, f"milter_default_action = {action}")
        self.reload_postfix()
        try:
            yield
        finally:
            postconf(self.c, "milter_default_action = tempfail")
            self.reload_postfix()

    def reload_postfix(self) -> None:
        """``systemctl reload postfix``, then wait until smtpd processes with old settings end."""
        old = set(self.c.run(["pgrep", "-x", "smtpd"], check=False).stdout.split())
        self.c.run(["systemctl", "reload", "postfix"], timeout=60)
        wait_for(lambda: not old & set(self.c.run(["pgrep", "-x", "smtpd"],
                                                  check=False).stdout.split()),
                 "old smtpd processes to finish after the Postfix reload")
