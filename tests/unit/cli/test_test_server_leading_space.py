"""milter-test-server with SMFIP_HDR_LEADSPC negotiated (opendkim asks for it).

The milter's header values then carry their own separator space; Postfix writes
them verbatim (``Name:`` + value), so the tool must not show a second space.
"""

from __future__ import annotations

from mmd.adapters.mta_client import SessionResult
from mmd.cli.test_server import Delivery, apply_changes, format_result
from mmd.protocol import messages as m
from mmd.protocol.constants import Action, Step


def _mail() -> Delivery:
    return Delivery("<s@example.com>", ["<r@example.org>"], [("Subject", "hi")], b"body\n")


def test_leading_space_values_lose_their_separator() -> None:
    result = apply_changes(_mail(), [
        m.AddHeader("X-End", " e"),
        m.InsertHeader(0, "X-Top", " t"),
        m.ChangeHeader(1, "Subject", " changed"),
    ], leading_space=True)
    assert result.headers == [("X-Top", "t"), ("Subject", "changed"), ("X-End", "e")]


def test_without_leading_space_values_are_kept() -> None:
    result = apply_changes(_mail(), [m.AddHeader("X-End", " e")])
    assert result.headers == [("Subject", "hi"), ("X-End", " e")]


def test_output_uses_the_negotiated_steps() -> None:
    result = SessionResult(
        changes=[m.AddHeader("X-Virus-Status", " Clean")],
        negotiated=m.Negotiate(6, Action.ADD_HEADERS, Step.HEADER_LEADING_SPACE),
    )
    text = format_result(result, _mail(), output_message=True)
    assert "+ X-Virus-Status: Clean\n" in text
