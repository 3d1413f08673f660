"""The install guide end to end (docs/install-debian.md) on the real systemd container.

Debian 12 packages started by their own units (spamd + spamass-milter, clamd + clamav-milter,
opendkim), a greylist stand-in run as milter-greylist.service, Postfix configured with
postconf and started by its unit, and mmd started by its socket unit with no configuration
file at all: detection finds the children and gives them the reference's default conditions.
Mail goes in over SMTP (swaks to 127.0.0.1:25 inside the container) and is read back from the
mailbox; mmd's journal entries are checked with journalctl.

The guide's steps run once for the module (spamd alone takes seconds to start); every test
leaves the services as it found them, so the tests can run in any order.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from tests.support.container import SystemdContainer
from tests.support.docblocks import runnable
from tests.support.guide_setup import (
    CHROOT_DROPIN,
    CHROOT_EXAMPLE,
    DKIM_DOMAIN,
    DKIM_SELECTOR,
    EICAR,
    GREYLIST_REPLY,
    GTUBE,
    GUIDE,
    MANAGER,
    MANAGER_SOCKET,
    MANAGER_SOCKET_UNIT,
    OPENDKIM_SETTINGS,
    POSTFIX_MILTER_SETTINGS,
    ROOT,
    SPAMASS_OPTIONS,
    SPAMASS_REJECT,
    SPAMASSASSIN_NO_DNS,
    GuideHost,
)
from tests.support.probes import wait_for

pytestmark = pytest.mark.system

# Documentation addresses (RFC 5737), used only as XCLIENT data: no traffic goes there.
DIALUP = ("ppp123.example.com", "203.0.113.5")  # looks like an end-user line: S25R applies
MX = ("mx.example.net", "203.0.113.6")  # a regular mail server: S25R does not apply


@pytest.fixture(scope="module")
def guide(guide_host: SystemdContainer) -> GuideHost:
    host = GuideHost(guide_host)
    # the first mail starts mmd through its socket (and warms spamd up)
    before = host.unit(MANAGER, "ActiveState")["ActiveState"]
    first = host.send(client_name=MX[0], client_address=MX[1])
    host.delivered(first, timeout=60)
    host.first_mail_states = (before, host.unit(MANAGER, "ActiveState")["ActiveState"])
    return host


def test_the_debian_guide_shows_what_the_test_does() -> None:
    guide_text = (ROOT / "docs" / "install-debian.md").read_text()
    lines = {line.strip().rstrip("\\").strip().strip("'") for line in guide_text.splitlines()}
    for setting in POSTFIX_MILTER_SETTINGS:
        assert setting in lines, setting
    for setting in (*SPAMASSASSIN_NO_DNS, *OPENDKIM_SETTINGS):
        assert setting in lines, setting
    assert f'OPTIONS="{SPAMASS_OPTIONS}"' in guide_text
    assert CHROOT_EXAMPLE in guide_text and CHROOT_DROPIN in guide_text
    for name in ("troubleshooting.md", "install-rhel.md"):
        assert (ROOT / "docs" / name).is_file(), name


def test_the_readme_installs_as_the_guide_does() -> None:
    """The README's Install blocks are the guide's, so the guide's test proves both."""
    for value in ("build", "install"):
        readme = [block.text for block in runnable(ROOT / "README.md", "run", value)]
        guide = [block.text for block in runnable(GUIDE, "run", value)]
        assert readme == guide, value
    assert guide == ["apt install ./dist/milter-manager_*.deb\n"]


def test_every_runnable_block_of_the_guide_is_run_in_document_order() -> None:
    """build (built_deb), install (installed_mmd), then the guide fixture's steps, in order."""
    tagged = [block.tags["run"] for block in runnable(GUIDE)]
    assert tagged == ["build", "install", "chroot", "spamassassin", "spamassassin",
                      "spamassassin-start", "clamav", "clamav", "clamav-start", "opendkim",
                      "opendkim-start", "postfix"]


def replies(result_transcript: str) -> str:
    return "\n".join(line for line in result_transcript.splitlines() if line.startswith("<"))


def test_mmd_runs_from_its_socket_with_detected_children_only(guide: GuideHost) -> None:
    c = guide.c
    socket_unit = guide.unit(MANAGER_SOCKET_UNIT, "Listen", "DropInPaths", "ActiveState")
    assert socket_unit["Listen"] == f"{MANAGER_SOCKET} (Stream)"
    assert CHROOT_DROPIN in socket_unit["DropInPaths"]
    # Postfix's first connection started the daemon: nobody ran `systemctl start` for it
    assert guide.first_mail_states == ("inactive", "active")
    service = guide.unit(MANAGER, "ActiveState", "SubState", "TriggeredBy", "StatusText")
    assert (service["ActiveState"], service["SubState"]) == ("active", "running")
    assert MANAGER_SOCKET_UNIT in service["TriggeredBy"]
    # no configuration file: everything below comes from detection
    assert c.run(["test", "-e", "/etc/milter-manager/milter-manager.toml"],
                 check=False).returncode != 0
    shown = c.run(["milter-manager", "--show-config"]).stdout
    for name in ("milter-greylist", "clamav-milter", "spamass-milter", "opendkim"):
        assert f'name = "{name}"' in shown, name
        assert name in service["StatusText"], service["StatusText"]
    greylist = shown.split('name = "milter-greylist"', 1)[1].split("[[milter]]", 1)[0]
    assert ('applicable_conditions = ["S25R", "Remote Network", "Unauthenticated", '
            '"Trusted Domain", "Stress Notify"]') in greylist
    assert "detected: milter-greylist.service, /etc/milter-greylist/greylist.conf" in greylist


def test_clean_mail_gets_every_childs_headers(guide: GuideHost) -> None:
    # From a remote client in opendkim's InternalHosts: spam and virus scanned, and signed.
    remote = guide.delivered(guide.send(client_name=MX[0], client_address=MX[1]))
    assert remote["X-Spam-Status"].startswith("No, score="), remote
    assert "X-Spam-Checker-Version" in remote
    assert remote["X-Virus-Status"] == "Clean"
    assert remote["X-Virus-Scanned"].startswith("clamav-milter")
    signature = remote["DKIM-Signature"]
    assert signature is not None, remote
    assert f"d={DKIM_DOMAIN};" in signature and f"s={DKIM_SELECTOR};" in signature
    # From this host (127.0.0.1): signed and virus-scanned, but spamass-milter is not applied
    # to local clients (its default conditions: Remote Network, Unauthenticated, No Stress).
    local = guide.delivered(guide.send())
    assert local["DKIM-Signature"] is not None, local
    assert local["X-Virus-Status"] == "Clean"
    assert "X-Spam-Status" not in local


def test_gtube_is_rejected_with_spamass_milters_text(guide: GuideHost) -> None:
    result = guide.send(GTUBE, client_name=MX[0], client_address=MX[1])
    assert result.exit_code != 0
    assert f"<** {SPAMASS_REJECT}" in result.transcript, replies(result.transcript)
    assert result.queue_id is None


def test_eicar_is_rejected(guide: GuideHost) -> None:
    cursor = guide.journal_cursor()
    result = guide.send(EICAR)
    assert result.exit_code != 0
    assert re.search(r"^<\*\* 550 5\.7\.1 ", result.transcript, re.M), replies(result.transcript)
    assert "queued as" not in result.transcript
    guide.wait_for_session_ends(cursor, 1)
    verdicts = guide.manager_entries(cursor, MMD_EVENT="milter-verdict", MMD_MILTER="clamav-milter")
    assert [entry["MMD_STATUS"] for entry in verdicts] == ["reject"], verdicts


def test_greylist_applies_only_to_s25r_looking_clients(guide: GuideHost) -> None:
    before = len(guide.greylist_calls())
    dialup = guide.send(client_name=DIALUP[0], client_address=DIALUP[1])
    assert dialup.exit_code != 0
    assert "<** " + " ".join(GREYLIST_REPLY) in dialup.transcript, replies(dialup.transcript)
    server = guide.send(client_name=MX[0], client_address=MX[1])
    guide.delivered(server)
    calls = guide.greylist_calls()[before:]
    connects = [call["args"][:2] for call in calls if call["event"] == "connect"]
    # the child saw the dial-up client's whole envelope, and never the mail server
    assert connects == [[DIALUP[0], 2]], calls
    recipients = [call for call in calls if call["event"] == "envrcpt"]
    assert len(recipients) == 1 and recipients[0]["macros"]["_"].startswith(DIALUP[0])


def test_milter_test_server_prints_status_and_elapsed_time(guide: GuideHost) -> None:
    def test_server(*options: str) -> list[str]:
        done = guide.c.run(["milter-test-server", "-s", f"unix:{MANAGER_SOCKET}", *options],
                           timeout=60)
        lines = done.stdout.splitlines()
        assert re.fullmatch(r"elapsed-time: \d+\.\d+ seconds", lines[1]), done.stdout
        return lines

    # its default client (mx.example.net, 192.168.123.123) is local: no greylisting, no spam check
    assert test_server()[0] == "status: accept"
    # the troubleshooting guide's examples: pretend to be a dial-up client, send GTUBE
    dialup = test_server("--connect-host", DIALUP[0], "--connect-address", DIALUP[1])
    code, extended, text = GREYLIST_REPLY
    assert dialup[0] == f"status: temporary-failure [{code}]<{extended}>({text})"
    spam = test_server("--connect-address", MX[1], "-b", GTUBE)
    assert spam[0] == "status: reject [550]<5.7.1>(Blocked by SpamAssassin)"
    # which child added which header: a local client's message is signed and scanned
    shown = test_server("--connect-host", "localhost", "--connect-address", "127.0.0.1",
                        "--output-message")
    added = [line for line in shown if line.startswith("+ ")]
    assert any(line.startswith("+ DKIM-Signature: v=1;") for line in added), shown
    assert "+ X-Virus-Status: Clean" in added, shown


def test_disabling_a_child_and_reloading_mmd_leaves_postfix_alone(guide: GuideHost) -> None:
    c = guide.c
    postfix_files = guide.postfix_checksum()
    main_pid = guide.unit(MANAGER, "MainPID")["MainPID"]
    assert guide.send(EICAR).exit_code != 0
    c.run(["systemctl", "disable", "--now", "clamav-milter"], timeout=120)
    try:
        c.run(["systemctl", "reload", MANAGER], timeout=130)
        cursor = guide.journal_cursor()
        passed = guide.delivered(guide.send(EICAR))
        assert "X-Virus-Status" not in passed
        guide.wait_for_session_ends(cursor, 1)
        children = {entry.get("MMD_MILTER") for entry in
                    guide.manager_entries(cursor, MMD_EVENT="milter-verdict")}
        assert "clamav-milter" not in children and "opendkim" in children, children
    finally:
        c.run(["systemctl", "enable", "--now", "clamav-milter"], timeout=120)
        c.run(["systemctl", "reload", MANAGER], timeout=130)
    assert guide.send(EICAR).exit_code != 0
    assert guide.unit(MANAGER, "MainPID")["MainPID"] == main_pid
    assert guide.postfix_checksum() == postfix_files


def test_one_session_end_entry_per_session(guide: GuideHost) -> None:
    cursor = guide.journal_cursor()
    results = [
        guide.send(),
        guide.send(client_name=MX[0], client_address=MX[1]),
        guide.send(GTUBE, client_name=MX[0], client_address=MX[1]),
        guide.send(client_name=DIALUP[0], client_address=DIALUP[1]),
    ]
    for result in results[:2]:
        guide.delivered(result)
    guide.wait_for_session_ends(cursor, len(results))
    ends = guide.manager_entries(cursor, MMD_EVENT="session-end")
    per_session = Counter(entry["MMD_SESSION_ID"] for entry in ends)
    assert set(per_session.values()) == {1}, per_session
    # an SMTP connection that uses XCLIENT is two milter sessions in Postfix (it reconnects
    # its milters for the new client); each accepted or rejected message is in exactly one
    queue_ids = Counter(entry["MMD_QUEUE_ID"] for entry in ends if entry["MMD_QUEUE_ID"])
    for result in results[:2]:
        assert queue_ids[result.queue_id] == 1, (result.queue_id, ends)
    statuses = {entry["MMD_CLIENT_NAME"]: entry["MMD_STATUS"] for entry in ends
                if entry["MMD_STATUS"] == "reject"}
    assert statuses == {MX[0]: "reject"}, ends  # the GTUBE one
    for entry in ends:
        assert entry["MESSAGE"].startswith("[session][end]["), entry
        float(entry["MMD_ELAPSED"])


def test_a_stopped_child_follows_its_fallback_and_comes_back(guide: GuideHost) -> None:
    c = guide.c
    main_pid = guide.unit(MANAGER, "MainPID")["MainPID"]
    assert "DKIM-Signature" in guide.delivered(guide.send())
    # Postfix answers 451 if mmd itself fails or breaks a session: only mmd's handling of the
    # child (its fallback_status) can let every mail below through
    with guide.milter_default_action("tempfail"):
        cursor = guide.journal_cursor()
        # mail keeps flowing while opendkim stops: every message is accepted
        flow = c.popen("for i in 1 2 3 4 5 6 7 8; do swaks --server 127.0.0.1:25 "
                       "--from sender@example.com --to receiver@example.org >/dev/null 2>&1 "
                       "&& echo accepted || echo refused; done")
        try:
            c.run(["systemctl", "stop", "opendkim"], timeout=60)
            out, err = flow.communicate(timeout=120)
            assert out.split() == ["accepted"] * 8, (out, err)
            unsigned = guide.delivered(guide.send())
            assert "DKIM-Signature" not in unsigned
            assert unsigned["X-Virus-Status"] == "Clean"  # the other children still work
            guide.wait_for_session_ends(cursor, 9)
            # sessions that met opendkim stopping took its fallback; once systemd said it
            # stopped, mmd left it out (one milter-state entry, docs/detection.md)
            errors = guide.manager_entries(cursor, MMD_EVENT="milter-error",
                                           MMD_MILTER="opendkim")
            assert all("opendkim" in error["MESSAGE"] for error in errors), errors
            fallback = [entry["MMD_STATUS"] for entry in guide.manager_entries(
                cursor, MMD_EVENT="milter-verdict", MMD_MILTER="opendkim")]
            assert set(fallback) <= {"accept", "pass"}, fallback
            inactive = guide.manager_entries(cursor, MMD_EVENT="milter-state",
                                             MMD_MILTER="opendkim")
            assert [e["MMD_STATUS"] for e in inactive] == ["inactive"], inactive
            # the running daemon's view, as docs/troubleshooting.md shows it
            shown = c.run(["busctl", "--json=short", "call", "org.miltermanager.Manager1",
                           "/org/miltermanager/Manager1", "org.miltermanager.Manager1",
                           "GetMilter", "s", "opendkim"]).stdout
            milter = json.loads(shown)["data"][0]
            assert milter[0] == "opendkim" and milter[2] is False  # left out while stopped
            assert milter[5:7] == [False, "inactive: opendkim.service is inactive"], milter
        finally:
            if flow.poll() is None:
                flow.kill()
                flow.wait()
            c.run(["systemctl", "start", "opendkim"], timeout=60)
        c.run(["test", "-S", "/run/opendkim/opendkim.sock"])
        # mmd sees the start live (within a second) and takes opendkim back in
        wait_for(lambda: guide.manager_entries(cursor, MMD_EVENT="milter-state",
                                               MMD_MILTER="opendkim", MMD_STATUS="active"),
                 "opendkim back in the set of children", timeout=10)
        assert "DKIM-Signature" in guide.delivered(guide.send())
    # mmd was neither restarted nor reloaded
    assert guide.unit(MANAGER, "MainPID")["MainPID"] == main_pid


@pytest.mark.parametrize("default_action", ["accept", "tempfail"])
def test_postfix_default_action_applies_when_mmd_is_down(
    guide: GuideHost, default_action: str
) -> None:
    c = guide.c
    with guide.milter_default_action(default_action):
        c.run(["systemctl", "stop", MANAGER, MANAGER_SOCKET_UNIT], timeout=120)
        try:
            assert c.run(["test", "-e", MANAGER_SOCKET], check=False).returncode != 0
            result = guide.send()
            if default_action == "accept":
                unfiltered = guide.delivered(result)
                assert "X-Virus-Status" not in unfiltered
                assert "DKIM-Signature" not in unfiltered
            else:
                assert result.exit_code != 0
                assert re.search(r"^<\*\* 451 4\.7\.1 ", result.transcript, re.M), (
                    replies(result.transcript)
                )
        finally:
            c.run(["systemctl", "start", MANAGER_SOCKET_UNIT])
    # back through mmd: started again by the next connection
    assert guide.delivered(guide.send())["X-Virus-Status"] == "Clean"
    assert guide.unit(MANAGER, "ActiveState")["ActiveState"] == "active"
