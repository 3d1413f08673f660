"""--output-message when the milter negotiated SMFIP_HDR_LEADSPC (seen through mmd + Postfix).

With leading space negotiated a milter's header values carry their own space after the
colon; the tool used to print it on top of its own (``DKIM-Signature:  v=1``).
"""

from __future__ import annotations

from mmd.adapters.mta_client import SessionResult
from mmd.cli.test_server import Mail, format_result
from mmd.protocol import messages as m
from mmd.protocol.constants import Action, Step

CHANGES: list[m.Modification] = [
    m.AddHeader("X-Virus-Status", " Clean"),
    m.InsertHeader(0, "DKIM-Signature", " v=1; d=example.com"),
    m.ChangeHeader(1, "Subject", " changed"),
]


def _headers(steps: Step) -> list[str]:
    result = SessionResult(status="accept", changes=list(CHANGES),
                           negotiated=m.Negotiate(6, Action(0), steps))
    mail = Mail("<s@example.com>", ["<r@example.org>"], [("Subject", "hi")], b"body")
    lines = format_result(result, mail, output_message=True).splitlines()
    start = lines.index("Header:--------------------------------") + 1
    return lines[start : lines.index("Body:----------------------------------")]


def test_values_with_their_own_leading_space_print_once() -> None:
    assert sorted(_headers(Step.HEADER_LEADING_SPACE)) == [
        "+ DKIM-Signature: v=1; d=example.com",
        "+ Subject: changed",
        "+ X-Virus-Status: Clean",
        "- Subject: hi",
    ]


def test_without_leading_space_values_are_kept() -> None:
    assert "+ X-Virus-Status:  Clean" in _headers(Step(0))
