"""The harness itself, proved without mmd: milter-test-server and Postfix talk
directly to each real child milter. Each test fails if the component misbehaves."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.conftest import ScriptedMilterFactory
from tests.support.cli_runner import run_test_server
from tests.support.postfix import Postfix
from tests.support.real_milters import EICAR, EICAR_SIGNATURE, GTUBE, SPAMASS_REJECT, RealMilter

# ------------------------------------------------------------ clamav-milter


def test_test_server_sees_clamav_reject_eicar(clamav_milter: RealMilter) -> None:
    infected = run_test_server("-s", clamav_milter.spec, "-b", EICAR)
    clean = run_test_server("-s", clamav_milter.spec, "--output-message")

    assert infected.exit_code == 0, infected
    assert infected.status_line == "status: reject"
    assert clean.status_line == "status: accept"
    assert "+ X-Virus-Status: Clean" in clean.stdout.splitlines()


def test_postfix_with_clamav_rejects_eicar(postfix: Postfix, clamav_milter: RealMilter) -> None:
    postfix.set_milters(clamav_milter.spec)

    infected = postfix.send(body=EICAR)
    clean = postfix.send(body="nothing to see here\n")

    assert infected.exit_code != 0, infected.transcript
    assert any(reply.startswith("550 5.7.1") for reply in infected.server_replies()), \
        infected.transcript
    assert clean.exit_code == 0, clean.transcript
    assert clean.queue_id is not None
    assert postfix.wait_for_mail(clean.queue_id)["X-Virus-Status"] == "Clean"
    assert EICAR_SIGNATURE in (clamav_milter.folder / "clamav-milter-own.log").read_text()


# ------------------------------------------------------------ opendkim


def test_test_server_sees_opendkim_sign(opendkim_milter: RealMilter) -> None:
    # opendkim signs for its InternalHosts (127.0.0.1 by default) only
    run = run_test_server("-s", opendkim_milter.spec, "--connect-address", "inet:2525@127.0.0.1",
                          "-h", "Subject: signed", "--output-message")

    assert run.status_line == "status: accept", run
    signature = [line for line in run.stdout.splitlines() if line.startswith("+ DKIM-Signature:")]
    assert len(signature) == 1, run.stdout
    assert "d=example.com;" in run.stdout
    assert "s=mmdtest;" in run.stdout


def test_postfix_with_opendkim_adds_signature(postfix: Postfix,
                                              opendkim_milter: RealMilter) -> None:
    postfix.set_milters(opendkim_milter.spec)

    sent = postfix.send(sender="alice@example.com", headers={"Subject": "sign me"})

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    signature = str(mail["DKIM-Signature"])
    assert "d=example.com" in signature
    assert "s=mmdtest" in signature


# ------------------------------------------------------------ spamass-milter


def test_test_server_sees_spamass_reject_gtube(spamass_milter: RealMilter) -> None:
    spam = run_test_server("-s", spamass_milter.spec, "-b", GTUBE)
    ham = run_test_server("-s", spamass_milter.spec, "--output-message", "-h", "Subject: hi")

    assert spam.status_line == "status: reject [550]<5.7.1>(Blocked by SpamAssassin)", spam
    assert ham.status_line == "status: pass", ham
    assert any(line.startswith("+ X-Spam-Checker-Version:") for line in ham.stdout.splitlines())


def test_postfix_with_spamass_rejects_gtube(postfix: Postfix,
                                            spamass_milter: RealMilter) -> None:
    postfix.set_milters(spamass_milter.spec)

    spam = postfix.send(body=GTUBE + "\n")

    assert spam.exit_code != 0, spam.transcript
    assert SPAMASS_REJECT in spam.server_replies(), spam.transcript


# ------------------------------------------------------------ scripted child


def test_postfix_delivers_header_added_by_scripted_child(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory
) -> None:
    spec, recorder = scripted_milter(eom={"add_header": [["X-Scripted", "yes"]]})
    postfix.set_milters(spec)

    sent = postfix.send(client_name="ppp123.dsl.example.net", client_address="10.1.2.3")

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    assert postfix.wait_for_mail(sent.queue_id)["X-Scripted"] == "yes"
    # Postfix closes the milter session at XCLIENT and connects again with the new client
    connect = recorder.last("connect")
    assert connect["args"][0] == "ppp123.dsl.example.net"
    assert connect["args"][2][0] == "10.1.2.3"
    assert connect["macros"]["_"].startswith("ppp123.dsl.example.net [10.1.2.3]")
    assert recorder.macros("eom")["i"] == sent.queue_id


def test_postfix_relays_scripted_reply_code_at_rcpt(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory
) -> None:
    spec, recorder = scripted_milter(
        envrcpt={"verdict": "reject", "reply": ["550", "5.7.1", "no such luck"], "match": "bad@"})
    postfix.set_milters(spec)

    sent = postfix.send(recipients=["bad@example.org", "good@example.org"])

    assert sent.exit_code == 0, sent.transcript  # one recipient is enough for swaks
    assert "550 5.7.1 no such luck" in sent.server_replies(), sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert mail["Delivered-To"] == "good@example.org"
    assert [e["args"][0] for e in recorder.events() if e["event"] == "envrcpt"] == \
        ["<bad@example.org>", "<good@example.org>"]


def test_scripted_child_honours_step_flags(scripted_milter: ScriptedMilterFactory) -> None:
    spec, recorder = scripted_milter(steps=["NOHELO", "NOEOH"])

    run = run_test_server("-s", spec)

    assert run.status_line == "status: pass", run
    names = recorder.names()
    assert "helo" not in names
    assert "eoh" not in names
    assert {"connect", "envfrom", "envrcpt", "data", "header", "body", "eom"} <= set(names)


# ------------------------------------------------------------ milter-test-server


def test_test_server_prints_every_change(scripted_milter: ScriptedMilterFactory) -> None:
    spec, _ = scripted_milter(eom={
        "add_header": [["X-Added", "1"]],
        "insert_header": [[0, "X-First", "0"]],
        "change_header": [["Subject", 1, "changed"]],
        "delete_header": [["X-Old", 1]],
        "replace_body": "new body\n",
        "add_rcpt": ["<added@example.org>"],
        "del_rcpt": ["<receiver@example.org>"],
        "chgfrom": "<changed@example.com>",
    })

    run = run_test_server("-s", spec, "-h", "Subject: original", "-h", "X-Old: gone",
                          "--output-message")

    assert run.exit_code == 0, run
    lines = run.stdout.splitlines()
    assert lines[0] == "status: pass"
    assert lines[1].startswith("elapsed-time: ") and lines[1].endswith(" seconds")
    assert lines[2:] == [
        "",
        "Envelope:------------------------------",
        "- MAIL FROM:<sender@example.com>",
        "+ MAIL FROM:<changed@example.com>",
        "- RCPT TO:<receiver@example.org>",
        "+ RCPT TO:<added@example.org>",
        "Header:--------------------------------",
        "+ X-First: 0",
        "+ Subject: changed",
        "- Subject: original",
        "- X-Old: gone",
        "  From: <sender@example.com>",
        "  To: <receiver@example.org>",
        "+ X-Added: 1",
        "Body:----------------------------------",
        "new body",
        "",
    ]


def test_test_server_reports_quarantine(scripted_milter: ScriptedMilterFactory) -> None:
    spec, _ = scripted_milter(eom={"quarantine": "held for review"})

    run = run_test_server("-s", spec)

    assert run.stdout.splitlines()[0] == "status: quarantine"
    assert run.stdout.splitlines()[2] == "Quarantine reason: <held for review>"


def test_test_server_sends_auth_and_custom_macros(scripted_milter: ScriptedMilterFactory) -> None:
    spec, recorder = scripted_milter(macros=["{custom}"])

    run = run_test_server("-s", spec, "--authenticated-name", "alice",
                          "--authenticated-type", "PLAIN", "--connect-macro", "{custom}:42",
                          "--queue-id", "ABC123")

    assert run.status_line == "status: pass", run
    at_mail = recorder.macros("envfrom")
    assert at_mail["{auth_authen}"] == "alice"
    assert at_mail["{auth_type}"] == "PLAIN"
    assert recorder.macros("connect")["{custom}"] == "42"
    assert recorder.macros("eom")["i"] == "ABC123"


def test_test_server_end_of_message_timeout(scripted_milter: ScriptedMilterFactory) -> None:
    spec, _ = scripted_milter(eom={"sleep": 3})

    run = run_test_server("-s", spec, "--end-of-message-timeout", "0.5")

    assert run.exit_code == 1
    assert run.stdout.strip() == "end-of-message timeout"


def test_test_server_reports_a_crashed_child(scripted_milter: ScriptedMilterFactory) -> None:
    spec, _ = scripted_milter(envfrom={"crash": True})

    run = run_test_server("-s", spec)

    assert run.exit_code == 1
    assert run.stdout.strip() == "the milter closed the connection"


def test_test_server_fails_to_connect(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/nobody.sock"

    run = run_test_server("-s", spec)

    assert run.exit_code == 1
    assert run.stdout == f"Failed to connect to {spec}\n"
    assert run.stderr == ""  # one line, as the classic tool prints it
    verbose = run_test_server("-s", spec, "-v")
    assert verbose.stdout == f"Failed to connect to {spec}\n"
    assert "No such file or directory" in verbose.stderr


def test_test_server_threads_run_sessions_in_parallel(
    scripted_milter: ScriptedMilterFactory,
) -> None:
    spec, _ = scripted_milter(eom={"sleep": 1})

    started = time.monotonic()
    run = run_test_server("-s", spec, "--threads", "4")
    elapsed = time.monotonic() - started

    assert run.exit_code == 0, run
    lines = run.stdout.splitlines()
    assert lines[0::2] == ["status: pass"] * 4
    assert all(line.startswith("elapsed-time: ") for line in lines[1::2])
    assert elapsed < 3.5  # four 1-second sessions at once, not one after the other
