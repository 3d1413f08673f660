"""The daemon's control surface, independent of D-Bus.

The D-Bus adapter (``mmd.adapters.dbus_service``) exports exactly this; the
daemon implements it. Keeping it a plain Protocol lets the adapter be tested
against a small fake and lets the bus library be swapped in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class InvalidConfiguration(Exception):
    """A reload was refused; the message says why (file, line, key)."""


class NoSuchMilter(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class MilterInfo:
    name: str
    connection_spec: str
    enabled: bool
    source: str  # "detected" or "configured"
    applicable_conditions: tuple[str, ...]
    reachable: bool
    last_error: str
    sessions: int  # sessions this milter took part in
    verdicts: dict[str, int] = field(default_factory=dict)  # status -> count


@dataclass(frozen=True, slots=True)
class MilterStatistics:
    sessions: int
    verdicts: dict[str, int]
    average_latency: float  # seconds per reply
    max_latency: float


@dataclass(frozen=True, slots=True)
class Statistics:
    total_sessions: int
    active_sessions: int
    statuses: dict[str, int]  # final status -> count
    milters: dict[str, MilterStatistics]


class Control(Protocol):
    version: str

    def state(self) -> str:
        """ "starting", "running", "reloading" or "stopping"."""
        ...

    def active_sessions(self) -> int: ...

    def total_sessions(self) -> int: ...

    def configuration_files(self) -> list[str]: ...

    async def reload(self) -> str:
        """Re-read configuration and re-run detection; raises InvalidConfiguration."""
        ...

    def list_milters(self) -> list[MilterInfo]: ...

    def get_milter(self, name: str) -> MilterInfo:
        """Raises NoSuchMilter."""
        ...

    async def set_milter_enabled(self, name: str, enabled: bool, caller: str) -> None:
        """Runtime override until the next restart (kept across reloads); raises NoSuchMilter."""
        ...

    def statistics(self) -> Statistics: ...

    def show_config(self) -> str: ...

    def subscribe(
        self,
        milter_state_changed: Callable[[str, bool, str], None],
        reloaded: Callable[[bool, str], None],
    ) -> None:
        """Register callbacks: (name, enabled, reason) and (success, message)."""
        ...
