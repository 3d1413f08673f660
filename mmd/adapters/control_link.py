"""Keep the D-Bus control interface on the bus for the daemon's whole life.

The bus may refuse our name at start (the policy file is not installed yet, or
dbus-daemon read it before our user existed) and dbus-daemon may be restarted
under us. Mail never depends on the bus, so neither stops the daemon: this
link retries in the background, with a growing pause (capped so that a policy
installed later is noticed within seconds), takes the name as soon as the bus
allows it and reconnects after the connection is lost. It logs one warning
when control goes away and one line when it is back, not one per attempt.

It holds no D-Bus code itself: ``mmd.adapters.dbus_service`` does the bus work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mmd.adapters.dbus_service import BUS_NAME, DBusHandle, export_control
from mmd.control import Control
from mmd.journal_schema import Event, Field, extra

# Run on each new connection: (handle, True when it is a reconnect or a late first one).
ConnectedHook = Callable[[DBusHandle, bool], Awaitable[None]]

log = logging.getLogger("mmd.daemon")

ATTEMPT_TIMEOUT = 10.0  # seconds for one connect + export + name request


@dataclass(frozen=True)
class RetryPauses:
    """Pauses between attempts: first, doubling, up to ``longest`` (seconds)."""

    first: float = 0.25
    longest: float = 5.0

    def after(self, failures: int) -> float:
        return min(self.longest, self.first * 2.0 ** max(0, failures - 1))


class ControlLink:
    """The daemon's end of the control interface, whatever the bus does."""

    def __init__(
        self,
        control: Control,
        bus_address: str | None,
        pauses: RetryPauses | None = None,
    ) -> None:
        self.control = control
        self.bus_address = bus_address
        self.pauses = pauses or RetryPauses()
        self.handle: DBusHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.on_connected: list[ConnectedHook] = []
        control.subscribe(self._milter_state_changed, self._reloaded)

    # Control callbacks, forwarded to whichever connection is current.

    def _milter_state_changed(self, name: str, enabled: bool, reason: str) -> None:
        if self.handle is not None:
            self.handle.emit_milter_state_changed(name, enabled, reason)

    def _reloaded(self, success: bool, message: str) -> None:
        if self.handle is not None:
            self.handle.emit_reloaded(success, message)

    @property
    def connected(self) -> bool:
        return self.handle is not None and self.handle.bus.connected

    async def start(self) -> None:
        """One attempt now (a healthy bus has the name before READY=1), then in the background."""
        since = time.monotonic()
        error = await self._attempt(reread_policy=True)
        if error is None:
            log.info(
                "D-Bus control interface is on the bus as %s",
                BUS_NAME,
                extra=extra(Event.DBUS, {Field.STATUS: "connected"}),
            )
            await self._connected(again=False)
        else:
            log.warning(
                "D-Bus control interface not available yet: %s; trying again in the background",
                error,
                extra=extra(Event.DBUS, {Field.STATUS: "unavailable"}),
            )
        self._task = asyncio.get_running_loop().create_task(self._keep(error is None, since))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.handle is not None:
            await self.handle.close()
            self.handle = None

    async def _attempt(self, reread_policy: bool) -> Exception | None:
        try:
            self.handle = await asyncio.wait_for(
                export_control(
                    self.control,
                    self.bus_address,
                    subscribe=False,
                    reread_policy=reread_policy,
                    signal_properties=True,
                ),
                ATTEMPT_TIMEOUT,  # a hung dbus-daemon must not hold READY=1 back
            )
        except TimeoutError:
            return TimeoutError(f"the bus did not answer within {ATTEMPT_TIMEOUT:g} s")
        except Exception as error:  # no bus or no name is no reason to refuse mail
            return error
        return None

    async def _connected(self, again: bool) -> None:
        assert self.handle is not None
        for hook in self.on_connected:
            try:
                await hook(self.handle, again)
            except Exception as error:  # control works without what a hook adds
                log.warning("D-Bus: setting up on the new connection failed: %s", error)

    async def _keep(self, connected: bool, since: float) -> None:
        while True:
            if connected:
                assert self.handle is not None
                reason = await self.handle.wait_lost()
                self.handle = None
                if self._closing:
                    return
                log.warning(
                    "D-Bus connection lost (%s): reconnecting in the background",
                    _describe(reason),
                    extra=extra(Event.DBUS, {Field.STATUS: "lost"}),
                )
                since = time.monotonic()
            connected = await self._retry(since)

    async def _retry(self, since: float) -> bool:
        """Until the name is ours (a new dbus-daemon reads the policy files itself)."""
        failures = 0
        last: Exception | None = None
        while True:
            failures += 1
            await asyncio.sleep(self.pauses.after(failures))
            last = await self._attempt(reread_policy=False)
            if last is None:
                log.info(
                    "D-Bus control interface is on the bus as %s (after %.1f s, %d attempts)",
                    BUS_NAME,
                    time.monotonic() - since,
                    failures,
                    extra=extra(Event.DBUS, {Field.STATUS: "connected"}),
                )
                await self._connected(again=True)
                return True
            log.debug("D-Bus control interface still not available: %s", last)



def _describe(reason: BaseException | None) -> str:
    """dbus-next ends a connection closed by the bus with an exception whose text is empty."""
    if reason is None:
        return "closed"
    text = str(reason)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
