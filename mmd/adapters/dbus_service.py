"""The D-Bus control interface: ``mmd.control.Control`` as ``org.miltermanager.Manager1``.

This is the only module that imports dbus-next (with ``dbus_next_private``, which holds
the library's private API it needs). It translates between bus types and the
daemon-independent contract in ``mmd.control``; it holds no state of its own beyond the
bus connection.

Signatures are chosen so that ``busctl call`` prints something an admin can
read: a milter is one struct ``(ssbsasbsta{st})`` in the order of
``MilterInfo``, counters are ``t`` (uint64, they only grow), latencies ``d``
seconds. The documented introspection XML lives in ``dbus/`` and a test
checks that it matches what this module serves.

Mutating methods (Reload, SetMilterEnabled) are guarded twice: by the bus
policy (``dbus/org.miltermanager.Manager1.conf``) and here, by asking the bus
for the caller's uid and checking it is root or a member of
``milter-manager-admin`` in the user database, so that a policy mistake does
not open them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import grp
import inspect
import logging
import os
import pwd
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from dbus_next import introspection as intr
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import (
    BusType,
    MessageFlag,
    MessageType,
    NameFlag,
    PropertyAccess,
    RequestNameReply,
)
from dbus_next.errors import DBusError
from dbus_next.message import Message
from dbus_next.service import ServiceInterface, dbus_property, method, signal

from mmd.adapters.dbus_next_private import (
    AnnotatedProperty,
    CallHandler,
    DispatchHooks,
    ExportedMethod,
    SendReply,
    call_arguments,
    method_return,
)
from mmd.control import (
    Control,
    InvalidConfiguration,
    MilterInfo,
    MilterStatistics,
    NoSuchMilter,
    Statistics,
)
from mmd.journal_schema import Event, Field, extra

BUS_NAME = "org.miltermanager.Manager1"
OBJECT_PATH = "/org/miltermanager/Manager1"
INTERFACE_NAME = "org.miltermanager.Manager1"
ADMIN_GROUP = "milter-manager-admin"

ERROR_NO_SUCH_MILTER = "org.miltermanager.Error.NoSuchMilter"
ERROR_INVALID_CONFIGURATION = "org.miltermanager.Error.InvalidConfiguration"
ERROR_ACCESS_DENIED = "org.miltermanager.Error.AccessDenied"

# name, connection spec, enabled, source, applicable conditions, reachable,
# last error, sessions, verdict counts (status -> count)
MILTER_SIGNATURE = "(ssbsasbsta{st})"
# sessions, verdict counts, average latency (s), max latency (s)
MILTER_STATISTICS_SIGNATURE = "(ta{st}dd)"

# Names of out-arguments and signal arguments: dbus-next only names in-arguments,
# and unnamed arguments make introspection (and busctl introspect) much less useful.
OUT_ARGUMENT_NAMES: dict[str, tuple[str, ...]] = {
    "Reload": ("message",),
    "ListMilters": ("milters",),
    "GetMilter": ("milter",),
    "SetMilterEnabled": (),
    "GetStatistics": ("total_sessions", "active_sessions", "statuses", "milters"),
    "ShowConfig": ("text",),
    "MilterStateChanged": ("name", "enabled", "reason"),
    "Reloaded": ("success", "message"),
}

_F = TypeVar("_F", bound=Callable[..., Any])

# dbus-next's decorators are untyped; give them types once, here.
_method: Callable[..., Callable[[Callable[..., Any]], Any]] = method
_signal: Callable[..., Callable[[Callable[..., Any]], Any]] = signal
_property: Callable[..., Callable[[Callable[..., Any]], Any]] = dbus_property
_bus_error: Callable[[str, str], DBusError] = DBusError

# The method call being dispatched, for the caller check. dbus-next does not
# hand the message to method implementations; ControlBus sets this in the
# context the implementation runs in.
_current_call: contextvars.ContextVar[Message | None] = contextvars.ContextVar(
    "mmd_dbus_current_call", default=None
)

log = logging.getLogger(__name__)

# EmitsChangedSignal per property (see the XML in dbus/ for the reasons).
PROPERTY_CHANGE_SIGNALS = {
    "Version": "const",
    "State": "true",  # these three: at most once per PROPERTIES_PERIOD (DBusHandle)
    "ActiveSessions": "true",
    "TotalSessions": "true",
    "ConfigurationFiles": "true",
}
# Seconds between two PropertiesChanged for State and the session counters: sessions come
# and go hundreds of times a second on a busy host, a signal for each would be a flood.
PROPERTIES_PERIOD = 1.0
# Introspection says so for the properties signalled at most once per period.
PERIOD_ANNOTATION = "org.miltermanager.Manager1.ChangedSignalPeriodSeconds"
EMITS_CHANGED_SIGNAL = "org.freedesktop.DBus.Property.EmitsChangedSignal"
PERIODIC_PROPERTIES = frozenset({"State", "ActiveSessions", "TotalSessions"})


def _bus_types(out: str = "", **params: str) -> Callable[[_F], _F]:
    """Attach D-Bus type strings as the signature dbus-next inspects.

    Writing them as annotations would hide the real Python types from mypy.
    """

    def apply(fn: _F) -> _F:
        parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        parameters += [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=type_)
            for name, type_ in params.items()
        ]
        return_annotation = out if out else inspect.Signature.empty
        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            parameters, return_annotation=return_annotation
        )
        return fn

    return apply


def _read_only(name: str, signature: str, read: Callable[[Control], object]) -> Any:
    """The read-only property ``name`` of D-Bus type ``signature``: ``read`` of the control."""

    def getter(self: ManagerInterface) -> object:
        return read(self.control)

    getter.__name__ = getter.__qualname__ = name
    return _property(access=PropertyAccess.READ)(_bus_types(out=signature)(getter))


def milter_to_bus(info: MilterInfo) -> list[Any]:
    return [
        info.name,
        info.connection_spec,
        info.enabled,
        info.source,
        list(info.applicable_conditions),
        info.reachable,
        info.last_error,
        info.sessions,
        dict(info.verdicts),
    ]


def milter_statistics_to_bus(stats: MilterStatistics) -> list[Any]:
    return [stats.sessions, dict(stats.verdicts), stats.average_latency, stats.max_latency]


def statistics_to_bus(stats: Statistics) -> list[Any]:
    return [
        stats.total_sessions,
        stats.active_sessions,
        dict(stats.statuses),
        {name: milter_statistics_to_bus(m) for name, m in stats.milters.items()},
    ]


def is_admin(uid: int, group: str = ADMIN_GROUP) -> bool:
    """Root, or a member of the admin group (primary or supplementary) per the user database."""
    if uid == 0:
        return True
    try:
        user = pwd.getpwuid(uid)
        admin_gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    return admin_gid in os.getgrouplist(user.pw_name, user.pw_gid)


def _describe_uid(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


class ManagerInterface(ServiceInterface):
    """``org.miltermanager.Manager1`` over one ``Control``."""

    def __init__(self, control: Control, bus: MessageBus) -> None:
        super().__init__(INTERFACE_NAME)
        self.control = control
        self._bus = bus

    # -- methods -------------------------------------------------------------

    @_method()
    @_bus_types(out="s")
    async def Reload(self) -> str:
        await self._authorize("Reload")
        try:
            return await self.control.reload()
        except InvalidConfiguration as error:
            raise _bus_error(ERROR_INVALID_CONFIGURATION, str(error)) from error

    @_method()
    @_bus_types(out=f"a{MILTER_SIGNATURE}")
    def ListMilters(self) -> list[list[Any]]:
        return [milter_to_bus(info) for info in self.control.list_milters()]

    @_method()
    @_bus_types(out=MILTER_SIGNATURE, name="s")
    def GetMilter(self, name: str) -> list[Any]:
        try:
            return milter_to_bus(self.control.get_milter(name))
        except NoSuchMilter as error:
            raise _no_such_milter(name) from error

    @_method()
    @_bus_types(name="s", enabled="b")
    async def SetMilterEnabled(self, name: str, enabled: bool) -> None:
        caller = await self._authorize("SetMilterEnabled")
        try:
            await self.control.set_milter_enabled(name, enabled, caller)
        except NoSuchMilter as error:
            raise _no_such_milter(name) from error

    @_method()
    @_bus_types(out=f"tta{{st}}a{{s{MILTER_STATISTICS_SIGNATURE}}}")
    def GetStatistics(self) -> list[Any]:
        return statistics_to_bus(self.control.statistics())

    @_method()
    @_bus_types(out="s")
    def ShowConfig(self) -> str:
        return self.control.show_config()

    # -- properties ----------------------------------------------------------

    # (read-only; the getters ask the control each time)
    Version = _read_only("Version", "s", lambda control: control.version)
    State = _read_only("State", "s", lambda control: control.state())
    ActiveSessions = _read_only("ActiveSessions", "t", lambda control: control.active_sessions())
    TotalSessions = _read_only("TotalSessions", "t", lambda control: control.total_sessions())
    ConfigurationFiles = _read_only(
        "ConfigurationFiles", "as", lambda control: list(control.configuration_files())
    )

    # -- signals -------------------------------------------------------------

    @_signal()
    @_bus_types(out="sbs")
    def MilterStateChanged(self, name: str, enabled: bool, reason: str) -> list[Any]:
        return [name, enabled, reason]

    @_signal()
    @_bus_types(out="bs")
    def Reloaded(self, success: bool, message: str) -> list[Any]:
        return [success, message]

    # -- plumbing ------------------------------------------------------------

    def introspect(self) -> intr.Interface:
        """dbus-next's introspection, with out-arguments and signal arguments named."""
        interface: intr.Interface = super().introspect()
        members: list[tuple[str, list[intr.Arg]]] = [
            (m.name, m.out_args) for m in interface.methods
        ] + [(s.name, s.args) for s in interface.signals]
        for member_name, out_args in members:
            names = OUT_ARGUMENT_NAMES.get(member_name, ())
            for arg, arg_name in zip(out_args, names, strict=True):
                arg.name = arg_name
        interface.properties = [
            AnnotatedProperty(p, _property_annotations(p.name)) for p in interface.properties
        ]
        return interface

    async def _authorize(self, member: str) -> str:
        """Check the caller in the daemon too; returns who called, for the log."""
        call = _current_call.get()
        if call is None or not call.sender:
            raise _bus_error(ERROR_ACCESS_DENIED, f"{member}: the caller is unknown")
        reply = await self._bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetConnectionUnixUser",
                signature="s",
                body=[call.sender],
            )
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            raise _bus_error(ERROR_ACCESS_DENIED, f"{member}: the caller's uid is unknown")
        uid = int(reply.body[0])
        # the user database may be remote (NSS); keep the event loop free for mail
        allowed = await asyncio.to_thread(is_admin, uid)
        who = _describe_uid(uid)
        if not allowed:
            raise _bus_error(
                ERROR_ACCESS_DENIED,
                f"{member} needs root or membership in group {ADMIN_GROUP}; caller is {who}",
            )
        return f"{who} via D-Bus {call.sender}"


def _no_such_milter(name: str) -> DBusError:
    return _bus_error(ERROR_NO_SUCH_MILTER, f"no milter named {name!r}")


def _property_annotations(name: str) -> dict[str, str]:
    """Whether (and how often) PropertiesChanged covers a property; busctl shows it."""
    annotations = {EMITS_CHANGED_SIGNAL: PROPERTY_CHANGE_SIGNALS[name]}
    if name in PERIODIC_PROPERTIES:
        annotations[PERIOD_ANNOTATION] = f"{PROPERTIES_PERIOD:g}"
    return annotations


class RefusalLog:
    """At most one short line per ``interval`` seconds for calls the daemon refuses.

    Any local user may send them (an unknown property or interface, a Set of a
    read-only property): each is answered with its typed error, and the log must
    not grow with them. The next line says how many were left out.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._left_out = 0

    def refused(self, message: Message, error_name: str, text: str) -> None:
        now = self.clock()
        if now < self._next:
            self._left_out += 1
            return
        self._next = now + self.interval
        more = f" ({self._left_out} more since the last line)" if self._left_out else ""
        self._left_out = 0
        log.info(
            "D-Bus: refused %s.%s from %s: %s: %s%s",
            message.interface,
            message.member,
            message.sender,
            error_name,
            _short(text),
            more,
            extra=extra(Event.DBUS_REFUSED, {Field.REASON: error_name}),
        )


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ControlBus(DispatchHooks):
    """A MessageBus whose dispatch suits a daemon.

    dbus-next 0.2.3 sends a raised DBusError as the reply but then re-raises it
    into its reader, which logs an ERROR with a traceback: one per NoSuchMilter,
    and one per unknown property or interface any local user asks for. It does
    not tell the implementation who called either. Here each method call runs
    in a context that holds its message, typed errors are only replies (the
    built-in handlers' refusals: one short rate-limited line), and unexpected
    errors are logged here and answered without a traceback.
    """

    refusals = RefusalLog()

    def handler_for(self, message: Message, default: CallHandler | None) -> CallHandler | None:
        if default is None:
            return None
        handler = default

        def guarded(message: Message, send_reply: SendReply) -> None:
            try:
                handler(message, send_reply)
            except DBusError as error:
                self.refusals.refused(message, error.type, error.text)
                send_reply(Message.new_error(message, error.type, error.text))
            except Exception as error:
                send_reply(_error_message(message, error))

        return guarded

    def method_handler(self, interface: ServiceInterface, method: ExportedMethod) -> CallHandler:
        def handler(message: Message, send_reply: SendReply) -> None:
            args = call_arguments(message)
            context = contextvars.copy_context()
            context.run(_current_call.set, message)
            if asyncio.iscoroutinefunction(method.fn):
                asyncio.get_running_loop().create_task(
                    _reply_async(method, interface, args, message, send_reply), context=context
                )
            else:
                call = functools.partial(method.fn, interface, *args)
                context.run(_send_result, method, message, send_reply, call)

        return handler


def _error_message(message: Message, error: Exception) -> Message:
    if isinstance(error, DBusError):
        reply: Message = Message.new_error(message, error.type, error.text)
        return reply
    log.error("D-Bus %s failed", message.member, exc_info=error)
    failed: Message = Message.new_error(
        message, "org.freedesktop.DBus.Error.Failed", f"{message.member} failed: {error}"
    )
    return failed


def _send_result(
    method: ExportedMethod, message: Message, send_reply: SendReply, result: Callable[[], Any]
) -> None:
    """Reply with what ``result()`` gives, or with the error it raises."""
    try:
        reply = method_return(method, message, result())
    except Exception as error:
        reply = _error_message(message, error)
    send_reply(reply)


async def _reply_async(
    method: ExportedMethod,
    interface: ServiceInterface,
    args: list[Any],
    message: Message,
    send_reply: SendReply,
) -> None:
    try:
        result = await method.fn(interface, *args)
    except Exception as error:
        send_reply(_error_message(message, error))
        return
    _send_result(method, message, send_reply, lambda: result)


_disconnect: Callable[[MessageBus], None] = MessageBus.disconnect
_wait_for_disconnect: Callable[[MessageBus], Awaitable[None]] = MessageBus.wait_for_disconnect


class BusNameUnavailable(RuntimeError):
    """Another connection owns (or is queued for) the bus name."""


async def _watch_connection(bus: MessageBus) -> BaseException | None:
    """Wait until the bus goes away; the reason (None: we closed it), for the caller to log.

    Awaiting the disconnect here also keeps asyncio from reporting an unretrieved error.
    """
    try:
        await _wait_for_disconnect(bus)
    except Exception as error:
        return error
    return None


@dataclass
class DBusHandle:
    """What the daemon keeps of the exported interface."""

    bus: MessageBus
    interface: ManagerInterface
    watcher: asyncio.Task[BaseException | None] | None = None
    ticker: asyncio.Task[None] | None = None

    # The emitters run inside the daemon's reload and override paths (as Control
    # callbacks): a lost or closed bus must never make those fail.

    def emit_milter_state_changed(self, name: str, enabled: bool, reason: str) -> None:
        if not self.bus.connected:
            return
        try:
            self.interface.MilterStateChanged(name, enabled, reason)
        except Exception:
            log.warning("could not emit MilterStateChanged", exc_info=True)

    def emit_reloaded(self, success: bool, message: str) -> None:
        if not self.bus.connected:
            return
        try:
            self.interface.Reloaded(success, message)
            if success:
                files = list(self.interface.control.configuration_files())
                self.interface.emit_properties_changed({"ConfigurationFiles": files})
        except Exception:
            log.warning("could not emit Reloaded", exc_info=True)

    async def signal_properties(self, period: float = PROPERTIES_PERIOD) -> None:
        """PropertiesChanged for State, ActiveSessions and TotalSessions, at most once a period.

        Each signal carries the values that changed since the last one, as they are at that
        moment (a state shorter than the period, e.g. a quick reload, may not show).
        """
        control = self.interface.control
        last: dict[str, object] = {}
        while self.bus.connected:
            now: dict[str, object] = {
                "State": control.state(),
                "ActiveSessions": control.active_sessions(),
                "TotalSessions": control.total_sessions(),
            }
            changed = {key: value for key, value in now.items() if last.get(key) != value}
            if changed and last:
                try:
                    self.interface.emit_properties_changed(changed)
                except Exception:
                    log.debug("could not emit PropertiesChanged", exc_info=True)
            last = now
            await asyncio.sleep(period)

    async def wait_lost(self) -> BaseException | None:
        """Until the connection ends: the error that ended it, None after ``close()``."""
        if self.watcher is None:
            return None
        return await asyncio.shield(self.watcher)  # a cancelled waiter leaves the watcher be

    async def close(self) -> None:
        """Give up the name and disconnect; safe to call twice."""
        if self.ticker is not None:
            self.ticker.cancel()
        if self.bus.connected:
            with contextlib.suppress(DBusError):
                await self.bus.release_name(BUS_NAME)
            self.bus.unexport(OBJECT_PATH, self.interface)
            _disconnect(self.bus)
        if self.watcher is not None:
            await self.watcher


async def export_control(
    control: Control,
    bus_address: str | None = None,
    *,
    subscribe: bool = True,
    reread_policy: bool = False,
    signal_properties: bool = False,
) -> DBusHandle:
    """Connect, export the interface, then request the name.

    ``bus_address=None`` means the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` or
    the standard socket). The object is exported before the name is taken so
    that a client woken by NameOwnerChanged never finds the path missing.
    With ``subscribe`` the handle is subscribed to the control's callbacks, so
    the daemon needs no further calls to get the signals out (a caller that
    reconnects subscribes once itself and forwards).

    With ``reread_policy``, a refused name makes dbus-daemon re-read its
    configuration once before the second try: it may have read our policy
    file before the user that the policy names existed (package install:
    the file lands before systemd-sysusers runs), and nothing else makes it
    read the file again. With ``signal_properties``, State and the session counters
    are signalled too (``DBusHandle.signal_properties``).
    """
    new_bus: Callable[..., ControlBus] = ControlBus  # its bus_address hint lacks None
    bus = await new_bus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        interface = ManagerInterface(control, bus)
        bus.export(OBJECT_PATH, interface)
        try:
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except DBusError as error:
            if not reread_policy or error.type != BUS_ERROR_ACCESS_DENIED:
                raise
            await _reload_bus_config(bus)
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            raise BusNameUnavailable(f"{BUS_NAME} is owned by another connection ({reply.name})")
    except BaseException:
        _disconnect(bus)
        raise
    handle = DBusHandle(
        bus, interface, asyncio.get_running_loop().create_task(_watch_connection(bus))
    )
    if subscribe:
        control.subscribe(handle.emit_milter_state_changed, handle.emit_reloaded)
    if signal_properties:
        handle.ticker = asyncio.get_running_loop().create_task(handle.signal_properties())
    return handle


BUS_ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
# The bus has no owner for the name (and must not start one: see call_reload).
BUS_ERRORS_NO_DAEMON = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    }
)


async def _reload_bus_config(bus: MessageBus) -> None:
    """Ask dbus-daemon to re-read its policy files (any client may ask; it replies when done)."""
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="ReloadConfig",
        )
    )
    if reply is None or reply.message_type != MessageType.METHOD_RETURN:
        detail = reply.body[0] if reply is not None and reply.body else "no reply"
        log.debug("dbus-daemon did not re-read its configuration: %s", detail)
    else:
        log.info("asked dbus-daemon to re-read its policy, as it refused the name %s", BUS_NAME)


# -- the client side: ``milter-manager reload`` ------------------------------------------


@dataclass(frozen=True)
class ReloadAnswer:
    """What Reload() said: ``outcome`` is "reloaded", "refused" or "denied"."""

    outcome: str
    message: str


class ControlUnreachable(RuntimeError):
    """No bus, or no daemon on it: the caller may take another way (SIGHUP)."""


async def call_reload(timeout: float, bus_address: str | None = None) -> ReloadAnswer:
    """Call Reload() on the system bus and wait for its answer.

    NO_AUTO_START: when the daemon is not on the bus, the bus must not ask systemd to start
    it (``systemctl reload`` runs this while the unit is busy reloading: that would only
    queue a start job and wait for it). Raises ``ControlUnreachable`` when no daemon answers.
    """
    try:
        new_bus: Callable[..., MessageBus] = MessageBus  # its bus_address hint lacks None
        bus = await new_bus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    except Exception as error:  # no socket, refused, authentication: all mean "no bus"
        raise ControlUnreachable(f"cannot connect to the system bus: {error}") from error
    try:
        call = Message(
            destination=BUS_NAME,
            path=OBJECT_PATH,
            interface=INTERFACE_NAME,
            member="Reload",
            flags=MessageFlag.NO_AUTOSTART,
        )
        try:
            reply = await asyncio.wait_for(bus.call(call), timeout)
        except TimeoutError:
            raise ControlUnreachable(f"Reload() got no answer within {timeout:g} s") from None
        except Exception as error:  # the bus went away during the call
            raise ControlUnreachable(f"the system bus went away: {error}") from error
    finally:
        _disconnect(bus)
    if reply is None:
        raise ControlUnreachable("the system bus went away during the call")
    if reply.message_type == MessageType.METHOD_RETURN:
        return ReloadAnswer("reloaded", str(reply.body[0]))
    text = str(reply.body[0]) if reply.body else reply.error_name or "failed"
    if reply.error_name == ERROR_INVALID_CONFIGURATION:
        return ReloadAnswer("refused", text)
    if reply.error_name in (ERROR_ACCESS_DENIED, BUS_ERROR_ACCESS_DENIED):
        return ReloadAnswer("denied", text)
    if reply.error_name in BUS_ERRORS_NO_DAEMON:
        raise ControlUnreachable(f"{BUS_NAME} is not on the system bus ({reply.error_name})")
    return ReloadAnswer("refused", f"{reply.error_name}: {text}")


# -- following systemd: its signals on the control connection ---------------------------

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
SYSTEMD_UNIT = "org.freedesktop.systemd1.Unit"
SYSTEMD_UNIT_PATHS = "/org/freedesktop/systemd1/unit"
_MANAGER_SIGNAL = (
    f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',interface='{SYSTEMD_MANAGER}'"
)
SYSTEMD_MATCH_RULES = (
    f"{_MANAGER_SIGNAL},member='UnitFilesChanged'",
    f"{_MANAGER_SIGNAL},member='JobRemoved'",
    # a daemon-reload ended: the only sign that a SysV-only milter (clamav-milter, spamass-milter
    # on Debian 12) was enabled or disabled, which changes what the generator's units want
    f"{_MANAGER_SIGNAL},member='Reloading'",
    f"type='signal',sender='{SYSTEMD}',interface='org.freedesktop.DBus.Properties',"
    f"member='PropertiesChanged',path_namespace='{SYSTEMD_UNIT_PATHS}',arg0='{SYSTEMD_UNIT}'",
)


async def _bus_call(bus: MessageBus, message: Message) -> None:
    reply = await bus.call(message)
    if reply is None or reply.message_type != MessageType.METHOD_RETURN:
        detail = reply.body[0] if reply is not None and reply.body else "no reply"
        raise RuntimeError(f"{message.member}: {detail}")


async def add_match(bus: MessageBus, rule: str) -> None:
    """Have the bus deliver signals matching ``rule`` to this connection."""
    await _bus_call(
        bus,
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        ),
    )


async def follow_systemd(
    bus: MessageBus, on_unit: Callable[[str], None], on_unit_path: Callable[[str], None]
) -> None:
    """Have systemd's signals delivered on ``bus`` (call again after a reconnect).

    ``on_unit(name)``: a job of that unit ended (started, stopped, failed), or ``""``
    when unit files changed (enable, disable, mask) or a daemon-reload ended. ``on_unit_path``:
    a unit's ActiveState & co changed; the caller decodes the object path. systemd
    sends unit signals only to subscribed clients, hence ``Subscribe``.
    """
    for rule in SYSTEMD_MATCH_RULES:
        await add_match(bus, rule)

    def handler(message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        if message.interface == SYSTEMD_MANAGER and message.path == SYSTEMD_PATH:
            if message.member == "UnitFilesChanged":
                on_unit("")
            elif message.member == "JobRemoved" and len(message.body) >= 3:
                on_unit(str(message.body[2]))
            elif message.member == "Reloading" and message.body[:1] == [False]:
                on_unit("")  # reloaded: the generated units may want other milters now
        elif (
            message.member == "PropertiesChanged"
            and message.path.startswith(SYSTEMD_UNIT_PATHS + "/")
            and message.body[:1] == [SYSTEMD_UNIT]
        ):
            on_unit_path(message.path)

    bus.add_message_handler(handler)
    subscribe = Message(
        destination=SYSTEMD, path=SYSTEMD_PATH, interface=SYSTEMD_MANAGER, member="Subscribe"
    )
    await _bus_call(bus, subscribe)
