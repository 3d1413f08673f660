"""A private Postfix instance for tests, started by hand, plus swaks and maildir helpers.

Everything lives under one folder: config (main.cf/master.cf from Debian's,
changed with postconf), queue, data, the mail log and a maildir that receives
every delivered message (virtual(8), all recipients into one ``inbox``). smtpd
listens on a free 127.0.0.1 port, allows XCLIENT from loopback (tests set the
client name/address) and talks to the milters given by ``set_milters``.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from tests.support.processes import (
    Daemon,
    DaemonError,
    free_tcp_port,
    kill_pid_file,
    reachable_dir,
    read_tail,
    tcp_port_accepts,
)

TEST_DOMAINS = ("example.org", "example.com", "example.net", "example.jp", "localhost")


@dataclass
class SwaksResult:
    """What the SMTP client saw: exit status (0 = accepted) and the transcript."""

    exit_code: int
    transcript: str

    @property
    def queue_id(self) -> str | None:
        found = re.search(r"queued as ([0-9A-Za-z]+)", self.transcript)
        return found.group(1) if found else None

    def server_replies(self) -> list[str]:
        """Lines the server sent (swaks marks them ``<-`` or ``<**`` for errors)."""
        return [line.split(" ", 1)[1].strip() for line in self.transcript.splitlines()
                if line.startswith(("<- ", "<-  ", "<** ", "<**"))]


def send_with_swaks(
    port: int,
    *,
    sender: str = "sender@example.com",
    recipients: tuple[str, ...] | list[str] = ("receiver@example.org",),
    headers: dict[str, str] | None = None,
    body: str = "La de da de da.\n",
    helo: str = "delian",
    client_name: str | None = None,
    client_address: str | None = None,
    timeout: float = 60.0,
) -> SwaksResult:
    """One SMTP transaction with swaks; client name/address through XCLIENT."""
    argv = ["swaks", "--server", f"127.0.0.1:{port}", "--helo", helo,
            "--from", sender, "--to", ",".join(recipients), "--body", body,
            "--timeout", str(int(timeout)), "--hide-informational"]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    if client_name is not None:
        argv += ["--xclient-name", client_name]
    if client_address is not None:
        argv += ["--xclient-addr", client_address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10,
                          check=False)
    return SwaksResult(done.returncode, done.stdout + done.stderr)


class Postfix:
    """A running private Postfix; ``stop()`` ends it by its master's PID file."""

    def __init__(self, base: Path) -> None:
        self.folder = reachable_dir(base / "postfix")
        self.config = reachable_dir(self.folder / "etc")
        self.queue = self.folder / "queue"
        self.data = self.folder / "data"
        self.maildir = self.folder / "mail"
        self.maillog = self.folder / "maillog"
        self.port = free_tcp_port()
        self.milters: tuple[str, ...] = ()
        self._daemon: Daemon | None = None
        self._configure()

    # ---------------------------------------------------------- set-up

    def postconf(self, *args: str) -> str:
        done = subprocess.run(["postconf", "-c", str(self.config), *args],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DaemonError(f"postconf {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def _configure(self) -> None:
        shutil.copy("/etc/postfix/master.cf", self.config / "master.cf")
        (self.config / "main.cf").write_text("")
        for folder in (self.queue, self.data, self.maildir):
            folder.mkdir(exist_ok=True)
        owner = pwd.getpwnam("postfix")
        shutil.chown(self.data, "postfix")
        shutil.chown(self.maildir, "postfix", owner.pw_gid)
        self.postconf(
            "-e",
            "compatibility_level=3.6",
            f"queue_directory={self.queue}",
            f"data_directory={self.data}",
            "mail_owner=postfix",
            "setgid_group=postdrop",
            "myhostname=mail.example.com",
            "mydomain=example.com",
            "myorigin=example.com",
            "inet_interfaces=127.0.0.1",
            "inet_protocols=ipv4",
            "mydestination=",
            "mynetworks=127.0.0.0/8",
            f"maillog_file={self.maillog}",
            f"maillog_file_prefixes={self.folder}",
            f"virtual_mailbox_domains={' '.join(TEST_DOMAINS)}",
            f"virtual_mailbox_base={self.maildir}",
            "virtual_mailbox_maps=static:inbox/",
            f"virtual_uid_maps=static:{owner.pw_uid}",
            f"virtual_gid_maps=static:{owner.pw_gid}",
            "virtual_minimum_uid=1",
            "default_transport=virtual",
            "relay_transport=virtual",
            "smtpd_relay_restrictions=permit_mynetworks reject_unauth_destination",
            "smtpd_authorized_xclient_hosts=127.0.0.0/8",
            "milter_protocol=6",
            "milter_default_action=accept",
            "milter_mail_macros=i {auth_author} {auth_type} {auth_authen} "
            "{mail_addr} {mail_host} {mail_mailer}",
            "smtpd_milters=",
            "non_smtpd_milters=",
            "biff=no",
            "append_dot_mydomain=no",
            "smtputf8_enable=no",
            "alias_maps=",
            "alias_database=",
            "local_recipient_maps=",
            "delay_warning_time=0",
        )
        # Debian chroots smtpd/cleanup in /var/spool/postfix: our sockets live elsewhere
        self.postconf("-F", "*/*/chroot = n")
        self.postconf("-MX", "smtp/inet")
        address = f"127.0.0.1:{self.port}"
        self.postconf("-Me", f"{address}/inet={address} inet n - n - - smtpd")
        subprocess.run(["postfix", "-c", str(self.config), "set-permissions"],
                       capture_output=True, check=True)

    # ---------------------------------------------------------- life cycle

    def start(self) -> None:
        # set-permissions already made the queue: skip postfix-script's slow checks
        (self.queue / "quick-start").touch()
        self._daemon = Daemon("postfix", ["postfix", "-c", str(self.config), "start-fg"],
                              self.folder / "start-fg.log")
        self._daemon.wait_until(lambda: tcp_port_accepts(self.port), 30,
                                f"listening on 127.0.0.1:{self.port}", self.maillog)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True,
                       check=False, timeout=30)
        if self._daemon is not None:
            try:
                self._daemon.process.wait(15)
            except subprocess.TimeoutExpired:
                kill_pid_file(self.queue / "pid" / "master.pid")
                self._daemon.stop()

    def set_milters(self, *specs: str) -> None:
        """Make smtpd (and cleanup) talk to these milters, in order; reload if changed."""
        if tuple(specs) == self.milters:
            return
        self.configure(smtpd_milters=" ".join(specs))
        self.milters = tuple(specs)

    def configure(self, **parameters: str) -> None:
        """``postconf -e NAME=VALUE...`` then reload, e.g. ``milter_connect_macros=...``."""
        self.postconf("-e", *(f"{name}={value}" for name, value in parameters.items()))
        self.reload()

    def reload(self) -> None:
        """Reload and wait until no smtpd/cleanup process with the old settings is left."""
        reloads = self._log_count("reload -- version")
        # what "postfix reload" does, without its seconds of integrity checks
        master = int((self.queue / "pid" / "master.pid").read_text().split()[0])
        workers = self._milter_clients(master)
        os.kill(master, signal.SIGHUP)
        deadline = time.monotonic() + 15
        # smtpd/cleanup processes started before the reload keep the old milters: wait
        # until the master logged the reload and every one of them has gone
        while (self._log_count("reload -- version") <= reloads
               or workers & self._milter_clients(master)):
            if time.monotonic() > deadline:
                raise DaemonError(f"postfix did not reload:\n{read_tail(self.maillog)}")
            time.sleep(0.02)

    @staticmethod
    def _milter_clients(master: int) -> set[int]:
        """PIDs of the master's smtpd and cleanup children (the processes talking to milters)."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name = text[text.find("(") + 1 : text.rfind(")")]
            parent = int(text[text.rfind(")") + 2 :].split()[1])
            if parent == master and name in ("smtpd", "cleanup"):
                found.add(int(stat.parent.name))
        return found

    def _log_count(self, text: str) -> int:
        try:
            return self.maillog.read_text(errors="replace").count(text)
        except OSError:
            return 0

    # ---------------------------------------------------------- mail

    def send(self, **kwargs: object) -> SwaksResult:
        """``send_with_swaks`` to this instance (same keywords)."""
        return send_with_swaks(self.port, **kwargs)  # type: ignore[arg-type]

    def delivered(self) -> list[EmailMessage]:
        """Every message delivered so far, oldest first."""
        inbox = self.maildir / "inbox" / "new"
        if not inbox.exists():
            return []
        files = sorted(inbox.iterdir(), key=lambda path: path.stat().st_mtime_ns)
        return [self._parse(path.read_bytes()) for path in files]

    @staticmethod
    def _parse(data: bytes) -> EmailMessage:
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def wait_for_mail(self, queue_id: str, timeout: float = 20.0) -> EmailMessage:
        """The delivered message with this queue id (from its Received: header)."""
        deadline = time.monotonic() + timeout
        marker = f"id {queue_id}".encode()
        inbox = self.maildir / "inbox" / "new"
        while time.monotonic() < deadline:
            if inbox.exists():
                for path in inbox.iterdir():
                    data = path.read_bytes()
                    if marker in data:
                        return self._parse(data)
            time.sleep(0.05)
        raise AssertionError(f"no delivered mail with queue id {queue_id} after {timeout} s;"
                             f" mail log:\n{read_tail(self.maillog)}")

    def log_lines(self, queue_id: str) -> list[str]:
        return [line for line in read_tail(self.maillog, 10**7).splitlines() if queue_id in line]
