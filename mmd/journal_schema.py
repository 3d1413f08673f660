"""The journal's structured fields and event names: what the daemon writes, the report reads.

One spelling for both sides, so a renamed field cannot silently empty the report. The names
are documented in docs/systemd.md (table "field | meaning") and docs/report.md; they are an
interface for admins' ``journalctl`` lines too, so they do not change. This module imports
nothing from mmd: the daemon, the adapters and the report all sit above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final


class Field:
    """Journal field names (values are always strings)."""

    EVENT: Final = "MMD_EVENT"
    SESSION_ID: Final = "MMD_SESSION_ID"
    MILTER: Final = "MMD_MILTER"
    STAGE: Final = "MMD_STAGE"
    STATUS: Final = "MMD_STATUS"
    ELAPSED: Final = "MMD_ELAPSED"  # seconds, six decimals
    REASON: Final = "MMD_REASON"
    QUEUE_ID: Final = "MMD_QUEUE_ID"
    CLIENT_ADDRESS: Final = "MMD_CLIENT_ADDRESS"
    CLIENT_NAME: Final = "MMD_CLIENT_NAME"
    HEADER_NAME: Final = "MMD_HEADER_NAME"
    HEADER_VALUE: Final = "MMD_HEADER_VALUE"
    CHILDREN: Final = "MMD_CHILDREN"  # the set of children after a live change


class Event:
    """Values of ``MMD_EVENT``."""

    SESSION_START: Final = "session-start"
    SESSION_END: Final = "session-end"
    SESSION_DISCONNECTED: Final = "session-disconnected"
    MILTER_VERDICT: Final = "milter-verdict"
    MILTER_ERROR: Final = "milter-error"
    MILTER_STATE: Final = "milter-state"
    CONDITION_SKIP: Final = "condition-skip"
    HEADER_ADD: Final = "header-add"
    MTA_ERROR: Final = "mta-error"
    READY: Final = "ready"
    RELOAD: Final = "reload"
    CONFIGURATION_ERROR: Final = "configuration-error"
    CONFIGURATION_WARNING: Final = "configuration-warning"
    DETECTION_ERROR: Final = "detection-error"
    DBUS: Final = "dbus"
    DBUS_REFUSED: Final = "dbus-refused"


def names(namespace: type) -> tuple[str, ...]:
    """Every value a namespace above defines (for the docs test and the report's match)."""
    return tuple(value for key, value in vars(namespace).items() if key.isupper())


def extra(event: str, values: Mapping[str, str] | None = None) -> dict[str, object]:
    """The ``extra=`` of a logging call that writes ``event`` with ``values`` as fields."""
    return {"fields": {Field.EVENT: event, **(values or {})}}
