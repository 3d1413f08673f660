"""Report kinds from the headers children added: spam, virus, greylist, SPF and DKIM results.

The classic log analyzer counted the same things from ``[session][header][add]`` lines; here the
values come from the journal fields MMD_HEADER_NAME / MMD_HEADER_VALUE.
"""

from __future__ import annotations

import re

SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")

# Every kind the report knows, in graph and Prometheus order.
REPORT_KINDS: tuple[str, ...] = (
    "spam",
    "ham",
    "virus",
    "greylist",
    *(f"spf_{result}" for result in SPF_RESULTS),
    "dkim_signed",
    "dkim_pass",
    "dkim_fail",
    "dkim_other",
)

_SPF_KINDS = {result: f"spf_{result}" for result in SPF_RESULTS}
_RESULT = re.compile(r"(?:^|;)\s*(spf|dkim)\s*=\s*([a-z]+)", re.IGNORECASE)


def _authentication_results(value: str) -> list[str]:
    kinds: list[str] = []
    for method, result in _RESULT.findall(value):
        result = result.lower()
        if method.lower() == "spf":
            kind = _SPF_KINDS.get(result)
            if kind:
                kinds.append(kind)
        elif result in ("pass", "fail"):
            kinds.append(f"dkim_{result}")
        else:
            kinds.append("dkim_other")
    return kinds


def report_kinds(name: str, value: str) -> list[str]:
    """The report kinds one added header stands for (often none)."""
    lowered = name.lower()
    text = value.strip()
    if lowered == "x-spam-flag":
        return ["spam"] if text.lower().startswith("yes") else ["ham"]
    if lowered == "x-spam-status":
        return ["spam"] if text.lower().startswith("yes") else ["ham"]
    if lowered == "x-virus-status":
        return ["virus"] if text.lower().startswith("infected") else []
    if lowered == "x-greylist":
        return ["greylist"] if text.lower().startswith("delayed") else []
    if lowered == "received-spf":
        word = text.split(None, 1)[0].lower() if text else ""
        kind = _SPF_KINDS.get(word)
        return [kind] if kind else []
    if lowered == "dkim-signature":
        return ["dkim_signed"]
    if lowered == "authentication-results":
        return _authentication_results(text)
    return []
