"""Follow systemd live: a milter's unit enabled, disabled, started or stopped counts at once.

systemd's signals arrive on the control connection (``dbus_service.follow_systemd``,
set up again by ``ControlLink`` after each reconnect). Only units of catalogued milters
and their socket units matter, plus "unit files changed" (enable, disable, mask). Changes
come in bursts (``systemctl enable --now`` is a unit-files change, a job and several
property changes; a package upgrade is many), so they are gathered: the refresh runs
``quiet`` seconds after the last one, and never later than ``longest`` seconds after the
first. The daemon's refresh (``Daemon.refresh_detection``) re-runs detection and, like a
reload, installs a new generation for new sessions only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from mmd.adapters.control_link import ControlLink
from mmd.adapters.dbus_service import DBusHandle, follow_systemd
from mmd.detection.catalog import CATALOG

log = logging.getLogger("mmd.daemon")

UNIT_FILES = "unit files"
_ESCAPE = re.compile(r"_([0-9a-f]{2})")


def unit_from_path(path: str) -> str:
    """``/org/freedesktop/systemd1/unit/opendkim_2eservice`` -> ``opendkim.service``."""
    escaped = path.rsplit("/", 1)[-1]
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), escaped)


def catalogued_units() -> frozenset[str]:
    return frozenset(name for entry in CATALOG for name in (*entry.units, *entry.socket_units))


class SystemdFollower:
    """Gathers unit changes and runs one refresh per burst."""

    def __init__(
        self,
        refresh: Callable[[str], Awaitable[None]],
        units: Iterable[str] | None = None,
        quiet: float = 0.3,
        longest: float = 1.0,
    ) -> None:
        self.refresh = refresh
        self.units = frozenset(units) if units is not None else catalogued_units()
        self.quiet = quiet
        self.longest = longest
        self.pending: set[str] = set()
        self._first = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self.refreshes = 0

    def unit_changed(self, unit: str) -> None:
        """A unit's job ended, or ``""``: unit files changed."""
        if unit and unit not in self.units:
            return
        self._note(unit or UNIT_FILES)

    def unit_path_changed(self, path: str) -> None:
        self.unit_changed(unit_from_path(path))

    def missed(self) -> None:
        """After a reconnect: anything may have changed while the bus was away."""
        self._note("reconnected to the bus")

    def _note(self, what: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self.pending:
            self._first = now
        self.pending.add(what)
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, min(now + self.quiet, self._first + self.longest) - now)
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._running is not None and not self._running.done():
            self._timer = asyncio.get_running_loop().call_later(self.quiet, self._fire)
            return  # one refresh at a time; the changes wait for the next
        why = ", ".join(sorted(self.pending))
        self.pending.clear()
        self.refreshes += 1
        self._running = asyncio.get_running_loop().create_task(self._refresh(why))

    async def _refresh(self, why: str) -> None:
        try:
            await self.refresh(why)
        except Exception:
            log.exception("live update after %s failed", why)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def attach(link: ControlLink, follower: SystemdFollower) -> None:
    """Subscribe on every connection the link makes; after a reconnect, refresh once."""

    async def on_connected(handle: DBusHandle, again: bool) -> None:
        await follow_systemd(handle.bus, follower.unit_changed, follower.unit_path_changed)
        log.info("following systemd: milters' units and unit files, live")
        if again:
            follower.missed()

    link.on_connected.append(on_connected)
