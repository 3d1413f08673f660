"""milter-test-server: option parsing, message changes and the classic output format."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmd.adapters.mta_client import ReplyText, SessionResult, split_reply_code
from mmd.cli.test_server import (
    Delivery,
    UsageError,
    apply_changes,
    build_parser,
    format_elapsed,
    format_message,
    format_result,
    format_status,
    main,
    options_from,
    parse_connect_address,
    parse_mail,
    parse_milter_spec,
)
from mmd.config.connection_spec import ConnectionSpec, InetSpec, SpecError, UnixSpec
from mmd.protocol import messages as m

# ------------------------------------------------------------ specs and replies


def _target(spec: ConnectionSpec) -> tuple[str, str, str, int]:
    """(family, path, host connected to, port) of a parsed spec."""
    if isinstance(spec, UnixSpec):
        return ("unix", spec.path, "", 0)
    return (spec.family, "", spec.connect_host(), spec.port)


@pytest.mark.parametrize(
    ("text", "family", "path", "host", "port"),
    [
        ("unix:/run/x.sock", "unix", "/run/x.sock", "", 0),
        ("local:/run/x.sock", "unix", "/run/x.sock", "", 0),
        ("/run/x.sock", "unix", "/run/x.sock", "", 0),
        ("inet:10025", "inet", "", "127.0.0.1", 10025),
        ("inet:10025@localhost", "inet", "", "localhost", 10025),
        ("inet:10025@[192.0.2.1]", "inet", "", "192.0.2.1", 10025),
        ("inet6:10025@[::1]", "inet6", "", "::1", 10025),
    ],
)
def test_connection_specs(text: str, family: str, path: str, host: str, port: int) -> None:
    spec = parse_milter_spec(text)
    assert _target(spec) == (family, path, host, port)


@pytest.mark.parametrize("text", ["", "unix:", "tcp:25", "inet:port@host", "inet:0", "inet:70000"])
def test_bad_connection_specs(text: str) -> None:
    with pytest.raises(SpecError):
        parse_milter_spec(text)


def test_connect_address_takes_a_spec_or_a_plain_address() -> None:
    spec = parse_connect_address("inet:2525@[10.0.0.1]")
    assert isinstance(spec, InetSpec)
    assert spec.port == 2525
    plain = parse_connect_address("10.0.0.1")
    assert _target(plain) == ("inet", "", "10.0.0.1", 50443)
    assert _target(parse_connect_address("2001:db8::1"))[0] == "inet6"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550 5.7.1 Blocked by SpamAssassin", ReplyText(550, "5.7.1", "Blocked by SpamAssassin")),
        ("451 4.7.1 Try later", ReplyText(451, "4.7.1", "Try later")),
        ("550 Go away", ReplyText(550, None, "Go away")),
        ("554 5.7.1", ReplyText(554, "5.7.1", None)),
    ],
)
def test_reply_codes_split_like_the_classic(text: str, expected: ReplyText) -> None:
    assert split_reply_code(text) == expected


# ------------------------------------------------------------ options


def test_defaults_are_the_classic_ones() -> None:
    options = options_from([])
    session = options.session
    assert options.spec_text == "unix:/run/milter-manager/milter-manager.sock"
    assert session.negotiate_version == 6
    assert session.connect_host == "mx.example.net"
    assert isinstance(session.connect_address, InetSpec)
    assert (session.connect_address.host, session.connect_address.port) == \
        ("192.168.123.123", 50443)
    assert session.helo_fqdn == "delian"
    assert session.envelope_from == "<sender@example.com>"
    assert list(session.recipients) == ["<receiver@example.org>"]
    assert list(session.headers) == [("From", "<sender@example.com>"),
                                     ("To", "<receiver@example.org>")]
    assert b"".join(session.body_chunks).startswith(b"La de da de da 1.")
    assert options.timeouts.reading == 10.0
    assert options.timeouts.end_of_message == 300.0


def test_h_is_a_header_and_help_is_long_only() -> None:
    options = options_from(["-h", "Subject: hello", "-h", "X-Two:2"])
    assert list(options.session.headers)[:2] == [("Subject", "hello"), ("X-Two", "2")]
    help_text = build_parser().format_help()
    assert "--help" in help_text
    assert "-h NAME:VALUE, --header NAME:VALUE" in help_text


def test_header_without_colon_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        options_from(["-h", "Subject"])
    assert "delimiter ':'" in capsys.readouterr().err


def test_envelope_and_body_options() -> None:
    options = options_from(["-f", "a@example.com", "-r", "b@example.org", "-r", "<c@example.org>",
                            "-b", "one", "-b", "two", "-s", "inet:1025@[127.0.0.1]"])
    session = options.session
    assert session.envelope_from == "<a@example.com>"
    assert list(session.recipients) == ["<b@example.org>", "<c@example.org>"]
    assert list(session.body_chunks) == [b"one", b"two"]
    assert ("To", "<b@example.org>") in session.headers
    assert options.spec_text == "inet:1025@[127.0.0.1]"  # printed as given


def test_macros_per_stage_and_authentication() -> None:
    options = options_from(["--authenticated-name", "alice", "--authenticated-type", "PLAIN",
                            "--authenticated-author", "bob", "--connect-macro", "{x}:1",
                            "--end-of-message-macro", "{y}:2", "--queue-id", "QID1",
                            "--name", "tester"])
    macros = {stage: dict(pairs) for stage, pairs in options.session.macros.items()}
    assert macros["envelope-from"]["{auth_authen}"] == "alice"
    assert macros["envelope-from"]["{auth_type}"] == "PLAIN"
    assert macros["envelope-from"]["{auth_author}"] == "bob"
    assert macros["envelope-from"]["i"] == "QID1"
    assert macros["connect"]["{x}"] == "1"
    assert macros["connect"]["{daemon_name}"] == "tester"
    assert macros["connect"]["_"] == "mx.example.net [192.168.123.123]"
    assert macros["end-of-message"] == {"i": "QID1", "{y}": "2"}
    assert options.session.recipient_macros["<receiver@example.org>"] == [
        ("{rcpt_mailer}", "smtp"), ("{rcpt_host}", "example.org"),
        ("{rcpt_addr}", "receiver@example.org")]


def test_mail_file_gives_headers_body_and_envelope(tmp_path: Path) -> None:
    mail_file = tmp_path / "mail.eml"
    mail_file.write_bytes(b"From alice Mon Jan 1 00:00:00 2024\n"
                          b"From: Alice <alice@example.com>\r\n"
                          b"To: bob@example.org\r\n"
                          b"Subject: folded\r\n\tsecond line\r\n"
                          b"\r\n"
                          b"body line 1\r\nbody line 2\r\n")
    session = options_from(["-m", str(mail_file)]).session
    assert session.envelope_from == "<alice@example.com>"
    assert list(session.recipients) == ["<bob@example.org>"]
    assert list(session.headers) == [("From", "Alice <alice@example.com>"),
                                     ("To", "bob@example.org"),
                                     ("Subject", "folded\n\tsecond line")]
    assert list(session.body_chunks) == [b"body line 1\r\nbody line 2\r\n"]


def test_mail_file_with_a_broken_header_is_refused() -> None:
    with pytest.raises(UsageError, match="invalid header"):
        parse_mail(b"From: a@b\n-broken\n\nbody")


def test_missing_mail_file_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-m", str(tmp_path / "nothing")]) == 1
    assert "Loading from" in capsys.readouterr().out


def test_connection_failure_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"unix:{tmp_path}/none.sock"
    assert main(["-s", spec]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"Failed to connect to {spec}\n"
    assert captured.err == ""
    assert main(["-s", spec, "--threads", "2", "-v"]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"Failed to connect to {spec}\n" * 2
    assert "No such file or directory" in captured.err


def test_threads_as_the_classic_counts_them(capsys: pytest.CaptureFixture[str]) -> None:
    from mmd.cli.test_server import options_from

    assert options_from([]).threads == 1  # the classic default 0: one session
    assert options_from(["--threads", "0"]).threads == 1
    assert options_from(["-t", "3"]).threads == 3
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "-1"])
    assert exit_info.value.code == 2
    assert "not a number of threads: -1" in capsys.readouterr().err


def test_negotiate_version_default_is_the_classic_6() -> None:
    from mmd.cli.test_server import options_from

    assert options_from([]).session.negotiate_version == 6
    assert options_from(["--negotiate-version", "2"]).session.negotiate_version == 2


# ------------------------------------------------------------ changes


def _mail() -> Delivery:
    return Delivery("<s@example.com>", ["<r@example.org>"],
                [("Subject", "hi"), ("X-A", "1"), ("X-A", "2")], b"body\n")


def test_header_changes_follow_milter_semantics() -> None:
    result = apply_changes(_mail(), [
        m.AddHeader("X-End", "e"),
        m.InsertHeader(0, "X-Top", "t"),
        m.ChangeHeader(2, "x-a", "two"),   # 2nd X-A, name matched in any case
        m.ChangeHeader(1, "Subject", ""),  # empty value deletes
        m.ChangeHeader(1, "X-New", "n"),   # absent header: added
    ])
    assert result.headers == [("X-Top", "t"), ("X-A", "1"), ("X-A", "two"), ("X-End", "e"),
                              ("X-New", "n")]


def test_envelope_and_body_changes() -> None:
    result = apply_changes(_mail(), [
        m.ChangeFrom("new@example.com"),
        m.AddRecipient("<x@example.org>"),
        m.AddRecipientWithArgs("y@example.org", "NOTIFY=NEVER"),
        m.DeleteRecipient("r@example.org"),
        m.ReplaceBody(b"new "),
        m.ReplaceBody(b"body"),
    ])
    assert result.envelope_from == "<new@example.com>"
    assert result.recipients == ["<x@example.org>", "<y@example.org>"]
    assert result.replaced_body == b"new body"


# ------------------------------------------------------------ output


def test_status_lines() -> None:
    assert format_status(SessionResult(status="pass")) == "status: pass"
    rejected = SessionResult(status="reject",
                             reply=ReplyText(550, "5.7.1", "Blocked by SpamAssassin"))
    assert format_status(rejected) == "status: reject [550]<5.7.1>(Blocked by SpamAssassin)"
    bare = SessionResult(status="reject", reply=ReplyText(550, None, "Go away"))
    assert format_status(bare) == "status: reject [550]<(null)>(Go away)"
    assert format_status(SessionResult(status="pass", quarantine_reason="x")) == \
        "status: quarantine"


def test_elapsed_time_uses_six_significant_digits() -> None:
    assert format_elapsed(0.128) == "elapsed-time: 0.128 seconds"
    assert format_elapsed(0.00123456789) == "elapsed-time: 0.00123457 seconds"


def test_result_with_quarantine_and_message() -> None:
    result = SessionResult(status="accept", quarantine_reason="held", elapsed=0.5,
                           changes=[m.AddHeader("X-Spam", "yes"), m.Quarantine("held")])
    text = format_result(result, _mail(), output_message=True)
    assert text.splitlines() == [
        "status: accept",
        "elapsed-time: 0.5 seconds",
        "Quarantine reason: <held>",
        "",
        "Envelope:------------------------------",
        "  MAIL FROM:<s@example.com>",
        "  RCPT TO:<r@example.org>",
        "Header:--------------------------------",
        "  Subject: hi",
        "  X-A: 1",
        "  X-A: 2",
        "+ X-Spam: yes",
        "Body:----------------------------------",
        "body",
        "",
    ]


def test_session_error_is_printed_instead_of_a_status() -> None:
    result = SessionResult(error="reading timeout")
    assert format_result(result, _mail(), output_message=True) == "reading timeout\n"


def test_changed_and_deleted_lines() -> None:
    original = Delivery("<s@example.com>", ["<a@example.org>", "<b@example.org>"],
                    [("Subject", "old"), ("X-Gone", "1"), ("To", "t")], b"")
    changed = apply_changes(original, [
        m.ChangeHeader(1, "Subject", "new\n\tfolded"),
        m.ChangeHeader(1, "X-Gone", ""),
        m.DeleteRecipient("<a@example.org>"),
        m.ChangeFrom("<o@example.com>"),
    ])
    lines = format_message(original, changed)
    assert lines[:4] == [
        "Envelope:------------------------------",
        "- MAIL FROM:<s@example.com>",
        "+ MAIL FROM:<o@example.com>",
        "- RCPT TO:<a@example.org>",
    ]
    assert lines[4] == "  RCPT TO:<b@example.org>"
    # the classic walk: a value missing from the original is printed as added first
    assert lines[5:11] == [
        "Header:--------------------------------",
        "+ Subject: new",
        "+ \tfolded",
        "- Subject: old",
        "- X-Gone: 1",
        "  To: t",
    ]


def test_body_is_decoded_with_its_charset() -> None:
    original = Delivery("<s@e>", ["<r@e>"], [("Content-Type", 'text/plain; charset="iso-8859-1"')],
                    "caf\u00e9".encode("iso-8859-1"))
    assert format_message(original, original)[-1] == "caf\u00e9"


def test_color_marks_only_changed_lines() -> None:
    original = _mail()
    changed = apply_changes(original, [m.AddHeader("X-New", "1")])
    lines = format_message(original, changed, color=True)
    assert "\033[01;32m+ X-New: 1\033[00m" in lines
    assert "  Subject: hi" in lines
