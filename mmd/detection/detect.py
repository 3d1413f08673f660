"""Find the installed milters, whether systemd runs them, and where they listen.

Never raises: one milter whose files cannot be read (or whose detector has a
bug) costs one error line naming the file, and the others are still found.
The upstream manager failed to start when one detector broke (its #128).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmd.detection.catalog import CATALOG, MilterEntry
from mmd.detection.files import RootFiles, UnreadableFile
from mmd.detection.model import DetectedMilter
from mmd.detection.sockets import NoSocket, discover_socket
from mmd.detection.unitfile import UnitFile, find_unit
from mmd.detection.units import UnitState, UnitStateSource, decide, not_running


def detect(
    root: Path,
    units: UnitStateSource,
    catalog: Sequence[MilterEntry] = CATALOG,
) -> tuple[list[DetectedMilter], list[str]]:
    """(milters, error lines). Milters not installed are left out; disabled ones are kept."""
    files = RootFiles(root)
    milters: list[DetectedMilter] = []
    errors: list[str] = []
    for entry in catalog:
        try:
            outcome = _detect_one(entry, files, units)
        except UnreadableFile as error:
            errors.append(f"detection of {entry.name}: {error}; skipped")
        except Exception as error:  # a detector bug must not stop the others
            errors.append(
                f"detection of {entry.name} failed ({type(error).__name__}: {error}); skipped"
            )
        else:
            if isinstance(outcome, DetectedMilter):
                milters.append(outcome)
            elif outcome:
                errors.append(outcome)
    return milters, errors


def _installed_unit(entry: MilterEntry, units: UnitStateSource) -> UnitState | None:
    for name in entry.units:
        state = units.unit_state(name, entry.socket_units)
        if decide(state).installed:
            return state
    return None


def _detect_one(
    entry: MilterEntry, files: RootFiles, units: UnitStateSource
) -> DetectedMilter | str:
    """The detected milter, an error line, or "" when it is not installed (or off and unset)."""
    state = _installed_unit(entry, units)
    if state is None:
        return ""
    enablement = decide(state)
    service = find_unit(files, state.name, state.fragment_path)
    socket_units: list[UnitFile] = []
    for name in dict.fromkeys(entry.socket_units + state.socket_units):
        socket_unit = find_unit(files, name)
        if socket_unit is not None:
            socket_units.append(socket_unit)
    result = discover_socket(entry, files, service, socket_units)
    if isinstance(result, NoSocket):
        if not enablement.enabled:
            return ""  # installed, off and not set up: nothing worth a line
        return f"detection of {entry.name}: {state.name} is enabled but {result.reason}; skipped"
    return DetectedMilter(
        name=entry.name,
        connection_spec=result.spec,
        enabled=enablement.enabled,
        unit=state.name,
        origin=f"detected: {state.name}, {result.origin}",
        applicable_conditions=entry.default_conditions,
        description=entry.description,
        active_state=state.active_state,
        unit_file_state=state.unit_file_state,
        extra_timeout=result.extra_timeout,
        notes=result.notes,
        inactive=not_running(state) if enablement.enabled else "",
    )
