"""Enablement read from links on disk, for when systemd cannot be asked.

The fallback when the system bus is not reachable (a container without
systemd as PID 1, a development machine): the reference's method, extended
to every target's ``.wants``/``.requires`` folder and to SysV rc links.
It cannot see presets applied at runtime or the active state, so the daemon
says in a log line that it used it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from mmd.detection.files import RootFiles
from mmd.detection.unitfile import UNIT_DIRECTORIES
from mmd.detection.units import UnitState

_RC_DIRECTORIES = tuple(f"/etc/rc{level}.d" for level in "2345")


class FilesystemUnitStates:
    """A :class:`~mmd.detection.units.UnitStateSource` reading the unit folders below ``root``."""

    def __init__(self, root: Path) -> None:
        self.files = RootFiles(root)

    def _fragment(self, name: str) -> str:
        for directory in UNIT_DIRECTORIES:
            path = f"{directory}/{name}"
            if self.files.exists(path) and not self.files.local(path).is_dir():
                return path
        return ""

    def _linked_into_target(self, name: str, kinds: tuple[str, ...]) -> bool:
        for directory in UNIT_DIRECTORIES:
            for folder in self.files.list_dir(directory):
                if folder.endswith(kinds) and name in self.files.list_dir(f"{directory}/{folder}"):
                    return True
        return False

    def _rc_linked(self, script: str) -> bool:
        pattern = re.compile(rf"^S\d\d{re.escape(script)}$")
        return any(
            pattern.match(entry)
            for folder in _RC_DIRECTORIES
            for entry in self.files.list_dir(folder)
        )

    def unit_state(self, name: str, socket_units: Sequence[str] = ()) -> UnitState:
        fragment = self._fragment(name)
        local = self.files.local(fragment) if fragment else None
        if local is not None and local.is_symlink() and os.readlink(local) == "/dev/null":
            return UnitState(name, "masked", "masked", fragment_path=fragment)
        wanted = self._linked_into_target(name, (".target.wants", ".target.requires"))
        sockets = [s for s in socket_units if self._linked_into_target(s, (".wants", ".requires"))]
        if fragment:
            text = self.files.read(fragment) or ""
            has_install = re.search(r"^\s*\[Install\]", text, re.MULTILINE) is not None
            file_state = "enabled" if wanted else ("disabled" if has_install else "static")
            if fragment.startswith("/run/systemd/generator"):
                file_state = "generated"  # as systemd reports it; the target's wants decide
            return UnitState(
                name,
                "loaded",
                file_state,
                wanted_by_target=wanted,
                socket_enabled=bool(sockets),
                fragment_path=fragment,
            )
        script = name.removesuffix(".service")
        if self.files.exists(f"/etc/init.d/{script}"):
            # systemd would generate the unit and make the target want it per the rc links
            return UnitState(
                name,
                "loaded",
                "generated",
                wanted_by_target=wanted or self._rc_linked(script),
                socket_enabled=bool(sockets),
            )
        return UnitState(name, "not-found")
