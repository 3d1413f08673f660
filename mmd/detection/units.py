"""What systemd says about a unit, and what that means for "enabled".

The rules live here, pure, so they are tested without systemd; the only
module that asks systemd is ``mmd.adapters.systemd_units`` (pystemd), which
implements :class:`UnitStateSource`. Tests use a fake source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# UnitFileState values meaning "systemd starts it by itself".
ENABLED_FILE_STATES = frozenset({"enabled", "enabled-runtime", "alias", "linked", "linked-runtime"})
# Values that say nothing by themselves: the unit runs if something pulls it in.
# "generated" is what Debian's SysV-script milters (spamass-milter,
# clamav-milter) get, whatever their rc links say.
INDIRECT_FILE_STATES = frozenset({"static", "indirect", "generated", "transient", ""})
MASKED_FILE_STATES = frozenset({"masked", "masked-runtime"})


@dataclass(frozen=True, slots=True)
class UnitState:
    """One unit as systemd sees it right now."""

    name: str
    load_state: str  # "loaded", "not-found", "masked", "error", "bad-setting"
    unit_file_state: str = ""
    active_state: str = ""
    wanted_by_target: bool = False  # an active or the default target Wants/Requires it
    socket_enabled: bool = False  # a socket unit that activates it is enabled
    fragment_path: str = ""  # where systemd loaded it from ("" when unknown)
    socket_units: tuple[str, ...] = ()  # socket units that activate it (TriggeredBy)
    socket_active: bool = False  # one of those is listening: a connection starts the service


class UnitStateSource(Protocol):
    """Answers for one unit; blocking (run it in an executor from async code)."""

    def unit_state(self, name: str, socket_units: Sequence[str] = ()) -> UnitState:
        """``socket_units``: names of socket units known to activate it (from the catalog)."""
        ...


@dataclass(frozen=True, slots=True)
class Enablement:
    installed: bool
    enabled: bool
    reason: str  # why, for --show-config and the logs


def decide(state: UnitState) -> Enablement:
    """systemd's view turned into installed/enabled.

    Differs from the reference, which only looked for a link in
    multi-user.target.wants: any target, aliases, links and socket
    activation count. A disabled service whose socket unit is enabled is
    started by systemd on the first connection, so it counts as enabled.
    """
    file_state = state.unit_file_state
    if state.load_state == "not-found" and file_state in ("", "not-found"):
        return Enablement(False, False, "no such unit")
    if state.load_state == "masked" or file_state in MASKED_FILE_STATES:
        return Enablement(True, False, "masked")
    if file_state in ENABLED_FILE_STATES:
        return Enablement(True, True, file_state)
    if state.socket_enabled:
        return Enablement(True, True, f"{file_state or 'unit'}, socket unit enabled")
    if file_state in INDIRECT_FILE_STATES and state.wanted_by_target:
        return Enablement(True, True, f"{file_state or 'unit'}, wanted by a target")
    return Enablement(True, False, file_state or "not wanted by any target")


# ActiveState values of a unit that serves (or is about to, or still does).
RUNNING_STATES = frozenset({"active", "activating", "reloading", "deactivating"})


def not_running(state: UnitState) -> str:
    """Why an enabled milter cannot be reached now ("" when it can, or when unknown).

    A stopped service whose socket unit listens is reachable: systemd starts it on
    the first connection. Unknown (empty ActiveState: no systemd to ask) counts as
    running, so a host without a bus behaves as before.
    """
    if not state.active_state or state.active_state in RUNNING_STATES or state.socket_active:
        return ""
    return f"{state.name} is {state.active_state}"
