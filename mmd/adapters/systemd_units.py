"""systemd's view of units, over D-Bus with pystemd (the only module importing it).

pystemd is blocking: call :func:`detect_installed_milters` from an executor.
One bus connection serves a whole detection run (pystemd would otherwise open
one per call). Units that are not loaded are still answered: the unit's
object path makes systemd load it, and an absent unit reads "not-found".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pystemd.dbuslib import DBus
from pystemd.systemd1 import Manager, Unit

from mmd.detection.detect import detect
from mmd.detection.model import DetectedMilter
from mmd.detection.units import ENABLED_FILE_STATES, UnitState
from mmd.detection.units_fs import FilesystemUnitStates

# A target in one of these states (or the default target) pulls in what it wants.
_LIVE_STATES = frozenset({"active", "activating", "reloading"})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _names(values: Any) -> tuple[str, ...]:
    return tuple(_text(value) for value in values or ())


class SystemdUnitStates:
    """A :class:`~mmd.detection.units.UnitStateSource` backed by the system manager."""

    def __init__(self, bus: DBus) -> None:
        self._bus = bus
        self._manager = Manager(bus=bus)
        self._manager.load()
        self._default_target = ""
        self._cache: dict[str, tuple[str, str, str]] = {}

    def _default(self) -> str:
        if not self._default_target:
            self._default_target = _text(self._manager.Manager.GetDefaultTarget())
        return self._default_target

    def _unit(self, name: str) -> Unit:
        unit = Unit(name.encode(), bus=self._bus)
        unit.load()
        return unit

    def _brief(self, name: str) -> tuple[str, str, str]:
        """(LoadState, UnitFileState, ActiveState) of another unit, cached for the run."""
        if name not in self._cache:
            unit = self._unit(name).Unit
            self._cache[name] = (
                _text(unit.LoadState),
                _text(unit.UnitFileState),
                _text(unit.ActiveState),
            )
        return self._cache[name]

    def unit_state(self, name: str, socket_units: Sequence[str] = ()) -> UnitState:
        unit = self._unit(name).Unit
        load_state = _text(unit.LoadState)
        if load_state == "not-found":
            return UnitState(name=name, load_state=load_state)
        wanting = _names(unit.WantedBy) + _names(unit.RequiredBy)
        wanted_by_target = any(
            other.endswith(".target")
            and (other == self._default() or self._brief(other)[2] in _LIVE_STATES)
            for other in wanting
        )
        triggers = tuple(n for n in _names(unit.TriggeredBy) if n.endswith(".socket"))
        socket_enabled = socket_active = False
        for socket_name in dict.fromkeys(triggers + tuple(socket_units)):
            socket_load, socket_file_state, socket_state = self._brief(socket_name)
            if socket_load == "not-found":
                continue
            socket_enabled = socket_enabled or socket_file_state in ENABLED_FILE_STATES
            socket_active = socket_active or socket_state in _LIVE_STATES
        return UnitState(
            name=name,
            load_state=load_state,
            unit_file_state=_text(unit.UnitFileState),
            active_state=_text(unit.ActiveState),
            wanted_by_target=wanted_by_target,
            socket_enabled=socket_enabled,
            fragment_path=_text(unit.FragmentPath),
            socket_units=triggers,
            socket_active=socket_active,
        )


@contextmanager
def system_unit_states() -> Iterator[SystemdUnitStates]:
    """One system-bus connection for one detection run."""
    with DBus() as bus:
        yield SystemdUnitStates(bus)


def detect_installed_milters(root: Path = Path("/")) -> tuple[list[DetectedMilter], list[str]]:
    """Blocking: run detection against the running systemd; never raises.

    Without a reachable systemd, enablement is read from the links on disk
    (``FilesystemUnitStates``) and the first error line says so.

    Run it with ``loop.run_in_executor(None, detect_installed_milters)``.
    """
    try:
        with system_unit_states() as units:
            return detect(root, units)
    except Exception as error:  # no bus, no systemd as PID 1: read the links on disk
        milters, errors = detect(root, FilesystemUnitStates(root))
        reason = f"{type(error).__name__}: {error}"
        line = (
            f"detection: cannot ask systemd over D-Bus ({reason}); "
            "enablement read from unit links on disk"
        )
        return milters, [line, *errors]
