from __future__ import annotations

import re

import pytest

from mmd.conditions.remote_network import RemoteNetwork, parse_client_address
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

# (family, address, applied, text the reason must contain)
DEFAULT_CASES: list[tuple[str, str, bool, str]] = [
    ("inet", "127.0.0.1", False, "local 127.0.0.0/8"),
    ("inet", "127.1.2.3", False, "local 127.0.0.0/8"),
    ("inet", "10.20.30.40", False, "local 10.0.0.0/8"),
    ("inet", "172.16.0.1", False, "local 172.16.0.0/12"),
    ("inet", "172.31.255.254", False, "local 172.16.0.0/12"),
    ("inet", "172.32.0.1", True, "is remote"),
    ("inet", "192.168.1.5", False, "local 192.168.0.0/16"),
    ("inet", "169.254.10.10", False, "local 169.254.0.0/16"),
    ("inet", "100.64.0.1", True, "is remote"),  # carrier-grade NAT: end users, not ours
    ("inet", "192.0.2.25", True, "is remote"),
    ("inet", "8.8.8.8", True, "is remote"),
    ("inet6", "::1", False, "local ::1/128"),
    ("inet6", "fd12:3456::1", False, "local fc00::/7"),
    ("inet6", "fe80::1", False, "local fe80::/10"),
    ("inet6", "2001:db8::25", True, "is remote"),
    ("inet6", "::ffff:192.168.0.9", False, "local 192.168.0.0/16"),
    ("inet6", "::ffff:203.0.113.9", True, "203.0.113.9 is remote"),
    ("inet6", "[2001:db8::25]", True, "is remote"),
    ("unix", "", False, "unix client is local"),
    ("unknown", "", False, "unknown client is local"),
    ("", "", False, "client is local"),
    ("inet", "not-an-address", True, "unparsable"),
]


@pytest.mark.parametrize(("family", "address", "applied", "because"), DEFAULT_CASES)
def test_default_networks(family: str, address: str, applied: bool, because: str) -> None:
    decision = RemoteNetwork().decide(
        Stage.CONNECT, SessionFacts(family=family, client_address=address)
    )
    assert decision is not None
    assert decision.apply is applied, decision.reason
    assert because in decision.reason, decision.reason


def test_remote_overrides_local() -> None:
    condition = RemoteNetwork(
        local=("10.0.0.0/8", "2001:db8::/32", "198.51.100.7"),
        remote=("10.99.0.0/16", "2001:db8:ff::/48"),
    )
    cases = [
        ("inet", "10.1.1.1", False, "local 10.0.0.0/8"),
        ("inet", "10.99.1.1", True, "in remote 10.99.0.0/16"),
        ("inet6", "2001:db8:1::1", False, "local 2001:db8::/32"),
        ("inet6", "2001:db8:ff::1", True, "in remote 2001:db8:ff::/48"),
        ("inet", "198.51.100.7", False, "local 198.51.100.7/32"),
        ("inet", "198.51.100.8", True, "is remote"),
        ("inet", "127.0.0.1", True, "is remote"),  # local replaced the defaults
    ]
    for family, address, applied, because in cases:
        decision = condition.decide(
            Stage.CONNECT, SessionFacts(family=family, client_address=address)
        )
        assert decision is not None
        assert decision.apply is applied, address
        assert because in decision.reason, decision.reason


def test_bad_network() -> None:
    with pytest.raises(ValueError, match=re.escape("bad network '10.0.0.1/8'")):
        RemoteNetwork(local=("10.0.0.1/8",))
    with pytest.raises(ValueError, match="bad network"):
        RemoteNetwork(remote=("example.com",))


@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.CONNECT])
def test_only_connect_decides(stage: Stage) -> None:
    facts = SessionFacts(family="inet", client_address="127.0.0.1")
    assert RemoteNetwork().decide(stage, facts) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("192.0.2.1", (4, 0xC0000201)),
        (" 192.0.2.1 ", (4, 0xC0000201)),
        ("::ffff:192.0.2.1", (4, 0xC0000201)),
        ("::1", (6, 1)),
        ("[::1]", (6, 1)),
        ("IPv6:::1", (6, 1)),  # Sendmail's spelling
        ("fe80::1%eth0", (6, (0xFE80 << 112) | 1)),  # zone dropped
        ("192.0.2", None),  # no inet_aton shorthand
        ("192.0.2.256", None),
        ("", None),
        ("example.com", None),
        ("1::2::3", None),
    ],
)
def test_parse_client_address(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_client_address(text) == parsed
