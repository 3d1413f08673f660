"""The journal's structured fields and event names: what the daemon writes, the report reads.

One spelling for both sides, so a renamed field cannot silently empty the report. The names
are documented in docs/systemd.md (table "field | meaning") and docs/report.md; they are an
interface for admins' ``journalctl`` lines too, so they do not change. This module imports
nothing from mmd: the daemon, the adapters and the report all sit above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

_T = TypeVar("_T")


def _prefixed(cls: type[_T]) -> type[_T]:
    """Each name annotated in the class becomes the string ``MMD_`` + name."""
    for name in cls.__annotations__:
        setattr(cls, name, f"MMD_{name}")
    return cls


@_prefixed
class Field:
    """Journal field names: ``MMD_`` and the attribute's name (values are always strings)."""

    EVENT: str
    SESSION_ID: str
    MILTER: str
    STAGE: str
    STATUS: str
    ELAPSED: str  # seconds, six decimals
    REASON: str
    QUEUE_ID: str
    CLIENT_ADDRESS: str
    CLIENT_NAME: str
    HEADER_NAME: str
    HEADER_VALUE: str
    CHILDREN: str  # the set of children after a live change
    GENERATION: str  # the configuration generation a live update made


class Event:
    """Values of ``MMD_EVENT``."""

    SESSION_START: Final = "session-start"
    SESSION_END: Final = "session-end"
    SESSION_DISCONNECTED: Final = "session-disconnected"
    MILTER_VERDICT: Final = "milter-verdict"
    MILTER_ERROR: Final = "milter-error"
    MILTER_STATE: Final = "milter-state"
    LIVE_UPDATE: Final = "live-update"
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
    """Every name ``Field`` or ``Event`` defines (for the tests and the docs)."""
    return tuple(value for key, value in vars(namespace).items() if key.isupper())


def extra(event: str, values: Mapping[str, str] | None = None) -> dict[str, object]:
    """The ``extra=`` of a logging call that writes ``event`` with ``values`` as fields."""
    return {"fields": {Field.EVENT: event, **(values or {})}}
