"""sd_notify(3) messages to systemd: readiness, status text, reload, stop and watchdog.

The only module that imports sdnotify. systemd must see every state change the daemon goes
through (Type=notify): READY=1 once the MTA-side socket serves, RELOADING=1 while a new
configuration loads, STOPPING=1 on the way out. NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID
are read once and removed from the environment, so a child process we might start never
talks to systemd in our name. Send errors are logged at debug level and otherwise ignored:
notification is advisory, serving mail is not.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

import sdnotify

log = logging.getLogger(__name__)

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass(frozen=True)
class NotifySettings:
    """What the environment said, kept after the variables are gone."""

    address: str | None
    watchdog_usec: int | None


def parse_notify_environment(environ: MutableMapping[str, str], pid: int) -> NotifySettings:
    """Pure reading of the variables; a watchdog for another process counts as none."""
    address = environ.get("NOTIFY_SOCKET") or None
    watchdog_usec: int | None = None
    usec_value = environ.get("WATCHDOG_USEC")
    pid_value = environ.get("WATCHDOG_PID")
    if usec_value:
        try:
            usec = int(usec_value)
            for_us = pid_value is None or pid_value == "" or int(pid_value) == pid
        except ValueError:
            log.debug("ignoring malformed watchdog variables %r/%r", usec_value, pid_value)
        else:
            if usec > 0 and for_us:
                watchdog_usec = usec
    return NotifySettings(address=address, watchdog_usec=watchdog_usec)


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC= with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _one_line(text: str) -> str:
    """STATUS= ends at a newline, and sdnotify encodes as latin-1."""
    flat = " ".join(text.splitlines())
    return flat.encode("latin-1", errors="replace").decode("latin-1")


class Notifier:
    """A connection to systemd's notification socket (or nothing, when not run by systemd)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._sender: sdnotify.SystemdNotifier | None = None
        if settings.address is not None:
            self._sender = _connect(settings.address)

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """Read the variables, connect, then remove them from ``environ``."""
        env = os.environ if environ is None else environ
        settings = parse_notify_environment(env, os.getpid() if pid is None else pid)
        try:
            return cls(settings)
        finally:
            for variable in NOTIFY_VARIABLES:
                env.pop(variable, None)

    @property
    def enabled(self) -> bool:
        return self._sender is not None

    def send(self, *assignments: str) -> None:
        """Send the assignments as one datagram (systemd reads one datagram atomically)."""
        if self._sender is None:
            return
        message = "\n".join(assignments)
        try:
            self._sender.notify(message)
        except Exception as error:  # sdnotify may raise anything from socket or codecs
            log.debug("sd_notify %r failed: %s", message, error)

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self.send("READY=1")
        else:
            self.send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={_one_line(text)}")

    def reloading(self) -> None:
        """MONOTONIC_USEC= in the same datagram lets systemd tell this reload from an old one."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        if self.settings.watchdog_usec is None or self._sender is None:
            return None
        return self.settings.watchdog_usec / 2_000_000


def _connect(address: str) -> sdnotify.SystemdNotifier | None:
    """sdnotify reads NOTIFY_SOCKET itself, so it gets the address that way while connecting."""
    previous = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = address
    try:
        return sdnotify.SystemdNotifier(debug=True)
    except Exception as error:
        log.debug("cannot connect to the notification socket %r: %s", address, error)
        return None
    finally:
        if previous is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = previous


_default: Notifier | None = None


def default_notifier() -> Notifier:
    """The process-wide notifier; the first call reads (and clears) the environment."""
    global _default
    if _default is None:
        _default = Notifier.from_environment()
    return _default


def ready(status: str | None = None) -> None:
    default_notifier().ready(status)


def status(text: str) -> None:
    default_notifier().status(text)


def reloading() -> None:
    default_notifier().reloading()


def stopping() -> None:
    default_notifier().stopping()


def watchdog() -> None:
    default_notifier().watchdog()


def watchdog_interval() -> float | None:
    return default_notifier().watchdog_interval()
