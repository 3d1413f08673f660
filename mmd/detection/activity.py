"""Enabled but not running: a detected milter whose unit is stopped or failed.

Connecting to it would fail in every session (one warning and one fallback each), so
such a milter is taken out of the set the sessions use, and says why where an admin
looks: ``--show-config`` (the comment above ``enabled``), ``ListMilters``/``GetMilter``
(``enabled`` false, ``last_error`` "inactive: ..."). It applies only while the socket
still comes from detection: a ``[[milter]]`` table that sets ``connection_spec`` points
somewhere else, and wins. The daemon logs one line when a milter becomes inactive and
one when it is back (``changes``), at start and at each reload, not one per session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmd.config.model import Configuration, Origin
from mmd.detection.model import DetectedMilter

PREFIX = "inactive: "


def take_out_inactive(config: Configuration, detected: Sequence[DetectedMilter]) -> None:
    """Disable the enabled milters whose detected unit does not run; the origin says why."""
    reasons = {found.name: found.inactive for found in detected if found.inactive}
    for milter in config.milters:
        reason = reasons.get(milter.name)
        if reason is None or not milter.enabled:
            continue
        if not milter.origin("connection_spec").text.startswith("detected"):
            continue
        milter.enabled = False
        milter.origins["enabled"] = Origin(
            f"{PREFIX}{reason}; sessions skip it until it is active again "
            f"({milter.origin('enabled')})"
        )


def inactive_milters(config: Configuration) -> dict[str, str]:
    """Name -> reason ("opendkim.service is failed") of the milters taken out above."""
    found: dict[str, str] = {}
    for milter in config.milters:
        origin = milter.origin("enabled").text
        if not milter.enabled and origin.startswith(PREFIX):
            found[milter.name] = origin.removeprefix(PREFIX).split(";", 1)[0]
    return found


def changes(
    before: Mapping[str, str], after: Mapping[str, str]
) -> list[tuple[str, bool, str]]:
    """(name, now_active, reason) for each milter whose state differs; sorted by name."""
    result = [(name, False, reason) for name, reason in after.items() if name not in before]
    result += [(name, True, before[name]) for name in before if name not in after]
    return sorted(result)
