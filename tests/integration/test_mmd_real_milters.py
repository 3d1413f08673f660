"""Issue 2 acceptance with the real children, all three behind mmd at once:
clamav-milter (EICAR rejected, clean mail marked), opendkim (signs example.com)
and spamass-milter (GTUBE rejected), through Postfix + swaks and milter-test-server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_runner import run_test_server
from tests.support.dkim_check import DkimError, verify
from tests.support.mmd_daemon import MmdDaemon, MmdDaemons
from tests.support.postfix import Postfix
from tests.support.real_milters import EICAR, EICAR_SIGNATURE, GTUBE, SPAMASS_REJECT, RealMilter

# opendkim signs mail from its InternalHosts only (127.0.0.1 by default)
LOCAL_CLIENT = ("--connect-host", "localhost", "--connect-address", "inet:2525@[127.0.0.1]")


@pytest.fixture(scope="module")
def real_mmd(
    integration_dir: Path, clamav_milter: RealMilter, opendkim_milter: RealMilter,
    spamass_milter: RealMilter,
) -> Iterator[MmdDaemon]:
    """One daemon for the module: the real children do not change between tests."""
    daemons = MmdDaemons(integration_dir / "mmd-real")
    daemon = daemons.start(milters=[
        {"name": "clamav-milter", "connection_spec": clamav_milter.spec,
         "fallback_status": "temporary-failure"},
        {"name": "opendkim", "connection_spec": opendkim_milter.spec},
        {"name": "spamass-milter", "connection_spec": spamass_milter.spec},
    ])
    yield daemon
    [(_, code)] = daemons.stop_all()
    assert code == 0, daemon.log()


def no_child_errors(daemon: MmdDaemon) -> None:
    assert not daemon.log_lines("[milter][error]"), daemon.log()


# ------------------------------------------------------------ milter-test-server


def test_test_server_clean_mail_gets_every_childs_header(real_mmd: MmdDaemon) -> None:
    run = run_test_server("-s", real_mmd.spec, *LOCAL_CLIENT, "-f", "alice@example.com",
                          "-h", "Subject: all three", "--output-message")

    assert run.exit_code == 0, run
    assert run.status_line == "status: pass", run
    lines = run.stdout.splitlines()
    assert "+ X-Virus-Status: Clean" in lines
    signature = [line for line in lines if line.startswith("+ DKIM-Signature:")]
    assert len(signature) == 1, run.stdout
    assert "d=example.com;" in run.stdout and "s=mmdtest;" in run.stdout
    assert any(line.startswith("+ X-Spam-Checker-Version:") for line in lines), run.stdout
    no_child_errors(real_mmd)


def test_test_server_eicar_is_rejected(real_mmd: MmdDaemon, clamav_milter: RealMilter) -> None:
    run = run_test_server("-s", real_mmd.spec, "-b", EICAR)

    assert run.status_line == "status: reject", run
    log = real_mmd.wait_for_log("[milter][end][end-of-message][reject]")
    assert any("): clamav-milter MMD_EVENT" in line
               for line in log.splitlines() if "[milter][end][end-of-message][reject]" in line)
    assert EICAR_SIGNATURE in (clamav_milter.folder / "clamav-milter-own.log").read_text()


def test_test_server_gtube_is_rejected(real_mmd: MmdDaemon) -> None:
    run = run_test_server("-s", real_mmd.spec, "-b", GTUBE)

    assert run.status_line == "status: reject [550]<5.7.1>(Blocked by SpamAssassin)", run


# ------------------------------------------------------------ Postfix + swaks


def test_postfix_clean_mail_is_scanned_signed_and_checked(
    postfix: Postfix, real_mmd: MmdDaemon
) -> None:
    postfix.set_milters(real_mmd.spec)

    sent = postfix.send(sender="alice@example.com", headers={"Subject": "through mmd"},
                        body="nothing to see here\n")

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert mail["X-Virus-Status"] == "Clean"
    signature = str(mail["DKIM-Signature"])
    assert "d=example.com" in signature and "s=mmdtest" in signature
    assert mail["X-Spam-Checker-Version"] is not None
    assert mail["X-Spam-Flag"] is None
    no_child_errors(real_mmd)


def test_postfix_eicar_is_rejected(postfix: Postfix, real_mmd: MmdDaemon) -> None:
    postfix.set_milters(real_mmd.spec)

    infected = postfix.send(body=EICAR)

    assert infected.exit_code != 0, infected.transcript
    assert any(reply.startswith("550 5.7.1") for reply in infected.server_replies()), \
        infected.transcript
    assert infected.queue_id is None


def test_postfix_gtube_is_rejected(postfix: Postfix, real_mmd: MmdDaemon) -> None:
    postfix.set_milters(real_mmd.spec)

    spam = postfix.send(body=GTUBE + "\n")

    assert spam.exit_code != 0, spam.transcript
    assert SPAMASS_REJECT in spam.server_replies(), spam.transcript


# ------------------------------------------------------------ DKIM signature survives mmd


def raw_delivered(postfix: Postfix, queue_id: str) -> bytes:
    postfix.wait_for_mail(queue_id)
    marker = f"id {queue_id}".encode()
    for path in (postfix.maildir / "inbox" / "new").iterdir():
        data = path.read_bytes()
        if marker in data:
            return data
    raise AssertionError(f"no mail file for {queue_id}")


def test_dkim_check_itself_passes_direct_and_fails_tampered(
    postfix: Postfix, opendkim_milter: RealMilter
) -> None:
    postfix.set_milters(opendkim_milter.spec)
    key = opendkim_milter.folder / "mmdtest.txt"

    sent = postfix.send(sender="alice@example.com", headers={"Subject": "direct"})

    assert sent.queue_id is not None, sent.transcript
    raw = raw_delivered(postfix, sent.queue_id)
    assert verify(raw, key)["d"] == "example.com"
    with pytest.raises(DkimError):
        verify(raw.replace(b"Subject: direct", b"Subject:  direct"), key)
    with pytest.raises(DkimError):
        verify(raw.replace(b"La de da", b"La di da"), key)


def test_postfix_dkim_signature_made_behind_mmd_verifies(
    postfix: Postfix, real_mmd: MmdDaemon, opendkim_milter: RealMilter
) -> None:
    postfix.set_milters(real_mmd.spec)

    sent = postfix.send(sender="alice@example.com",
                        headers={"Subject": "signed through mmd", "X-Folded": "one\n two"},
                        body="first line\n\n  indented line\n")

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    tags = verify(raw_delivered(postfix, sent.queue_id), opendkim_milter.folder / "mmdtest.txt")
    assert tags["d"] == "example.com" and tags["s"] == "mmdtest"
    assert "subject" in tags["h"].lower()
