"""Issue 6 acceptance: applicable conditions decide per session which children run,
with real Postfix and swaks setting the SMTP client through XCLIENT.

Stand-ins (scripted children recording every event and macro) take the place of
milter-greylist and spamass-milter with their default condition lists. Postfix
closes the milter session at XCLIENT and opens a new one for the new client, so
the first mmd session of each transaction is the loopback client (skipped by
Remote Network) and what matters is what the stand-in saw after XCLIENT.

Addresses 203.0.113.0/24 (TEST-NET-3) are only XCLIENT data: no traffic goes there.
Swaks cannot authenticate without SASL in Postfix, and XCLIENT does not set the
login, so the Authenticated/Unauthenticated conditions are checked with
milter-test-server's ``--authenticated-name``.
"""

from __future__ import annotations

import socket
from typing import Any

from tests.integration.conftest import MmdDaemonFactory, ScriptedMilterFactory
from tests.support.cli_runner import run_test_server
from tests.support.mmd_daemon import MmdDaemon
from tests.support.postfix import Postfix
from tests.support.scripted import Recorder

GREYLIST_CONDITIONS = ["S25R", "Remote Network", "Unauthenticated", "Trusted Domain",
                       "Stress Notify"]
SPAMASS_CONDITIONS = ["Remote Network", "Unauthenticated", "No Stress"]
# a fixed stress threshold: the host's /etc/postfix is not this test's Postfix
CONDITIONS = {"stress": {"threshold": 50}}
S25R_CLIENT = {"client_name": "ppp123.example.com", "client_address": "203.0.113.5"}
MX_CLIENT = {"client_name": "mail.example.net", "client_address": "203.0.113.25"}
LAN_CLIENT = {"client_name": "workstation.example.com", "client_address": "192.168.1.10"}


def start_stand_ins(scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory,
                    ) -> tuple[MmdDaemon, Recorder, Recorder]:
    greylist, greylist_saw = scripted_milter(
        name="greylist", macros=["{trusted_domain}"],
        eom={"add_header": [["X-Greylist", "checked"]]})
    spamass, spamass_saw = scripted_milter(
        name="spamass", eom={"add_header": [["X-Spam-Stand-In", "checked"]]})
    daemon = mmd_daemon(
        milters=[
            {"name": "milter-greylist", "connection_spec": greylist,
             "applicable_conditions": GREYLIST_CONDITIONS},
            {"name": "spamass-milter", "connection_spec": spamass,
             "applicable_conditions": SPAMASS_CONDITIONS},
        ],
        conditions=CONDITIONS,
    )
    return daemon, greylist_saw, spamass_saw


def send(postfix: Postfix, daemon: MmdDaemon, **kwargs: Any) -> Any:
    postfix.set_milters(daemon.spec)
    sent = postfix.send(**kwargs)
    assert sent.exit_code == 0, sent.transcript
    assert sent.queue_id is not None
    return postfix.wait_for_mail(sent.queue_id)


def connected_clients(recorder: Recorder) -> list[str]:
    return [event["args"][0] for event in recorder.events() if event["event"] == "connect"]


# ------------------------------------------------------------ S25R (greylist stand-in)


def test_s25r_client_reaches_greylist(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, greylist, _ = start_stand_ins(scripted_milter, mmd_daemon)

    mail = send(postfix, daemon, **S25R_CLIENT)

    assert connected_clients(greylist) == ["ppp123.example.com"]
    assert {"envfrom", "envrcpt", "eom"} <= set(greylist.names())
    assert greylist.last("connect")["args"][2][0] == "203.0.113.5"
    assert mail["X-Greylist"] == "checked"
    assert "{trusted_domain}" not in greylist.last("envfrom")["macros"]


def test_normal_mx_name_skips_greylist(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, greylist, spamass = start_stand_ins(scripted_milter, mmd_daemon)

    mail = send(postfix, daemon, **MX_CLIENT)

    assert connected_clients(greylist) == []
    assert "eom" not in greylist.names()
    assert mail["X-Greylist"] is None
    # the same remote client is not spared by the spam checker
    assert connected_clients(spamass) == ["mail.example.net"]
    assert mail["X-Spam-Stand-In"] == "checked"


def test_trusted_sender_domain_reaches_greylist_with_macro(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, greylist, _ = start_stand_ins(scripted_milter, mmd_daemon)

    send(postfix, daemon, sender="someone@gmail.com", **S25R_CLIENT)

    envfrom = greylist.last("envfrom")
    assert envfrom["args"][0] == "<someone@gmail.com>"
    assert envfrom["macros"]["{trusted_domain}"] == "yes"
    assert "eom" in greylist.names()


# ------------------------------------------------------------ Remote Network (spamass stand-in)


def test_local_network_client_skips_spamass(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, greylist, spamass = start_stand_ins(scripted_milter, mmd_daemon)

    mail = send(postfix, daemon, **LAN_CLIENT)

    assert connected_clients(spamass) == []
    assert connected_clients(greylist) == []
    assert mail["X-Spam-Stand-In"] is None
    assert mail["X-Greylist"] is None
    # mmd still asked each child to negotiate: it was there, just not applied
    assert "negotiate" in spamass.names()
    # with no child applied mmd accepts the connection and Postfix drops it without
    # QUIT: that is the session's normal end, not a client that went away
    log = daemon.wait_for_log("[session][end]", count=2)
    assert "[session][disconnected]" not in log, log
    ends = [line for line in log.splitlines() if "[session][end]" in line]
    assert all("[session][end][connect][accept]" in line for line in ends), ends


def test_remote_client_reaches_spamass(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, _, spamass = start_stand_ins(scripted_milter, mmd_daemon)

    mail = send(postfix, daemon, **S25R_CLIENT)

    assert connected_clients(spamass) == ["ppp123.example.com"]
    assert spamass.last("connect")["macros"]["_"].startswith("ppp123.example.com [203.0.113.5]")
    assert "eom" in spamass.names()
    assert mail["X-Spam-Stand-In"] == "checked"


def test_loopback_client_skips_spamass(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, _, spamass = start_stand_ins(scripted_milter, mmd_daemon)

    mail = send(postfix, daemon)  # no XCLIENT: Postfix's own 127.0.0.1

    assert connected_clients(spamass) == []
    assert mail["X-Spam-Stand-In"] is None


# ------------------------------------------------------------ (Un)authenticated


def test_authenticated_sender_skips_unauthenticated_only_children(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    daemon, greylist, spamass = start_stand_ins(scripted_milter, mmd_daemon)
    client = ("--connect-host", "ppp123.example.com", "--connect-address", "203.0.113.5")

    signed_in = run_test_server("-s", daemon.spec, *client, "--authenticated-name", "alice",
                                "--authenticated-type", "PLAIN", "--output-message")

    # no child applies once the login is known: the manager's fallback_status (accept)
    assert signed_in.status_line == "status: accept", signed_in
    lines = signed_in.stdout.splitlines()
    assert "+ X-Greylist: checked" not in lines
    assert "+ X-Spam-Stand-In: checked" not in lines
    # both saw the connection (S25R, remote) but left at MAIL, where the login is known
    for recorder in (greylist, spamass):
        assert "connect" in recorder.names()
        assert "envfrom" not in recorder.names()
        assert "eom" not in recorder.names()

    greylist.clear()
    anonymous = run_test_server("-s", daemon.spec, *client, "--output-message")

    assert anonymous.status_line == "status: pass", anonymous
    lines = anonymous.stdout.splitlines()
    assert "+ X-Greylist: checked" in lines
    assert "+ X-Spam-Stand-In: checked" in lines
    assert "eom" in greylist.names()


def test_authenticated_condition_applies_only_to_logged_in_senders(
    scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    signer, signer_saw = scripted_milter(eom={"add_header": [["X-Signed-For", "members"]]})
    daemon = mmd_daemon(milters=[{"name": "signer", "connection_spec": signer,
                                  "applicable_conditions": ["Authenticated"]}])

    anonymous = run_test_server("-s", daemon.spec, "--output-message")
    signed_in = run_test_server("-s", daemon.spec, "--authenticated-name", "alice",
                                "--output-message")

    assert "+ X-Signed-For: members" not in anonymous.stdout.splitlines(), anonymous
    assert "+ X-Signed-For: members" in signed_in.stdout.splitlines(), signed_in
    assert signer_saw.last("envfrom")["macros"]["{auth_authen}"] == "alice"


# ------------------------------------------------------------ stress


def test_stress_notifies_greylist_and_skips_spamass(
    postfix: Postfix, scripted_milter: ScriptedMilterFactory, mmd_daemon: MmdDaemonFactory
) -> None:
    greylist, greylist_saw = scripted_milter(name="greylist", macros=["{stress}"])
    spamass, spamass_saw = scripted_milter(
        name="spamass", eom={"add_header": [["X-Spam-Stand-In", "checked"]]})
    daemon = mmd_daemon(
        milters=[
            {"name": "milter-greylist", "connection_spec": greylist,
             "applicable_conditions": GREYLIST_CONDITIONS},
            {"name": "spamass-milter", "connection_spec": spamass,
             "applicable_conditions": SPAMASS_CONDITIONS},
        ],
        conditions={"stress": {"threshold": 2}},
    )
    postfix.set_milters(daemon.spec)

    # an idle S25R client holds one session open in mmd: the next one reaches the threshold
    with socket.create_connection(("127.0.0.1", postfix.port), timeout=10) as idle:
        reader = idle.makefile("rb")
        assert reader.readline().startswith(b"220"), "no banner"
        idle.sendall(b"EHLO idle.example.com\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        idle.sendall(b"XCLIENT NAME=ppp9.example.com ADDR=203.0.113.9\r\n")
        assert reader.readline().startswith(b"220"), "XCLIENT refused"
        greylist_saw.wait_for("connect")
        stressed = send(postfix, daemon, **S25R_CLIENT)
        stressed_connect = greylist_saw.last("connect")
        stressed_spamass = connected_clients(spamass_saw)
        idle.sendall(b"QUIT\r\n")
    greylist_saw.clear()
    spamass_saw.clear()
    calm = send(postfix, daemon, **S25R_CLIENT)

    assert stressed_connect["macros"].get("{stress}") == "yes", (stressed_connect, daemon.log())
    assert stressed_spamass == ["ppp9.example.com"]  # the idle one came before the stress
    assert stressed_connect["args"][0] == "ppp123.example.com"
    assert stressed["X-Spam-Stand-In"] is None
    assert "{stress}" not in greylist_saw.last("connect")["macros"]
    assert connected_clients(spamass_saw) == ["ppp123.example.com"]
    assert calm["X-Spam-Stand-In"] == "checked"
