"""Issue 2 acceptance with scripted children: every verdict and change at every stage,
through mmd, checked with milter-test-server and (for what users see) with Postfix + swaks.

The children are libmilter processes (python3-milter) scripted per stage; mmd runs as
``milter-manager`` from this checkout. Message stages (header, end-of-header, body) are
answered to the MTA at once and replayed at end-of-message, so their verdicts reach the
SMTP client at the end of DATA (README, "How a session is handled").
"""

from __future__ import annotations

import re
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import MmdDaemonFactory, ScriptedMilterFactory
from tests.support.cli_runner import run_test_server
from tests.support.mmd_daemon import MmdDaemon
from tests.support.postfix import Postfix
from tests.support.scripted import STAGES

# the stage names mmd logs, by the scripted child's stage keyword
LOGGED_STAGE = {
    "connect": "connect",
    "helo": "helo",
    "envfrom": "envelope-from",
    "envrcpt": "envelope-recipient",
    "data": "data",
    "header": "header",
    "eoh": "end-of-header",
    "body": "body",
    "eom": "end-of-message",
}
# behaviour -> (milter-test-server status line, status mmd logs for the child)
VERDICTS: dict[str, tuple[dict[str, Any], str, str]] = {
    "accept": ({"verdict": "accept"}, "status: accept", "accept"),
    "reject": ({"verdict": "reject"}, "status: reject", "reject"),
    "tempfail": ({"verdict": "tempfail"}, "status: temporary-failure", "temporary-failure"),
    "discard": ({"verdict": "discard"}, "status: discard", "discard"),
    "reject-reply": ({"verdict": "reject", "reply": ["554", "5.7.1", "go away"]},
                     "status: reject [554]<5.7.1>(go away)", "reject"),
    "tempfail-reply": ({"verdict": "tempfail", "reply": ["451", "4.7.1", "try later"]},
                       "status: temporary-failure [451]<4.7.1>(try later)",
                       "temporary-failure"),
}


def child(name: str, spec: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "connection_spec": spec, **settings}


def session_lines(daemon: MmdDaemon, text: str) -> list[str]:
    return [line for line in daemon.log().splitlines() if text in line]


def send_through(postfix: Postfix, daemon: MmdDaemon) -> None:
    postfix.set_milters(daemon.spec)


# ------------------------------------------------------------ every verdict at every stage


@pytest.mark.parametrize("stage", STAGES)
def test_every_verdict_at_stage_reaches_test_server(
    stage: str, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    # one child per verdict; mmd is switched from one to the next by SIGHUP
    children = {name: scripted_milter(**{stage: behaviour})
                for name, (behaviour, _, _) in VERDICTS.items()}
    daemon = mmd_daemon(milters=[child("accept", children["accept"][0])])
    for session, (name, (_, status_line, logged)) in enumerate(VERDICTS.items(), start=1):
        spec, recorder = children[name]
        daemon.write_config([child(name, spec)])
        daemon.reload()
        run = run_test_server("-s", daemon.spec)
        verdict_line = f"[milter][end][{LOGGED_STAGE[stage]}][{logged}]"
        daemon.wait_for_log("[session][end]", count=session)
        assert run.exit_code == 0, run
        assert run.status_line == status_line, (name, run)
        assert any(f"]({session}): {name} MMD_EVENT=" in line
                   for line in session_lines(daemon, verdict_line)), daemon.log()
        # the child saw the session up to the stage where it decided, and nothing after
        names = recorder.names()
        assert stage in names, names
        assert not set(STAGES[STAGES.index(stage) + 1:]) & set(names), (name, names)


# ------------------------------------------------------------ changes at end-of-message


def test_changes_of_two_children_are_merged_for_test_server(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    first, _ = scripted_milter(eom={
        "add_header": [["X-Added", "1"]],
        "insert_header": [[0, "X-First", "0"]],
        "change_header": [["Subject", 1, "changed"]],
    })
    second, second_saw = scripted_milter(eom={
        "delete_header": [["X-Old", 1]],
        "replace_body": "new body\n",
    })
    daemon = mmd_daemon(milters=[child("first", first), child("second", second)])

    run = run_test_server("-s", daemon.spec, "-h", "Subject: original", "-h", "X-Old: gone",
                          "--output-message")

    assert run.exit_code == 0, run
    lines = run.stdout.splitlines()
    assert lines[0] == "status: pass"
    assert lines[2:] == [
        "",
        "Envelope:------------------------------",
        "  MAIL FROM:<sender@example.com>",
        "  RCPT TO:<receiver@example.org>",
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
    # the second child got the message as the first one left it
    headers = [tuple(e["args"]) for e in second_saw.events() if e["event"] == "header"]
    assert headers == [("X-First", "0"), ("Subject", "changed"), ("X-Old", "gone"),
                       ("From", "<sender@example.com>"), ("To", "<receiver@example.org>"),
                       ("X-Added", "1")]


def test_quarantine_reaches_test_server(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    plain, _ = scripted_milter(eom={"add_header": [["X-Plain", "yes"]]})
    holding, _ = scripted_milter(eom={"quarantine": "held for review"})
    daemon = mmd_daemon(milters=[child("plain", plain), child("holding", holding)])

    run = run_test_server("-s", daemon.spec, "--output-message")

    lines = run.stdout.splitlines()
    assert lines[0] == "status: quarantine", run
    assert lines[2] == "Quarantine reason: <held for review>"
    assert "+ X-Plain: yes" in lines
    daemon.wait_for_log("[session][end]")
    assert session_lines(daemon, "[session][end][end-of-message][quarantine]"), daemon.log()


def test_recipient_changes_reach_test_server(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, _ = scripted_milter(eom={"add_rcpt": ["<added@example.org>"],
                                   "del_rcpt": ["<receiver@example.org>"],
                                   "chgfrom": "<changed@example.com>"})
    daemon = mmd_daemon(milters=[child("envelope", spec)])

    run = run_test_server("-s", daemon.spec, "--output-message")

    lines = run.stdout.splitlines()
    assert lines[0] == "status: pass", run
    assert lines[3:9] == [
        "Envelope:------------------------------",
        "- MAIL FROM:<sender@example.com>",
        "+ MAIL FROM:<changed@example.com>",
        "- RCPT TO:<receiver@example.org>",
        "+ RCPT TO:<added@example.org>",
        "Header:--------------------------------",
    ]


# ------------------------------------------------------------ merging verdicts of children


@pytest.mark.parametrize(("verdicts", "expected"), [
    (("accept", "reject"), "status: reject"),
    (("tempfail", "reject"), "status: reject"),
    (("reject", "discard"), "status: discard"),
    (("continue", "tempfail"), "status: temporary-failure"),
    (("accept", "accept"), "status: accept"),
])
def test_merged_verdict_at_envelope_from(
    verdicts: tuple[str, str], expected: str,
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
) -> None:
    specs = [scripted_milter(envfrom={"verdict": v})[0] for v in verdicts]
    daemon = mmd_daemon(milters=[child(f"c{i}", s) for i, s in enumerate(specs)])

    run = run_test_server("-s", daemon.spec)

    assert run.status_line == expected, run


def test_children_negotiating_different_steps(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    quiet, quiet_saw = scripted_milter(steps=["NOHELO", "NOEOH"],
                                       eom={"add_header": [["X-Quiet", "1"]]})
    full, full_saw = scripted_milter(eom={"add_header": [["X-Full", "1"]]})
    daemon = mmd_daemon(milters=[child("quiet", quiet), child("full", full)])

    run = run_test_server("-s", daemon.spec, "--output-message")

    assert run.status_line == "status: pass", run
    assert {"+ X-Quiet: 1", "+ X-Full: 1"} <= set(run.stdout.splitlines())
    assert "helo" not in quiet_saw.names()
    assert "eoh" not in quiet_saw.names()
    assert {"connect", "envfrom", "envrcpt", "data", "header", "body", "eom"} <= set(
        quiet_saw.names())
    assert {"helo", "eoh"} <= set(full_saw.names())


# ------------------------------------------------------------ Postfix + swaks


def test_postfix_delivers_every_childs_header(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    specs = [scripted_milter(eom={"add_header": [[f"X-Child-{n}", f"{n}"]]}) for n in (1, 2, 3)]
    daemon = mmd_daemon(milters=[child(f"child{n}", spec)
                                 for n, (spec, _) in enumerate(specs, start=1)])
    send_through(postfix, daemon)

    sent = postfix.send(headers={"Subject": "three children"})

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert (mail["X-Child-1"], mail["X-Child-2"], mail["X-Child-3"]) == ("1", "2", "3")
    # later children saw the headers the earlier ones added
    second_headers = [e["args"][0] for e in specs[1][1].events() if e["event"] == "header"]
    third_headers = [e["args"][0] for e in specs[2][1].events() if e["event"] == "header"]
    assert "X-Child-1" in second_headers
    assert "X-Child-2" not in second_headers
    assert {"X-Child-1", "X-Child-2"} <= set(third_headers)
    assert specs[1][1].macros("eom")["i"] == sent.queue_id
    # Postfix ends with ABORT and QUIT; the statistics line keeps the last protocol stage
    log = daemon.wait_for_log("[session][end]")
    ends = [line for line in log.splitlines() if "[session][end]" in line]
    assert len(ends) == 1 and "[session][end][end-of-message][pass]" in ends[0], ends


@pytest.mark.parametrize("stage", STAGES)
def test_postfix_client_gets_a_childs_reject_text(
    stage: str, postfix: Postfix, scripted_milter: ScriptedMilterFactory,
    mmd_daemon: MmdDaemonFactory,
) -> None:
    happy, _ = scripted_milter(eom={"add_header": [["X-Happy", "yes"]]})
    strict, _ = scripted_milter(**{stage: {"verdict": "reject",
                                           "reply": ["550", "5.7.1", f"no thanks at {stage}"]}})
    daemon = mmd_daemon(milters=[child("happy", happy), child("strict", strict)])
    send_through(postfix, daemon)

    sent = postfix.send()

    assert sent.exit_code != 0, sent.transcript
    assert sent.queue_id is None
    if stage == "connect":
        # Postfix answers a connect-time reject with its own banner and logs the milter's
        assert "554 mail.example.com ESMTP not accepting connections" in \
            sent.server_replies(), sent.transcript
        assert any("milter-reject: CONNECT" in line and "550 5.7.1 no thanks at connect" in line
                   for line in _wait_log_text(postfix, "no thanks at connect")), \
            postfix.maillog.read_text()[-2000:]
    else:
        assert f"550 5.7.1 no thanks at {stage}" in sent.server_replies(), sent.transcript


@pytest.mark.parametrize("stage", ["helo", "envfrom", "envrcpt", "body", "eom"])
def test_postfix_client_gets_a_childs_tempfail_text(
    stage: str, postfix: Postfix, scripted_milter: ScriptedMilterFactory,
    mmd_daemon: MmdDaemonFactory,
) -> None:
    happy, _ = scripted_milter()
    busy, _ = scripted_milter(**{stage: {"verdict": "tempfail",
                                         "reply": ["451", "4.7.1", "come back later"]}})
    daemon = mmd_daemon(milters=[child("happy", happy), child("busy", busy)])
    send_through(postfix, daemon)

    sent = postfix.send()

    assert sent.exit_code != 0, sent.transcript
    assert "451 4.7.1 come back later" in sent.server_replies(), sent.transcript


def test_postfix_per_recipient_reject(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    picky, picky_saw = scripted_milter(
        envrcpt={"verdict": "reject", "reply": ["550", "5.1.1", "no such user"],
                 "match": "bad@"})
    marker, _ = scripted_milter(eom={"add_header": [["X-Marker", "kept"]]})
    daemon = mmd_daemon(milters=[child("picky", picky), child("marker", marker)])
    send_through(postfix, daemon)

    sent = postfix.send(recipients=["bad@example.org", "good@example.org"])

    assert sent.exit_code == 0, sent.transcript
    assert "550 5.1.1 no such user" in sent.server_replies(), sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert mail["Delivered-To"] == "good@example.org"
    assert mail["X-Marker"] == "kept"
    assert [e["args"][0] for e in picky_saw.events() if e["event"] == "envrcpt"] == \
        ["<bad@example.org>", "<good@example.org>"]
    assert "eom" in picky_saw.names()  # the message went on for the good recipient


def test_postfix_evaluation_mode_child_neither_rejects_nor_changes(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    trial, trial_saw = scripted_milter(eom={"verdict": "reject",
                                            "add_header": [["X-Trial", "yes"]]})
    normal, _ = scripted_milter(eom={"add_header": [["X-Normal", "yes"]]})
    daemon = mmd_daemon(milters=[child("trial", trial, evaluation_mode=True),
                                 child("normal", normal)])
    send_through(postfix, daemon)

    sent = postfix.send()

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert mail["X-Normal"] == "yes"
    assert mail["X-Trial"] is None
    assert "eom" in trial_saw.names()
    log = daemon.wait_for_log("evaluation mode: reject at end-of-message not applied")
    assert "[milter][end][end-of-message][reject]" in log


def test_postfix_children_with_different_steps(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    quiet, quiet_saw = scripted_milter(steps=["NOHELO", "NOEOH"],
                                       eom={"add_header": [["X-Quiet", "1"]]})
    full, full_saw = scripted_milter(eom={"add_header": [["X-Full", "1"]]})
    daemon = mmd_daemon(milters=[child("quiet", quiet), child("full", full)])
    send_through(postfix, daemon)

    sent = postfix.send()

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert (mail["X-Quiet"], mail["X-Full"]) == ("1", "1")
    assert not {"helo", "eoh"} & set(quiet_saw.names())
    assert {"helo", "eoh", "eom"} <= set(full_saw.names())


def test_postfix_header_changes_and_body_replacement(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    editor, _ = scripted_milter(eom={
        "insert_header": [[0, "X-Inserted", "top"]],
        "change_header": [["Subject", 1, "changed subject"]],
        "delete_header": [["X-Old", 1]],
    })
    rewriter, _ = scripted_milter(eom={"replace_body": "replaced body\r\n"})
    daemon = mmd_daemon(milters=[child("editor", editor), child("rewriter", rewriter)])
    send_through(postfix, daemon)

    sent = postfix.send(headers={"Subject": "original", "X-Old": "gone"}, body="old body\n")

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    mail = postfix.wait_for_mail(sent.queue_id)
    assert mail["Subject"] == "changed subject"
    assert mail["X-Old"] is None
    assert mail["X-Inserted"] == "top"
    assert mail.get_content().strip() == "replaced body"


def test_postfix_discard_drops_the_mail(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    dropper, _ = scripted_milter(eom={"verdict": "discard"})
    daemon = mmd_daemon(milters=[child("dropper", dropper)])
    send_through(postfix, daemon)

    sent = postfix.send()

    assert sent.exit_code == 0, sent.transcript  # discard looks like success to the client
    assert sent.queue_id is not None
    assert any("milter-discard" in line for line in _wait_log(postfix, sent.queue_id,
                                                              "milter-discard"))


def test_postfix_quarantine_holds_the_mail(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    holder, _ = scripted_milter(eom={"quarantine": "looks odd"})
    daemon = mmd_daemon(milters=[child("holder", holder)])
    send_through(postfix, daemon)

    sent = postfix.send()

    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    lines = _wait_log(postfix, sent.queue_id, "milter-hold")
    assert any("milter triggers HOLD action" in line for line in lines), lines
    # the held message stays in Postfix's hold queue
    assert (postfix.queue / "hold" / sent.queue_id).exists()


def _wait_delivered(postfix: Postfix, subjects: set[str],
                    timeout: float = 20.0) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [mail for mail in postfix.delivered() if str(mail["Subject"]) in subjects]
        if {str(mail["Subject"]) for mail in found} >= subjects:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not delivered: {subjects}")


def _wait_log_text(postfix: Postfix, text: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in postfix.maillog.read_text(errors="replace").splitlines()
                 if text in line]
        if lines:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in Postfix's log")


def _wait_log(postfix: Postfix, queue_id: str, text: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = postfix.log_lines(queue_id)
        if any(text in line for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in Postfix's log for {queue_id}: "
                         f"{postfix.log_lines(queue_id)}")


# ------------------------------------------------------------ several messages, big messages


def test_postfix_two_messages_in_one_smtp_session(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    picky, picky_saw = scripted_milter(
        envfrom={"verdict": "reject", "reply": ["550", "5.7.1", "not you"], "match": "bad@"},
        eom={"add_header": [["X-Picky", "ok"]]})
    stamper, stamper_saw = scripted_milter(eom={"add_header": [["X-Stamp", "1"]]})
    daemon = mmd_daemon(milters=[child("picky", picky), child("stamper", stamper)])
    send_through(postfix, daemon)

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.ehlo("delian")
        first = smtp.sendmail("good@example.com", ["one@example.org"],
                              "Subject: first\r\n\r\nfirst body\r\n")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("bad@example.com", ["two@example.org"],
                          "Subject: second\r\n\r\nsecond body\r\n")
        third = smtp.sendmail("good@example.com", ["three@example.org"],
                              "Subject: third\r\n\r\nthird body\r\n")

    assert first == {} and third == {}
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.7.1 not you"
    by_subject = {str(mail["Subject"]): mail for mail in _wait_delivered(
        postfix, {"first", "third"})}
    for subject in ("first", "third"):
        mail = by_subject[subject]
        # each message got each child's header exactly once
        assert mail.get_all("X-Stamp") == ["1"], subject
        assert mail.get_all("X-Picky") == ["ok"], subject
        assert mail.get_content().strip() == f"{subject} body"
    # the second child saw each accepted message's own headers only
    subjects = [e["args"][1] for e in stamper_saw.events()
                if e["event"] == "header" and e["args"][0] == "Subject"]
    assert subjects == ["first", "third"]
    assert [e["args"][0] for e in picky_saw.events() if e["event"] == "envfrom"] == \
        ["<good@example.com>", "<bad@example.com>", "<good@example.com>"]


def test_postfix_big_message_is_kept_whole(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    spec, recorder = scripted_milter(eom={"add_header": [["X-Big", "seen"]]})
    # a body larger than body_memory_limit (spooled to a file) and than one chunk
    daemon = mmd_daemon(milters=[child("big", spec)],
                        manager={"body_memory_limit": 100_000})
    send_through(postfix, daemon)
    lines = [f"line {number:07d} " + "x" * 60 for number in range(40_000)]  # about 2.8 MB
    body = "\n".join(lines) + "\n"

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as smtp:
        smtp.ehlo("delian")
        smtp.mail("sender@example.com")
        smtp.rcpt("receiver@example.org")
        code, reply = smtp.data(f"Subject: big\r\n\r\n{body}".replace("\n", "\r\n")
                                .replace("\r\r\n", "\r\n"))

    assert code == 250, reply
    queued = re.search(rb"queued as ([0-9A-Za-z]+)", reply)
    assert queued is not None, reply
    mail = postfix.wait_for_mail(queued.group(1).decode(), timeout=60)
    assert mail["X-Big"] == "seen"
    assert mail.get_content().splitlines() == lines
    chunks = [e for e in recorder.events() if e["event"] == "body"]
    assert len(chunks) >= 40  # at most 65535 bytes per BODY packet
    assert sum(len(e["args"][0]) for e in chunks) >= len(body)


def test_postfix_parallel_sessions(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    first, _ = scripted_milter(eom={"add_header": [["X-First", "1"]]})
    second, _ = scripted_milter(envrcpt={"verdict": "reject", "match": "nobody@"},
                                eom={"add_header": [["X-Second", "2"]]})
    daemon = mmd_daemon(milters=[child("first", first), child("second", second)])
    send_through(postfix, daemon)
    subjects = [f"parallel {number}" for number in range(12)]

    def send_one(subject: str) -> bytes:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as smtp:
            smtp.ehlo("delian")
            smtp.mail("sender@example.com")
            refused, _ = smtp.rcpt("nobody@example.org")
            assert refused == 550, refused
            smtp.rcpt("receiver@example.org")
            code, reply = smtp.data(f"Subject: {subject}\r\n\r\n{subject} body\r\n")
            assert code == 250, reply
            return reply

    with ThreadPoolExecutor(len(subjects)) as pool:
        replies = list(pool.map(send_one, subjects))

    assert all(b"queued as" in reply for reply in replies), replies
    delivered = _wait_delivered(postfix, set(subjects))
    assert len(delivered) == len(subjects)
    for mail in delivered:
        assert mail.get_all("X-First") == ["1"], mail
        assert mail.get_all("X-Second") == ["2"], mail
        assert mail.get_content().strip() == f"{mail['Subject']} body"
    assert not daemon.log_lines("[milter][error]"), daemon.log()


def test_reload_keeps_sessions_in_flight_on_their_generation(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    old, old_saw = scripted_milter(eom={"sleep": 1.5, "add_header": [["X-Generation", "old"]]})
    new, _ = scripted_milter(eom={"add_header": [["X-Generation", "new"]]})
    daemon = mmd_daemon(milters=[child("old", old)])

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(run_test_server, "-s", daemon.spec, "--output-message")
        old_saw.wait_for("eom")  # the session is inside the old child's end-of-message
        daemon.write_config([child("new", new)])
        daemon.reload()
        after = run_test_server("-s", daemon.spec, "--output-message")
        before = in_flight.result(30)

    assert "+ X-Generation: old" in before.stdout.splitlines(), before
    assert "+ X-Generation: new" in after.stdout.splitlines(), after
    assert "+ X-Generation: old" not in after.stdout.splitlines(), after


def test_sigterm_lets_the_session_in_flight_finish(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    slow, slow_saw = scripted_milter(eom={"sleep": 1.0, "add_header": [["X-Finished", "yes"]]})
    daemon = mmd_daemon(milters=[child("slow", slow)])

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(run_test_server, "-s", daemon.spec, "--output-message")
        slow_saw.wait_for("eom")
        daemon.terminate()
        run = in_flight.result(30)
    code = daemon.stop()

    assert run.status_line == "status: pass", run
    assert "+ X-Finished: yes" in run.stdout.splitlines()
    assert code == 0, daemon.log()
    log = daemon.log()
    assert "stopping: 1 sessions in flight" in log
    assert log.index("[session][end][end-of-message][pass]") < log.index("INFO mmd.daemon: stopped")
    assert not daemon.socket_path.exists() or run_test_server("-s", daemon.spec).exit_code == 1


def test_skip_at_body_stops_that_childs_body_only(
    tmp_path: Path, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    skipper, skipper_saw = scripted_milter(steps=["SKIP"], body={"verdict": "skip"},
                                           eom={"add_header": [["X-Skipper", "1"]]})
    reader, reader_saw = scripted_milter(eom={"add_header": [["X-Reader", "1"]]})
    daemon = mmd_daemon(milters=[child("skipper", skipper), child("reader", reader)])
    mail = tmp_path / "big.eml"
    body = "".join(f"line {number:06d} {'y' * 50}\n" for number in range(4000))  # ~250 kB
    mail.write_text(f"From: a@example.com\nTo: b@example.org\nSubject: skip\n\n{body}")

    run = run_test_server("-s", daemon.spec, "-m", str(mail), "--output-message")

    assert run.status_line == "status: pass", run
    assert {"+ X-Skipper: 1", "+ X-Reader: 1"} <= set(run.stdout.splitlines())
    skipped = [e for e in skipper_saw.events() if e["event"] == "body"]
    read = [e for e in reader_saw.events() if e["event"] == "body"]
    assert len(skipped) == 1
    assert len(read) >= 4
    assert "eom" in skipper_saw.names()


def test_postfix_rejected_recipient_reaches_only_children_asking_for_it(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    # a remote client (XCLIENT) may not relay: Postfix itself refuses the outside
    # recipient and tells only milters that negotiated SMFIP_RCPT_REJ
    curious, curious_saw = scripted_milter(steps=["RCPT_REJ"])
    plain, plain_saw = scripted_milter()
    daemon = mmd_daemon(milters=[child("curious", curious), child("plain", plain)])
    send_through(postfix, daemon)

    sent = postfix.send(recipients=["someone@elsewhere.invalid", "good@example.org"],
                        client_name="mail.example.net", client_address="203.0.113.25")

    assert sent.exit_code == 0, sent.transcript
    assert any(reply.startswith("554 5.7.1") and "Relay access denied" in reply
               for reply in sent.server_replies()), sent.transcript
    curious_rcpts = [(e["args"][0], e["macros"].get("{rcpt_mailer}"))
                     for e in curious_saw.events() if e["event"] == "envrcpt"]
    plain_rcpts = [e["args"][0] for e in plain_saw.events() if e["event"] == "envrcpt"]
    assert curious_rcpts == [("<someone@elsewhere.invalid>", "error"),
                             ("<good@example.org>", "virtual")], curious_rcpts
    assert plain_rcpts == ["<good@example.org>"]


def test_postfix_message_after_a_content_reject_in_the_same_session(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    censor, censor_saw = scripted_milter(
        header={"verdict": "reject", "reply": ["550", "5.7.1", "bad subject"],
                "match": "please-reject"})
    stamper, _ = scripted_milter(eom={"add_header": [["X-Stamp", "once"]],
                                      "replace_body": "stamped body\n"})
    daemon = mmd_daemon(milters=[child("censor", censor), child("stamper", stamper)])
    send_through(postfix, daemon)

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.ehlo("delian")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@example.com", ["one@example.org"],
                          "Subject: please-reject\r\n\r\nbad body\r\n")
        smtp.sendmail("a@example.com", ["two@example.org"],
                      "Subject: after the reject\r\n\r\ngood body\r\n")

    assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"5.7.1 bad subject")
    (mail,) = _wait_delivered(postfix, {"after the reject"})
    assert mail.get_all("X-Stamp") == ["once"]
    assert mail.get_content().strip() == "stamped body"
    assert [e["args"][1] for e in censor_saw.events()
            if e["event"] == "header" and e["args"][0] == "Subject"] == \
        ["please-reject", "after the reject"]


def test_max_connections_makes_further_sessions_wait(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    slow, slow_saw = scripted_milter(eom={"sleep": 0.8, "add_header": [["X-Turn", "served"]]})
    daemon = mmd_daemon(milters=[child("slow", slow)], manager={"max_connections": 1})

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_test_server("-s", daemon.spec, "--output-message"),
                             range(2)))

    for run in runs:
        assert run.status_line == "status: pass", run
        assert "+ X-Turn: served" in run.stdout.splitlines()
    # one session after the other: the second reached the child only after the first's
    # end-of-message (the child may log the first one's close a moment later, in another
    # thread; connect, not negotiate: the second session may use the first's kept connection)
    names = [name for name in slow_saw.names() if name in ("connect", "eom")]
    assert names == ["connect", "eom", "connect", "eom"], names
