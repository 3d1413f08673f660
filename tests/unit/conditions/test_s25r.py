"""S25R: every row names the rule that must decide it (asserted in the reason)."""

from __future__ import annotations

import pytest

from mmd.conditions.s25r import DEFAULT_BLACKLIST, S25R, extra_blacklist_rules
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

V4 = ("inet", "192.0.2.25")

WHITE = "whitelist entry"
NONE = "no blacklist rule matched"


def rule(label: str) -> str:
    return f"blacklist rule {label} "


# (client name, applied, text the reason must contain)
CASES: list[tuple[str, bool, str]] = [
    # observed on the reference
    ("ppp123.example.com", True, rule("s25r-6")),
    ("mx.example.net", False, NONE),
    ("mail-yw1-f170.google.com", False, WHITE + " .google.com"),
    # no usable reverse name
    ("unknown", True, rule("unknown")),
    ("[192.0.2.1]", True, rule("no-reverse-name")),
    ("[2001:db8::1]", True, rule("no-reverse-name")),
    ("Unknown", False, NONE),  # the reference compares "unknown" case-sensitively
    ("unknown.example.com", False, NONE),
    # rule 1: digit, non-digits, digit in the first label, a dot later
    ("p1234-ipbf01.tokyo.ocn.ne.jp", True, rule("s25r-1")),
    ("h123-45-67-89.example.jp", True, rule("s25r-1")),
    ("dhcp-192-0-2-1.example.edu", True, rule("s25r-1")),  # rule 1 comes before rule 6
    ("a1b2.example.com", True, rule("s25r-1")),
    ("node-1-2.example.jp", True, rule("s25r-1")),
    ("cpe-1-2-3-4.nyc.res.rr.com", True, rule("s25r-1")),
    ("c-73-22-11-9.hsd1.il.comcast.net", True, rule("s25r-1")),
    ("pool-71-1-2-3.nycmny.fios.verizon.net", True, rule("s25r-1")),
    ("1-2-3-4.static.example.net", True, rule("s25r-1")),
    ("p5B0C1D2E.dip0.t-ipconnect.de", True, rule("s25r-1")),
    ("outbound-2-10.smtp.example.com", True, rule("s25r-1")),
    ("a1b2", False, NONE),  # rule 1 needs a dot after the first label
    ("o-1.example.jp", False, NONE),
    # rule 2: five digits in a row in the first label
    ("KD123456789012.ppp-bb.dion.ne.jp", True, rule("s25r-2")),
    ("softbank219012345678.bbtec.net", True, rule("s25r-2")),
    ("ab12345.example.com", True, rule("s25r-2")),
    ("12345", True, rule("s25r-2")),
    ("p12345.fakegoogle.com", True, rule("s25r-2")),  # not under .google.com
    ("ab1234.example.com", False, NONE),
    # rule 3: first or second label starts with a digit, 3+ labels follow
    ("123.45.67.89.example.com", True, rule("s25r-3")),
    ("mail.123.example.co.jp", True, rule("s25r-3")),
    ("static.88-198-1-2.clients.your-server.de", True, rule("s25r-3")),
    ("mail1.2nd.example.co.jp", True, rule("s25r-3")),
    ("mail1.2nd.example.com", False, NONE),
    ("ns1.123.example.jp", False, NONE),
    # rule 4: first label ends in a digit, second has digit-dash-digit
    ("host1.a2-3.example.com", True, rule("s25r-4")),
    # rule 5: first two labels end in a digit, 3+ labels follow
    ("c1.d2.example.co.jp", True, rule("s25r-5")),
    # rule 6: dial-up words, case-insensitive
    ("dhcp42.example.edu", True, rule("s25r-6")),
    ("dialup7.example.net", True, rule("s25r-6")),
    ("DSL99.Example.COM", True, rule("s25r-6")),
    ("adsl12.example.net", True, rule("s25r-6")),
    ("xdsl1.example.net", True, rule("s25r-6")),
    ("vdsl5.example.org", True, rule("s25r-6")),
    ("ppp-9.example.org", True, rule("s25r-6")),
    ("bdsl1.example.net", False, NONE),  # b is not one of [achrsvx]
    ("pppoe.example.net", False, NONE),
    ("ppp", False, NONE),
    # ordinary server names
    ("smtp1.example.com", False, NONE),
    ("mx01.mail.example.com", False, NONE),
    ("mail2.example.org", False, NONE),
    ("mta-v1.mail.example.com", False, NONE),
    ("sv01.example.co.jp", False, NONE),
    ("www3.example.org", False, NONE),
    ("google.com", False, NONE),  # the suffix .google.com needs a subdomain
    ("", False, NONE),
    # default whitelist, case and trailing dot ignored
    ("mail-wm1-f41.google.com", False, WHITE + " .google.com"),
    ("mail-ed1-f53.GOOGLE.com", False, WHITE + " .google.com"),
    ("mail-yw1-f170.google.com.", False, WHITE + " .google.com"),
    ("a8-12.smtp-out.amazonses.com", False, WHITE + " .smtp-out.amazonses.com"),
    ("o1.ptr1234.mg.gitlab.com", False, WHITE + " .mg.gitlab.com"),
    ("wrqvtzvf.outbound-mail.sendgrid.net", False, WHITE + " .sendgrid.net"),
    ("mail-1-2.example.obsmtp.com", False, WHITE + " .obsmtp.com"),
    ("ip-10-1-2-3.slack.com", False, WHITE + " .slack.com"),
]


def facts(name: str, family: str = "inet", address: str = "192.0.2.25") -> SessionFacts:
    return SessionFacts(client_name=name, family=family, client_address=address)


def test_enough_cases() -> None:
    assert len(CASES) >= 44
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "applied", "because"), CASES)
def test_default_rules(name: str, applied: bool, because: str) -> None:
    decision = S25R().decide(Stage.CONNECT, facts(name))
    assert decision is not None
    assert decision.apply is applied, decision.reason
    assert because in decision.reason, decision.reason
    assert decision.reason.startswith("s25r: ")
    assert decision.macros == ()


@pytest.mark.parametrize(
    ("family", "address", "ipv4_only", "applied", "because"),
    [
        ("inet6", "2001:db8::25", True, False, "not IPv4 (inet6)"),
        ("unix", "", True, False, "not IPv4 (unix)"),
        ("unknown", "", True, False, "not IPv4 (unknown)"),
        ("inet6", "::ffff:192.0.2.1", True, True, rule("s25r-6")),  # IPv4 on a v6 socket
        ("inet6", "2001:db8::25", False, True, rule("s25r-6")),
        ("unix", "", False, True, rule("s25r-6")),
    ],
)
def test_ipv4_only(family: str, address: str, ipv4_only: bool, applied: bool, because: str) -> None:
    condition = S25R(ipv4_only=ipv4_only)
    decision = condition.decide(Stage.CONNECT, facts("ppp123.example.com", family, address))
    assert decision is not None
    assert decision.apply is applied
    assert because in decision.reason


def test_ipv6_client_with_listed_name_not_applied() -> None:
    decision = S25R().decide(Stage.CONNECT, facts("mail.example.jp", "inet6", "2001:db8::25"))
    assert decision is not None and decision.apply is False


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.CONNECT])
def test_only_connect_decides(stage: Stage) -> None:
    assert S25R().decide(stage, facts("ppp123.example.com")) is None


def test_ruby_anchors_translated() -> None:
    # \z is "end of string": a name with a trailing newline is not a bracketed address
    for rule_ in DEFAULT_BLACKLIST:
        assert "\\z" not in rule_.regex.pattern
    decision = S25R().decide(Stage.CONNECT, facts("[192.0.2.1]\n"))
    assert decision is not None and decision.apply is False


def test_digits_are_ascii_like_ruby() -> None:
    # Arabic-Indic digits are not \d for Ruby; they must not make rule 2 match
    decision = S25R().decide(Stage.CONNECT, facts("ab\u0661\u0662\u0663\u0664\u0665.example.com"))
    assert decision is not None and decision.apply is False


def test_extra_whitelist_wins_over_blacklist() -> None:
    whitelist = (".smtp.example.com", "/^mx\\d+\\.example\\.org$/", "ppp1.example.net")
    condition = S25R(whitelist=whitelist)
    cases = {
        "outbound-2-10.smtp.example.com": ".smtp.example.com",
        "MX12345.example.org": "/^mx\\d+\\.example\\.org$/",
        "ppp1.example.net": "ppp1.example.net",
    }
    for name, entry in cases.items():
        decision = condition.decide(Stage.CONNECT, facts(name))
        assert decision is not None
        assert decision.apply is False
        assert f"whitelist entry {entry} matched" in decision.reason
    # the default whitelist is gone when only extras are given to the class
    decision = condition.decide(Stage.CONNECT, facts("mail-yw1-f170.google.com"))
    assert decision is not None and decision.apply is True


def test_extra_blacklist() -> None:
    condition = S25R(
        blacklist=(*DEFAULT_BLACKLIST, *extra_blacklist_rules(["/\\.dyn\\./", ".pool.example"]))
    )
    cases = {
        "host.DYN.example.com": ("extra-1", True),
        "a.b.pool.example": ("extra-2", True),
        "pool.example": (NONE, False),
    }
    for name, (because, applied) in cases.items():
        decision = condition.decide(Stage.CONNECT, facts(name))
        assert decision is not None
        assert decision.apply is applied, name
        assert because in decision.reason, decision.reason


def test_bad_extra_blacklist_entry() -> None:
    with pytest.raises(ValueError, match="bad regular expression"):
        extra_blacklist_rules(["/(unclosed/"])
    with pytest.raises(ValueError, match="bad entry"):
        extra_blacklist_rules(["two words"])
