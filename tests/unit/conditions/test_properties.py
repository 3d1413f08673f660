"""Property tests against independent implementations (the ipaddress module; the spec's rules)."""

from __future__ import annotations

import ipaddress
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mmd.conditions.remote_network import NetworkList, parse_client_address
from mmd.conditions.s25r import DEFAULT_WHITELIST, S25R
from mmd.engine.applicability import SessionFacts
from mmd.engine.stages import Stage

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
# IPv4-mapped IPv6 (::ffff:a.b.c.d), which random IPv6 almost never hits
mapped = st.builds(lambda v4: ipaddress.IPv6Address((0xFFFF << 32) | int(v4)), ipv4)


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        prefix = draw(st.integers(0, 32))
        return ipaddress.IPv4Network((draw(ipv4), prefix), strict=False)
    prefix = draw(st.integers(0, 128))
    return ipaddress.IPv6Network((draw(ipv6), prefix), strict=False)


@settings(max_examples=300)
@given(st.lists(networks(), max_size=6), st.one_of(ipv4, ipv6, mapped))
def test_network_list_agrees_with_ipaddress(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    parsed = parse_client_address(str(address))
    assert parsed is not None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    expected = next((str(n) for n in nets if address in n), None)
    assert NetworkList(str(n) for n in nets).find(parsed) == expected


# The spec's rules in its Ruby spelling, converted here by hand-independent means:
# \z -> \Z, /i -> IGNORECASE, ASCII digits. "unknown" is an exact comparison.
SPEC_RULES = [
    ("s25r-1", r"\A[^.]*\d[^\d.]+\d.*\.", 0),
    ("s25r-2", r"\A[^.]*\d{5}", 0),
    ("s25r-3", r"\A(?:[^.]+\.)?\d[^.]*\.[^.]+\..+\.[a-z]", re.I),
    ("s25r-4", r"\A[^.]*\d\.[^.]*\d-\d", 0),
    ("s25r-5", r"\A[^.]*\d\.[^.]*\d\.[^.]+\..+\.", 0),
    ("s25r-6", r"\A(?:dhcp|dialup|ppp|[achrsvx]?dsl)[^.]*\d", re.I),
]
COMPILED = [(label, re.compile(p, f | re.ASCII)) for label, p, f in SPEC_RULES]


def expected_rule(name: str) -> str | None:
    """The first deciding rule, written from the spec without the module's code."""
    lowered = name.lower().rstrip(".")
    if any(lowered.endswith(suffix) for suffix in DEFAULT_WHITELIST):
        return "whitelist"
    if name == "unknown":
        return "unknown"
    if len(name) > 2 and name[0] == "[" and name[-1] == "]":
        return "no-reverse-name"
    for label, regex in COMPILED:
        if regex.match(name):
            return label
    return None


labels = st.text(alphabet="abcdhlnpstuvx0123456789-", min_size=1, max_size=12)
prefixes = st.sampled_from(["", "ppp", "dsl", "adsl", "dhcp", "dialup", "mail", "p", "KD"])
suffixes = st.sampled_from(["", ".google.com", ".sendgrid.net", ".example.jp", ".com"])


@st.composite
def host_names(draw: st.DrawFn) -> str:
    parts = draw(st.lists(labels, min_size=1, max_size=5))
    return draw(prefixes) + ".".join(parts) + draw(suffixes)


@settings(max_examples=500)
@given(host_names())
def test_s25r_agrees_with_the_spec(name: str) -> None:
    decision = S25R().decide(
        Stage.CONNECT, SessionFacts(client_name=name, family="inet", client_address="192.0.2.1")
    )
    assert decision is not None
    rule = expected_rule(name)
    if rule == "whitelist":
        assert decision.apply is False
        assert "whitelist entry" in decision.reason
    elif rule is None:
        assert decision.apply is False
        assert "no blacklist rule matched" in decision.reason
    else:
        assert decision.apply is True
        assert f"blacklist rule {rule} " in decision.reason
