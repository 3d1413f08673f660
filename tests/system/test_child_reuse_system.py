"""Child connections kept between SMTP sessions (``reuse_child_connections``, on as shipped),
with the real parts: Postfix -> mmd -> spamass-milter, clamav-milter, opendkim and a scripted
libmilter child, on the install guide's host.

What a person sees is checked on every mail (the verdict, each child's headers in the
delivered message), and that the connections really were kept, from the children's side:

* the scripted child (``reuse-probe``, a python3-milter script run as
  ``mmd-reuse-probe.service`` and added with a drop-in as docs/configuration.md shows)
  records one ``negotiate`` per connection (libmilter negotiates once per connection) and one
  ``connect`` per SMTP session: kept connections show as fewer negotiations than sessions;
* spamass-milter's accepted connections, from ``ss``: between mails mmd holds one connection
  to its socket, the same one mail after mail (with reuse off mmd holds none between mails).

opendkim and clamav-milter answer "accept" at end-of-message, after which libmilter does not
take a new CONNECT on the connection (mmd.engine.reuse): theirs are closed after each session,
as before, and only their headers are checked.

Mail from this host (127.0.0.1) is one milter session per SMTP connection; mail "from" a
remote server (XCLIENT, for spamass-milter's Remote Network condition) is two: Postfix ends
the first (connect, helo) when XCLIENT changes the client, and libmilter, past HELO, cannot
take a CONNECT again: the scripted child gets a fresh connection per remote mail, while
spamass-milter, not applied to the local first session, keeps its one connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.container import SystemdContainer
from tests.support.guide_setup import (
    GTUBE,
    MANAGER,
    SPAMASS_REJECT,
    SPAMASS_SOCKET,
    GuideHost,
    wait_for_sockets,
)
from tests.support.postfix import SwaksResult
from tests.support.probes import wait_for
from tests.support.scripted import CHILD as SCRIPTED_CHILD

pytestmark = pytest.mark.system

PROBE = "reuse-probe"
PROBE_UNIT = "mmd-reuse-probe.service"
PROBE_SCRIPT = "/usr/local/lib/mmd-reuse-probe/scripted_milter.py"
PROBE_SOCKET = "/run/mmd-reuse-probe/probe.sock"
PROBE_RECORD = "/var/lib/mmd-reuse-probe/calls.jsonl"
PROBE_HEADER = ("X-Reuse-Probe", "seen")
PROBE_REPLY = ("550", "5.7.1", "Refused by the reuse probe")
REFUSED = "refused@example.org"  # the probe rejects this recipient at RCPT
DROP_IN = "/etc/milter-manager/milter-manager.d/50-reuse-probe.toml"
CREATED = (DROP_IN, f"/etc/systemd/system/{PROBE_UNIT}", "/usr/local/lib/mmd-reuse-probe",
           "/var/lib/private/mmd-reuse-probe", "/var/lib/mmd-reuse-probe")
SMTP_STEPS = Path(__file__).resolve().parents[1] / "support" / "smtp_steps.py"

MX = ("mx.example.net", "203.0.113.6")  # a remote mail server (XCLIENT data only)
MAILS = 4
PARALLEL = 3
ROUNDS = 3


# ------------------------------------------------------------------------------ the host


def install_probe(c: SystemdContainer) -> None:
    """The scripted child as a service, and mmd told about it with a drop-in."""
    c.write_file(PROBE_SCRIPT, SCRIPTED_CHILD.read_text(), mode=0o755)
    script = json.dumps({
        "name": PROBE,
        "stages": {
            "envrcpt": {"verdict": "reject", "reply": list(PROBE_REPLY), "match": REFUSED},
            "eom": {"add_header": [list(PROBE_HEADER)]},
        },
    })
    c.write_file(f"/etc/systemd/system/{PROBE_UNIT}", "\n".join([
        "[Unit]",
        "Description=scripted libmilter child for the connection reuse system test",
        "",
        "[Service]",
        "DynamicUser=yes",
        "RuntimeDirectory=mmd-reuse-probe",
        "StateDirectory=mmd-reuse-probe",
        f"ExecStart=/usr/bin/python3 {PROBE_SCRIPT} --socket unix:{PROBE_SOCKET} "
        f"--record {PROBE_RECORD} --script '{script}'",
        "",
    ]))
    c.write_file(DROP_IN, f'[[milter]]\nname = "{PROBE}"\n'
                          f'connection_spec = "unix:{PROBE_SOCKET}"\n')
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "start", PROBE_UNIT])
    wait_for_sockets(c, PROBE_SOCKET)


def remove_probe(c: SystemdContainer) -> None:
    for argv in (["systemctl", "stop", PROBE_UNIT], ["rm", "-rf", *CREATED],
                 ["systemctl", "daemon-reload"], ["systemctl", "reset-failed"]):
        c.run(argv, check=False, timeout=120)
    if c.run(["systemctl", "is-active", MANAGER], check=False).stdout.strip() == "active":
        c.run(["systemctl", "reload", MANAGER], check=False, timeout=130)


@pytest.fixture(scope="module")
def host(guide_host: SystemdContainer) -> Iterator[GuideHost]:
    c = guide_host
    install_probe(c)
    try:
        if c.run(["systemctl", "is-active", MANAGER], check=False).stdout.strip() == "active":
            c.run(["systemctl", "reload", MANAGER], timeout=130)
        host = GuideHost(c)
        # the first mail starts mmd through its socket when it is not running (and warms
        # spamd up); the probe is among its children
        assert header(host.delivered(host.send(), timeout=60), PROBE_HEADER[0]) == "seen"
        assert f'name = "{PROBE}"' in c.run(["milter-manager", "--show-config"]).stdout
        yield host
    finally:
        remove_probe(c)


# ------------------------------------------------------------------------------ evidence


@dataclass
class Probe:
    """What the scripted child recorded: one JSON line per libmilter callback."""

    c: SystemdContainer

    def events(self) -> list[dict[str, Any]]:
        text = self.c.run(["cat", PROBE_RECORD], check=False).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def count(self, event: str) -> int:
        return sum(1 for entry in self.events() if entry["event"] == event)

    def connections(self) -> int:
        """Connections the child accepted: libmilter negotiates once per connection."""
        return self.count("negotiate")

    def sessions(self) -> list[list[dict[str, Any]]]:
        """The callbacks of each SMTP session, from its connect to its last callback."""
        found: list[list[dict[str, Any]]] = []
        for entry in self.events():
            if entry["event"] == "connect":
                found.append([])
            if found and entry["event"] not in ("negotiate", "close"):
                found[-1].append(entry)
        return found


def unix_connections(c: SystemdContainer) -> dict[int, tuple[str, int, str]]:
    """Established unix stream sockets: inode -> (local path, peer inode, processes)."""
    found = {}
    for line in c.run(["ss", "-xpH", "state", "established"]).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[0] == "u_str":
            found[int(fields[4])] = (fields[3], int(fields[6]), " ".join(fields[7:]))
    return found


def kept_by_mmd(c: SystemdContainer, path: str) -> set[int]:
    """The inodes of mmd's ends of the connections a child accepted on ``path``."""
    sockets = unix_connections(c)
    return {peer for local, peer, _ in sockets.values()
            if local == path and '"milter-manager"' in sockets.get(peer, ("", 0, ""))[2]}


def header(message: EmailMessage, name: str) -> str:
    value = message[name]
    assert value is not None, f"no {name} header:\n{message}"
    return str(value)


def assert_local_mail_filtered(message: EmailMessage) -> None:
    """A mail from this host: signed by opendkim, scanned by clamav-milter, seen by the
    probe (spamass-milter does not apply to local clients)."""
    assert "d=example.com;" in header(message, "DKIM-Signature")
    assert header(message, "X-Virus-Status") == "Clean"
    assert header(message, PROBE_HEADER[0]) == PROBE_HEADER[1]
    assert message.get_all(PROBE_HEADER[0]) == [PROBE_HEADER[1]]  # once, not once per session


def assert_remote_mail_filtered(message: EmailMessage) -> None:
    assert_local_mail_filtered(message)
    assert header(message, "X-Spam-Status").startswith("No, score="), message
    assert header(message, "X-Spam-Checker-Version").startswith("SpamAssassin ")


def settle(host: GuideHost, cursor: str, sessions: int) -> None:
    """Until ``sessions`` milter sessions after ``cursor`` ended in mmd: their connections
    are kept (or closed) by then."""
    host.wait_for_session_ends(cursor, sessions)


def local_mail(host: GuideHost, **options: Any) -> SwaksResult:
    cursor = host.journal_cursor()
    result = host.send(**options)
    settle(host, cursor, 1)
    return result


def remote_mail(host: GuideHost, body: str = "La de da de da.\n") -> SwaksResult:
    cursor = host.journal_cursor()
    result = host.send(body, client_name=MX[0], client_address=MX[1])
    settle(host, cursor, 2)  # XCLIENT: two milter sessions
    return result


def smtp_steps(host: GuideHost, *argv: str, sessions: int = 1) -> SwaksResult:
    """tests/support/smtp_steps.py's conversation ``argv`` (a mode and its arguments), run
    inside the container; ``sessions``: how many milter sessions it makes."""
    cursor = host.journal_cursor()
    done = host.c.run(["python3", "-", *argv], input=SMTP_STEPS.read_text(), check=False,
                      timeout=90)
    settle(host, cursor, sessions)
    return SwaksResult(done.returncode, done.stdout + done.stderr)


def errors(host: GuideHost, cursor: str) -> list[dict[str, Any]]:
    """mmd's milter-error entries after ``cursor`` (a child failed in a session)."""
    return host.manager_entries(cursor, MMD_EVENT="milter-error")


def settled(host: GuideHost, cursor: str, event: str, quiet: float = 3.0) -> None:
    """Until mmd logged ``event`` after ``cursor`` and then nothing more of it for ``quiet``
    seconds (systemd reports a restart as several changes; each is a live update)."""
    last = {"count": -1.0, "since": 0.0}

    def still() -> bool:
        count = len(host.manager_entries(cursor, MMD_EVENT=event))
        now = time.monotonic()
        if count != last["count"]:
            last.update(count=count, since=now)
        return count > 0 and now - last["since"] >= quiet

    wait_for(still, f"mmd's {event} entries to settle", timeout=30)


def warm(host: GuideHost) -> tuple[Probe, int]:
    """One mail, so that a test starts with a kept connection to the probe; the probe, and
    how many connections it accepted so far."""
    assert_local_mail_filtered(host.delivered(local_mail(host)))
    probe = Probe(host.c)
    return probe, probe.connections()


def warm_remote(host: GuideHost) -> set[int]:
    """One mail from the remote server; mmd's one kept connection to spamass-milter after it
    (none if it kept none)."""
    assert_remote_mail_filtered(host.delivered(remote_mail(host)))
    kept = kept_by_mmd(host.c, SPAMASS_SOCKET)
    assert len(kept) == 1, unix_connections(host.c)
    return kept


# ------------------------------------------------------------------------------ the tests


def test_consecutive_local_mails_share_one_probe_connection(host: GuideHost) -> None:
    probe, connections = warm(host)
    connects = probe.count("connect")
    cursor = host.journal_cursor()
    for _ in range(MAILS):
        assert_local_mail_filtered(host.delivered(local_mail(host)))
    assert probe.count("connect") == connects + MAILS
    # every session on the connection the warm-up mail left: no new one was accepted
    assert probe.connections() == connections, probe.count("negotiate")
    # libmilter ran its close callback between the sessions (QUIT_NC), and every session
    # began with its own CONNECT and full envelope
    assert probe.count("close") >= MAILS
    for session in probe.sessions()[-MAILS:]:
        assert [e["event"] for e in session][:4] == ["connect", "helo", "envfrom", "envrcpt"]
        assert session[-1]["event"] == "eom"
    assert errors(host, cursor) == []


def test_consecutive_remote_mails_share_one_spamass_milter_connection(host: GuideHost) -> None:
    c = host.c
    kept = warm_remote(host)  # between mails, mmd holds one connection to spamass-milter
    cursor = host.journal_cursor()
    for _ in range(MAILS):
        assert_remote_mail_filtered(host.delivered(remote_mail(host)))
        assert kept_by_mmd(c, SPAMASS_SOCKET) == kept  # the same connection, mail after mail
    verdicts = host.manager_entries(cursor, MMD_EVENT="milter-verdict",
                                    MMD_MILTER="spamass-milter")
    assert len(verdicts) == MAILS, verdicts
    assert errors(host, cursor) == []


def test_a_reject_does_not_leak_into_the_next_mail(host: GuideHost) -> None:
    probe, connections = warm(host)
    cursor = host.journal_cursor()
    refused = local_mail(host, recipient=REFUSED)
    assert refused.exit_code != 0 and refused.queue_id is None
    assert "<** " + " ".join(PROBE_REPLY) in refused.transcript, refused.transcript
    after = [host.delivered(local_mail(host)) for _ in range(2)]
    for message in after:
        assert_local_mail_filtered(message)
    # the refused session's connection was closed (libmilter past RCPT takes no CONNECT);
    # the next mail opened one, and the one after kept it
    assert probe.connections() == connections + 1
    last = probe.sessions()[-1]
    assert [e["args"][0] for e in last if e["event"] == "envrcpt"] == ["<receiver@example.org>"]
    verdicts = [e["MMD_STATUS"] for e in host.manager_entries(
        cursor, MMD_EVENT="milter-verdict", MMD_MILTER=PROBE)]
    assert verdicts == ["reject", "pass", "pass"], verdicts

    # a real child's reject at end-of-message: GTUBE, then clean mail from the same server
    spam = remote_mail(host, GTUBE)
    assert spam.exit_code != 0 and f"<** {SPAMASS_REJECT}" in spam.transcript, spam.transcript
    clean = host.delivered(remote_mail(host))
    assert_remote_mail_filtered(clean)
    assert "GTUBE" not in header(clean, "X-Spam-Status")
    assert errors(host, cursor) == []


def test_spam_then_clean_mail_in_one_smtp_connection(host: GuideHost) -> None:
    c = host.c
    kept = warm_remote(host)
    cursor = host.journal_cursor()
    result = smtp_steps(host, "two-messages", MX[0], MX[1], GTUBE, sessions=2)
    assert result.exit_code == 0, result.transcript
    assert f"<- {SPAMASS_REJECT}" in result.transcript, result.transcript
    message = host.delivered(result)
    assert message["Subject"] == "second of two"
    assert_remote_mail_filtered(message)
    # spamass-milter refused the first message at end-of-message and let the second pass:
    # libmilter stands where a CONNECT may follow again, and the connection stays kept
    assert kept_by_mmd(c, SPAMASS_SOCKET) == kept
    assert errors(host, cursor) == []


def test_aborted_transactions_then_correct_verdicts(host: GuideHost) -> None:
    probe, connections = warm(host)
    cursor = host.journal_cursor()
    # RSET: Postfix aborts the transaction at its milter; a whole message follows in the same
    # SMTP connection, on the kept connection
    after_rset = smtp_steps(host, "rset-then-mail")
    assert after_rset.exit_code == 0, after_rset.transcript
    message = host.delivered(after_rset)
    assert_local_mail_filtered(message)
    assert message["Subject"] == "after RSET"
    names = [e["event"] for e in probe.sessions()[-1]]
    assert names.count("abort") == 1 and names.count("envfrom") == 2, names
    assert names[-1] == "eom"
    assert probe.connections() == connections  # kept through the RSET, and kept after it
    # a client that goes away in the middle of DATA: Postfix aborts, nothing is delivered
    gone = smtp_steps(host, "quit-mid-data")
    assert gone.exit_code == 0 and gone.queue_id is None, gone.transcript
    assert probe.sessions()[-1][-1]["event"] == "abort"
    # the next mails: filtered as ever, nothing of the lost message in them
    for _ in range(2):
        after = host.delivered(local_mail(host))
        assert_local_mail_filtered(after)
        assert "X-Half" not in after
        seen = [e["args"][0] for e in probe.sessions()[-1] if e["event"] == "header"]
        assert "X-Half" not in seen and "Subject" in seen, seen
    # the aborted session's connection was closed (libmilter, after ABORT, takes no
    # CONNECT); the first mail after it opened a new one, the second kept it
    assert probe.connections() == connections + 1
    ends = host.manager_entries(cursor, MMD_EVENT="session-end")
    assert len(ends) == 4, ends
    assert errors(host, cursor) == []


def test_a_child_restarted_between_mails_still_filters_the_next(host: GuideHost) -> None:
    c = host.c
    probe, connections = warm(host)
    old_pid = probe.events()[-1]["pid"]
    cursor = host.journal_cursor()
    c.run(["systemctl", "restart", PROBE_UNIT], timeout=60)
    wait_for_sockets(c, PROBE_SOCKET)
    # the kept connection died with the old process: the next mail gets a new one
    assert_local_mail_filtered(host.delivered(local_mail(host)))
    assert probe.connections() == connections + 1
    assert probe.events()[-1]["pid"] != old_pid
    assert_local_mail_filtered(host.delivered(local_mail(host)))
    assert probe.connections() == connections + 1  # and keeps it again
    assert errors(host, cursor) == []

    # a real child: spamass-milter restarted by its unit (which mmd follows: a live update,
    # whose new generation closes every kept connection)
    before = warm_remote(host)
    cursor = host.journal_cursor()
    c.run(["systemctl", "restart", "spamass-milter"], timeout=120)
    wait_for_sockets(c, SPAMASS_SOCKET)
    settled(host, cursor, "live-update")
    assert_remote_mail_filtered(host.delivered(remote_mail(host)))
    after = kept_by_mmd(c, SPAMASS_SOCKET)
    assert after and not after & before
    assert errors(host, cursor) == []


def test_reload_closes_kept_connections_and_mail_stays_filtered(host: GuideHost) -> None:
    c = host.c
    spamass = warm_remote(host)
    probe, connections = warm(host)
    assert kept_by_mmd(c, PROBE_SOCKET) and kept_by_mmd(c, SPAMASS_SOCKET) == spamass
    closes = probe.count("close")
    main_pid = host.unit(MANAGER, "MainPID")["MainPID"]
    cursor = host.journal_cursor()
    c.run(["systemctl", "reload", MANAGER], timeout=130)
    reloads = host.manager_entries(cursor, MMD_EVENT="reload")
    assert [e["MMD_STATUS"] for e in reloads] == ["success"], reloads
    # the old generation's kept connections are closed at once: QUIT, which libmilter takes
    # in its end-of-message state (the probe's close callback runs)
    wait_for(lambda: not kept_by_mmd(c, PROBE_SOCKET) and not kept_by_mmd(c, SPAMASS_SOCKET),
             "mmd to close its kept connections after the reload", timeout=10)
    wait_for(lambda: probe.count("close") == closes + 1, "the probe's close callback", 10)
    # new mail: filtered on new connections, which are kept again
    assert_local_mail_filtered(host.delivered(local_mail(host)))
    assert probe.connections() == connections + 1
    assert_local_mail_filtered(host.delivered(local_mail(host)))
    assert probe.connections() == connections + 1
    assert not warm_remote(host) & spamass  # a new spamass-milter connection, kept
    assert host.unit(MANAGER, "MainPID")["MainPID"] == main_pid
    assert errors(host, cursor) == []



def test_parallel_sessions_each_keep_a_connection_for_the_next_round(host: GuideHost) -> None:
    probe, connections = warm(host)
    cursor = host.journal_cursor()
    with ThreadPoolExecutor(PARALLEL) as pool:
        for _ in range(ROUNDS):
            round_cursor = host.journal_cursor()
            results = list(pool.map(lambda _: host.send(), range(PARALLEL)))
            settle(host, round_cursor, PARALLEL)
            for result in results:
                assert_local_mail_filtered(host.delivered(result))
    opened = probe.connections() - connections
    # at most PARALLEL sessions at once, one of them on the warm-up mail's connection: the
    # later rounds found theirs kept (reuse off: one per mail, PARALLEL * ROUNDS)
    assert opened < PARALLEL, opened
    assert probe.count("connect") >= PARALLEL * ROUNDS
    # and every connection opened is kept now (child_connections_kept is 16)
    assert len(kept_by_mmd(host.c, PROBE_SOCKET)) == 1 + opened
    assert errors(host, cursor) == []
