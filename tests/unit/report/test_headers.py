from __future__ import annotations

import pytest

from mmd.report.headers import REPORT_KINDS, report_kinds


@pytest.mark.parametrize(
    ("name", "value", "kinds"),
    [
        ("X-Spam-Flag", "YES", ["spam"]),
        ("x-spam-flag", "yes", ["spam"]),
        ("X-Spam-Flag", "NO", ["ham"]),
        ("X-Spam-Status", "Yes, score=9.1 required=5.0 tests=GTUBE", ["spam"]),
        ("X-Spam-Status", "No, score=0.1", ["ham"]),
        ("X-Spam-Level", "*****", []),
        ("X-Virus-Status", "Infected (Eicar-Test-Signature)", ["virus"]),
        ("X-Virus-Status", "Clean", []),
        ("X-Virus-Scanned", "clamav-milter 1.0.1", []),
        ("X-Greylist", "Delayed for 00:05:02 by milter-greylist-4.6.4", ["greylist"]),
        ("X-Greylist", "Sender IP whitelisted, not delayed by milter-greylist-4.6.4", []),
        ("Received-SPF", "pass (mx: domain of a@example.com designates 192.0.2.1)", ["spf_pass"]),
        ("Received-SPF", "SoftFail (mx: transitioning domain)", ["spf_softfail"]),
        ("Received-SPF", "fail", ["spf_fail"]),
        ("Received-SPF", "None", ["spf_none"]),
        ("Received-SPF", "gibberish", []),
        ("Received-SPF", "", []),
        ("DKIM-Signature", "v=1; a=rsa-sha256; d=example.org", ["dkim_signed"]),
        ("Authentication-Results",
         "mx.example.org; dkim=pass (2048-bit key) header.d=example.org; spf=fail smtp.mailfrom=x",
         ["dkim_pass", "spf_fail"]),
        ("Authentication-Results", "mx; dkim=neutral (no key); dkim=temperror",
         ["dkim_other", "dkim_other"]),
        ("Authentication-Results", "mx; none", []),
        ("Subject", "X-Spam-Flag: YES", []),
    ],
)
def test_report_kinds(name: str, value: str, kinds: list[str]) -> None:
    assert report_kinds(name, value) == kinds
    assert set(kinds) <= set(REPORT_KINDS)
