"""Connection specs: every documented form, and a clear refusal of the rest."""

from __future__ import annotations

import pytest

from mmd.config.connection_spec import (
    ConnectionSpec,
    InetSpec,
    UnixSpec,
    format_connection_spec,
    parse_connection_spec,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/milter-manager/milter-manager.sock",
         UnixSpec("/run/milter-manager/milter-manager.sock")),
        ("local:/var/spool/postfix/spamass/spamass.sock",
         UnixSpec("/var/spool/postfix/spamass/spamass.sock")),
        ("inet:10025", InetSpec("", 10025, "inet")),
        ("inet:10025@localhost", InetSpec("localhost", 10025, "inet")),
        ("inet:8891@127.0.0.1", InetSpec("127.0.0.1", 8891, "inet")),
        ("inet:10025@[127.0.0.1]", InetSpec("127.0.0.1", 10025, "inet")),
        ("inet6:10025", InetSpec("", 10025, "inet6")),
        ("inet6:10025@ip6-localhost", InetSpec("ip6-localhost", 10025, "inet6")),
        ("inet6:10025@[::1]", InetSpec("::1", 10025, "inet6")),
        ("inet6:10025@::1", InetSpec("::1", 10025, "inet6")),
        ("INET:25@mx.example.net", InetSpec("mx.example.net", 25, "inet")),
    ],
)
def test_parses_documented_forms(text: str, expected: ConnectionSpec) -> None:
    assert parse_connection_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/run/x.sock", "no 'TYPE:' prefix"),
        ("tcp:25@localhost", "unknown socket type 'tcp'"),
        ("unix:", "path is empty"),
        ("unix:relative.sock", "must be absolute"),
        ("inet:", "port '' is not a number"),
        ("inet:http@localhost", "port 'http' is not a number"),
        ("inet:0@localhost", "outside 1-65535"),
        ("inet:65536@localhost", "outside 1-65535"),
        ("inet:25@", "host after '@' is empty"),
        ("inet:25@[127.0.0.1", "must be written as [ADDRESS]"),
        ("inet:25@[localhost]", "[localhost] is not an IP address"),
        ("inet:25@[::1]", "IPv6 address; use inet6:"),
        ("inet6:25@[127.0.0.1]", "IPv4 address; use inet:"),
        ("inet:25@bad host", "neither a host name nor an address"),
    ],
)
def test_refuses_bad_specs_saying_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_connection_spec(text)
    assert message in str(caught.value)
    assert repr(text.strip()) in str(caught.value) or "TYPE:" in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (UnixSpec("/run/a.sock"), "unix:/run/a.sock"),
        (InetSpec("", 10025), "inet:10025"),
        (InetSpec("localhost", 10025), "inet:10025@localhost"),
        (InetSpec("127.0.0.1", 10025), "inet:10025@[127.0.0.1]"),
        (InetSpec("::1", 10025, "inet6"), "inet6:10025@[::1]"),
    ],
)
def test_format_is_canonical_and_parses_back(spec: ConnectionSpec, text: str) -> None:
    assert format_connection_spec(spec) == text
    assert spec.format() == text
    assert str(spec) == text
    assert parse_connection_spec(text) == spec


def test_local_is_written_back_as_unix() -> None:
    assert format_connection_spec(parse_connection_spec("local:/run/a.sock")) == "unix:/run/a.sock"
