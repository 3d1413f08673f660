"""The daemon: listen, load generations of configuration, reload, stop.

Blocking work (reading files, asking systemd over D-Bus) runs in an executor
so that mail never waits for it. A reload builds a complete new generation
first and swaps it in only when it is valid: sessions in flight keep the one
they started with, and a broken configuration leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mmd import __version__
from mmd.adapters import notify, reload_signal
from mmd.adapters.activation import take_activated_sockets
from mmd.adapters.server import Generation, ServerState, listen, serve_socket
from mmd.adapters.unix_socket import (
    UnixListener,
    bind_unix_socket,
    ensure_private_folders,
    remove_unix_socket,
)
from mmd.conditions.errors import ConditionConfigError
from mmd.conditions.registry import ConditionRegistry, needed_macros, settings_from_table
from mmd.config.connection_spec import UnixSpec, parse_connection_spec
from mmd.config.loader import ConfigError, apply_overrides, load_configuration
from mmd.config.model import Configuration, ManagerConfig
from mmd.config.show import render_show_config
from mmd.control import (
    InvalidConfiguration,
    MilterInfo,
    MilterStatistics,
    NoSuchMilter,
    Statistics,
)
from mmd.daemon import live
from mmd.daemon.records import JournalRecorder
from mmd.daemon.records import Statistics as Counters
from mmd.daemon.startup import keep_listening_settings, refused_configuration
from mmd.detection import activity
from mmd.detection.model import DetectedMilter
from mmd.engine.applicability import Stage
from mmd.engine.session import ChildSettings, SessionSettings
from mmd.engine.verdict import STATUS_VERDICTS
from mmd.protocol.constants import MacroStage

log = logging.getLogger("mmd.daemon")

_MACRO_STAGES = {
    Stage.CONNECT: MacroStage.CONNECT,
    Stage.HELO: MacroStage.HELO,
    Stage.MAIL: MacroStage.MAIL,
    Stage.RCPT: MacroStage.RCPT,
    Stage.DATA: MacroStage.DATA,
    Stage.END_OF_HEADERS: MacroStage.END_OF_HEADERS,
    Stage.END_OF_MESSAGE: MacroStage.END_OF_MESSAGE,
}

Detector = Callable[[], tuple[list[DetectedMilter], list[str]]]


@dataclass
class Options:
    config_dir: Path = Path("/etc/milter-manager")
    overrides: dict[str, object] = field(default_factory=dict)
    detector: Detector | None = None
    bus_address: str | None = None  # None: the system bus; "" disables D-Bus
    user: str = ""
    group: str = ""
    # the non-root default socket's folder: every folder from here down must be private
    private_socket_root: Path | None = None


def load(options: Options, enabled_overrides: Mapping[str, bool]) -> Configuration:
    """Blocking: detection, then files, then command line, then runtime switches.

    Any problem in the files raises ``ConfigError`` (at start as at reload: a value
    skipped would run with its default, against the configuration).
    """
    detected: list[DetectedMilter] = []
    if options.detector is not None:
        detected, problems = options.detector()
        for problem in problems:
            log.warning(
                "%s",
                problem,
                extra={"fields": {"MMD_EVENT": "detection-error", "MMD_REASON": problem}},
            )
    config = load_configuration(options.config_dir, detected)
    activity.take_out_inactive(config, detected)
    config = apply_overrides(config, options.overrides)
    for milter in config.milters:
        if milter.name in enabled_overrides:
            milter.enabled = enabled_overrides[milter.name]
    return config


def load_checked(
    options: Options, enabled_overrides: Mapping[str, bool], number: int
) -> tuple[Configuration, Generation]:
    """Blocking: ``load`` and ``build_generation``, the whole check of start, reload and
    ``--show-config``; raises ConfigError or InvalidConfiguration."""
    config = load(options, enabled_overrides)
    return config, build_generation(config, number)


def build_generation(config: Configuration, number: int) -> Generation:
    """Turn configuration into what sessions run with; raises InvalidConfiguration."""
    base = Path(config.files[0]).parent if config.files else None
    try:
        registry = ConditionRegistry(
            settings_from_table(config.conditions_table, base_directory=base)
        )
    except ConditionConfigError as error:
        raise InvalidConfiguration(f"{_condition_origin(config, error)}: {error}") from error
    milters = tuple(config.enabled_milters())
    children = []
    for milter in milters:
        try:
            conditions = registry.build(milter.applicable_conditions)
        except (ConditionConfigError, OSError) as error:
            where = milter.origin("applicable_conditions")
            raise InvalidConfiguration(
                f"{where}: milter {milter.name}: applicable_conditions: {error}"
            ) from error
        children.append(
            ChildSettings(
                milter.name,
                fallback=STATUS_VERDICTS[milter.fallback_status],
                evaluation_mode=milter.evaluation_mode,
                conditions=tuple(conditions),
            )
        )
    manager = config.manager
    needed = needed_macros(c for child in children for c in child.conditions)
    settings = SessionSettings(
        fallback=STATUS_VERDICTS[manager.fallback_status],
        fallback_at_disconnect=STATUS_VERDICTS[manager.fallback_status_at_disconnect],
        chunk_size=manager.chunk_size,
        needed_macros={
            _MACRO_STAGES[stage]: names for stage, names in needed.items() if stage in _MACRO_STAGES
        },
    )
    return Generation(manager, milters, tuple(children), settings, number)


class Daemon:
    """Implements ``mmd.control.Control``."""

    version = __version__

    def __init__(self, options: Options) -> None:
        self.options = options
        self._state_name = "starting"
        self._enabled_overrides: dict[str, bool] = {}
        self._counters = Counters()
        self._recorder = JournalRecorder(self._counters)
        self._config = Configuration()
        self._state: ServerState | None = None
        self._servers: list[asyncio.Server] = []
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._subscribers: list[
            tuple[Callable[[str, bool, str], None], Callable[[bool, str], None]]
        ] = []
        self._generation_number = 0
        self._dbus: object | None = None
        self._refused = ""  # why the configuration was refused at start, until a reload
        self._listening = ManagerConfig()  # the listening settings in force since start
        self._socket_activated = False
        self._unix_listeners: list[UnixListener] = []
        self._inactive: dict[str, str] = {}  # detected milters whose unit does not run
        self._files_read = ""  # live.fingerprint of the files the last load used
        self._files_waiting = ""  # the fingerprint a live update said it waits for
        self._follower: object | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        notify.default_notifier()  # reads and clears NOTIFY_SOCKET before anything else runs
        _raise_file_limit()
        try:
            config, generation = await loop.run_in_executor(None, self._first_load)
        except (ConfigError, InvalidConfiguration) as error:
            config = self._refuse_at_start(error)
            generation = build_generation(config, 0)
        self._config = config
        self._follow_activity(config)
        self._state = ServerState(generation, self._recorder)
        try:
            return await self._serve(loop, config)
        finally:
            self._remove_unix_sockets()

    async def _serve(self, loop: asyncio.AbstractEventLoop, config: Configuration) -> int:
        await self._open_listeners(config)
        self._listening = copy.deepcopy(config.manager)
        self._drop_privileges()
        for signum, handler in (
            (signal.SIGHUP, self._on_sighup),
            (signal.SIGTERM, self._stop.set),
            (signal.SIGINT, self._stop.set),
        ):
            loop.add_signal_handler(signum, handler)
        await self._export_control()
        self._state_name = "running"
        notify.ready(self._status_text())
        log.info("ready: %s", self._status_text(), extra={"fields": {"MMD_EVENT": "ready"}})
        watchdog = loop.create_task(self._watchdog())
        await self._stop.wait()
        watchdog.cancel()
        await self._shutdown()
        return 0

    def _refuse_at_start(self, error: ConfigError | InvalidConfiguration) -> Configuration:
        """Log every problem; the daemon serves, but every session gets temporary-failure."""
        problems = error.problems if isinstance(error, ConfigError) else [_one_line(error)]
        for problem in problems:
            log.error(
                "configuration: %s",
                problem,
                extra={"fields": {"MMD_EVENT": "configuration-error", "MMD_REASON": problem}},
            )
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        self._refused = problems[0] + more
        log.error(
            "configuration refused at start: every session gets temporary-failure until a "
            "reload (systemctl reload milter-manager) loads a valid configuration",
            extra={
                "fields": {
                    "MMD_EVENT": "configuration-error",
                    "MMD_STATUS": "refused",
                    "MMD_REASON": self._refused,
                }
            },
        )
        return refused_configuration(error, self.options.overrides)

    async def _open_listeners(self, config: Configuration) -> None:
        assert self._state is not None
        activated = take_activated_sockets()
        if activated:
            self._socket_activated = True
            for item in activated:
                self._servers.append(await serve_socket(item.sock, self._state))
                log.info("serving socket-activated fd %s", item.name)
            return
        manager = config.manager
        spec = parse_connection_spec(manager.connection_spec)
        if isinstance(spec, UnixSpec):
            folder = Path(spec.path).parent
            root = self.options.private_socket_root
            if root is not None and (folder == root or root in folder.parents):
                ensure_private_folders(root, folder)
            else:
                folder.mkdir(parents=True, exist_ok=True)
            unix = bind_unix_socket(spec.path, manager.unix_socket_mode, manager.unix_socket_group)
            self._unix_listeners.append(unix)
            self._servers.append(await serve_socket(unix.sock, self._state))
        else:
            self._servers.append(await listen(manager.connection_spec, self._state))
        log.info("listening on %s", manager.connection_spec)

    def _remove_unix_sockets(self) -> None:
        """The socket files this process made go with it: the next client gets "no such file"
        rather than "connection refused". Sockets systemd passed are systemd's."""
        while self._unix_listeners:
            unix = self._unix_listeners.pop()
            try:
                remove_unix_socket(unix)
            except OSError as error:  # e.g. after -u, a folder only root may change
                log.warning("cannot remove the socket file %s: %s", unix.path, error)

    def _first_load(self) -> tuple[Configuration, Generation]:
        """The first load, read with the rights every later reload will have.

        Started as root with ``-u``, the socket is opened as root but files are read as the
        user: a milter's file that only root may read must not be detected at start and then
        vanish at the first reload (the reload runs after the switch).
        """
        target = self._target_user()
        if target is None:
            return self._load_noting_files()
        uid, gid, groups = target
        saved_groups = os.getgroups()
        os.setgroups(groups)
        os.setegid(gid)
        os.seteuid(uid)
        try:
            return self._load_noting_files()
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(saved_groups)

    def _load_noting_files(self) -> tuple[Configuration, Generation]:
        loaded = load_checked(self.options, {}, 0)
        self._files_read = live.fingerprint(self.options.config_dir)  # for live updates
        return loaded

    def _target_user(self) -> tuple[int, int, list[int]] | None:
        """(uid, gid, groups) to switch to, or None when not root or no ``-u``."""
        if os.geteuid() != 0 or not self.options.user:
            return None
        import grp
        import pwd

        user = pwd.getpwnam(self.options.user)
        gid = grp.getgrnam(self.options.group).gr_gid if self.options.group else user.pw_gid
        return user.pw_uid, gid, os.getgrouplist(user.pw_name, gid)

    def _drop_privileges(self) -> None:
        target = self._target_user()
        if target is None:
            return
        uid, gid, groups = target
        os.setgid(gid)
        os.setgroups(groups)
        os.setuid(uid)
        log.info("running as %s", self.options.user)

    async def _export_control(self) -> None:
        """Put the control interface on the bus now, or as soon as the bus lets us."""
        if self.options.bus_address == "":
            return
        from mmd.adapters.control_link import ControlLink

        link = ControlLink(self, self.options.bus_address)
        self._dbus = link
        if self.options.detector is not None:
            from mmd.adapters.systemd_follow import SystemdFollower, attach

            follower = SystemdFollower(self.refresh_detection)
            self._follower = follower
            attach(link, follower)
        await link.start()

    async def _watchdog(self) -> None:
        """Keep systemd's STATUS= fresh (and feed the watchdog when WatchdogSec= is set)."""
        watchdog = notify.watchdog_interval()
        period = min(5.0, watchdog / 2) if watchdog else 5.0
        while True:
            if watchdog:
                notify.watchdog()
            notify.status(self._status_text())
            await asyncio.sleep(period)

    async def _shutdown(self) -> None:
        assert self._state is not None
        self._state_name = "stopping"
        notify.stopping()
        log.info("stopping: %d sessions in flight", self._state.active)
        for server in self._servers:
            server.close()
        self._remove_unix_sockets()
        while self._state.waiting:  # never started: the MTA applies its own default
            self._state.waiting.popleft()._close_mta()
        timeout = self._state.generation.manager.shutdown_timeout
        if self._state.active:
            try:
                await asyncio.wait_for(self._state.idle.wait(), timeout)
            except TimeoutError:
                log.warning(
                    "stopping: %d sessions still open after %g s; closing them",
                    self._state.active,
                    timeout,
                )
                for connection in list(self._state.connections):
                    connection._close_mta()
        stop_following = getattr(self._follower, "close", None)
        if stop_following is not None:
            stop_following()
        close = getattr(self._dbus, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result
        log.info("stopped")

    def _on_sighup(self) -> None:
        signalled_ns = time.monotonic_ns()
        asyncio.get_running_loop().create_task(self._reload_logged(signalled_ns))

    async def _reload_logged(self, signalled_ns: int) -> None:
        """A reload asked for by SIGHUP; ``milter-manager reload`` may wait for the answer."""
        try:
            message = await self.reload()
        except InvalidConfiguration as error:  # already in the journal
            reload_signal.confirm(False, signalled_ns, str(error))
        except Exception as error:
            log.exception("reload failed")
            reload_signal.confirm(False, signalled_ns, f"reload failed: {_one_line(error)}")
        else:
            reload_signal.confirm(True, signalled_ns, message)

    # ------------------------------------------------------------ Control

    def state(self) -> str:
        return self._state_name

    def active_sessions(self) -> int:
        return self._state.active if self._state else 0

    def total_sessions(self) -> int:
        return self._state.total if self._state else 0

    def configuration_files(self) -> list[str]:
        return list(self._config.files)

    async def _load_next(self) -> tuple[Configuration, Generation]:
        """Load and check the next generation off the event loop (file reads and detection
        block); raises ConfigError or InvalidConfiguration."""
        return await asyncio.get_running_loop().run_in_executor(
            None,
            load_checked,
            self.options,
            dict(self._enabled_overrides),
            self._generation_number + 1,
        )

    async def reload(self) -> str:
        async with self._reload_lock:
            self._state_name = "reloading"
            notify.reloading()
            try:
                config, generation = await self._load_next()
            except (ConfigError, InvalidConfiguration) as error:
                message = f"reload refused, keeping the previous configuration: {_one_line(error)}"
                log.error(
                    "%s",
                    message,
                    extra={
                        "fields": {
                            "MMD_EVENT": "reload",
                            "MMD_STATUS": "failed",
                            "MMD_REASON": _one_line(error),
                        }
                    },
                )
                self._finish_reload(False, message)
                raise InvalidConfiguration(message) from error
            self._keep_listening_settings(config)
            self._refused = ""
            self._install(config, generation)
            self._follow_activity(config)
            # which files this load used, for the live updates (small files in /etc)
            self._files_read = live.fingerprint(self.options.config_dir)
            message = f"reloaded: {len(generation.children)} milters: " + ", ".join(
                c.name for c in generation.children
            )
            log.info(
                "%s", message, extra={"fields": {"MMD_EVENT": "reload", "MMD_STATUS": "success"}}
            )
            self._finish_reload(True, message)
            return message

    def _keep_listening_settings(self, config: Configuration) -> None:
        for warning in keep_listening_settings(self._listening, config, self._socket_activated):
            log.warning(
                "reload: %s",
                warning,
                extra={"fields": {"MMD_EVENT": "configuration-warning", "MMD_REASON": warning}},
            )

    def _install(self, config: Configuration, generation: Generation) -> None:
        assert self._state is not None
        self._generation_number = generation.number
        self._config = config
        self._state.generation = generation

    def _follow_activity(self, config: Configuration) -> set[str]:
        """After each load: one journal line (and MilterStateChanged) per milter that became
        inactive or active; the names."""
        now = activity.inactive_milters(config)
        said = activity.changes(self._inactive, now)
        for name, active, reason in said:
            if active:
                text = f"milter {name} is no longer inactive (was: {reason})"
            else:
                text = f"milter {name} is inactive ({reason}): sessions skip it"
            live.announce(
                name,
                active,
                "active" if active else "inactive",
                reason,
                text,
                (changed for changed, _ in self._subscribers),
                logging.INFO if active else logging.WARNING,
            )
        self._inactive = now
        return {name for name, _, _ in said}

    async def refresh_detection(self, why: str) -> None:
        """A live update after systemd changed ``why``: detection again, for new sessions."""
        async with self._reload_lock:
            assert self._state is not None
            if self._refused:  # refused at start: only a reload may load a configuration
                log.debug("live update after %s: waiting for a reload", why)
                return
            if not self._config.manager.follow_systemd:
                log.debug("live update after %s: follow_systemd = false", why)
                return
            loop = asyncio.get_running_loop()
            files = await loop.run_in_executor(None, live.fingerprint, self.options.config_dir)
            if files != self._files_read:
                if files != self._files_waiting:
                    self._files_waiting = files
                    log.warning(
                        "systemd changed (%s), but the configuration files changed since the "
                        "last reload: the set of milters stays until `systemctl reload "
                        "milter-manager`",
                        why,
                    )
                return
            try:
                config, generation = await self._load_next()
            except (ConfigError, InvalidConfiguration) as error:
                log.warning("live update after %s skipped: %s", why, _one_line(error))
                return
            before = [c.name for c in self._state.generation.children]
            self._install(config, generation)
            said = self._follow_activity(config)
            after = [c.name for c in generation.children]
            live.log_update(generation.number, why, after)
            live.report_set_change(
                before, after, why, said, (changed for changed, _ in self._subscribers)
            )
            notify.status(self._status_text())

    def _finish_reload(self, success: bool, message: str) -> None:
        self._state_name = "running"
        notify.ready(self._status_text())
        for _, reloaded in self._subscribers:
            reloaded(success, message)

    def list_milters(self) -> list[MilterInfo]:
        return [self._info(m.name) for m in self._config.milters]

    def get_milter(self, name: str) -> MilterInfo:
        if not any(m.name == name for m in self._config.milters):
            raise NoSuchMilter(name)
        return self._info(name)

    def _info(self, name: str) -> MilterInfo:
        milter = next(m for m in self._config.milters if m.name == name)
        counters = self._counters.milter(name)
        source = (
            "detected"
            if str(milter.origin("connection_spec")).startswith("detected")
            else "configured"
        )
        last_error = counters.last_error
        if name in self._inactive and not milter.enabled:
            last_error = f"{activity.PREFIX}{self._inactive[name]}"
        return MilterInfo(
            name=name,
            connection_spec=milter.connection_spec,
            enabled=milter.enabled,
            source=source,
            applicable_conditions=tuple(milter.applicable_conditions),
            reachable=not last_error,
            last_error=last_error,
            sessions=counters.sessions,
            verdicts=dict(counters.verdicts),
        )

    def set_milter_enabled(self, name: str, enabled: bool, caller: str) -> None:
        if not any(m.name == name for m in self._config.milters):
            raise NoSuchMilter(name)
        self._enabled_overrides[name] = enabled
        config = self._config
        for milter in config.milters:
            if milter.name == name:
                milter.enabled = enabled
        self._install(config, build_generation(config, self._generation_number + 1))
        word = "enabled" if enabled else "disabled"
        reason = f"{word} at runtime by {caller}"
        log.info(
            "milter %s %s",
            name,
            reason,
            extra={
                "fields": {
                    "MMD_EVENT": "milter-state",
                    "MMD_MILTER": name,
                    "MMD_STATUS": word,
                    "MMD_REASON": reason,
                }
            },
        )
        for changed, _ in self._subscribers:
            changed(name, enabled, reason)

    def statistics(self) -> Statistics:
        counters = self._counters
        milters = {
            name: MilterStatistics(
                sessions=c.sessions,
                verdicts=dict(c.verdicts),
                average_latency=c.elapsed_total / c.sessions if c.sessions else 0.0,
                max_latency=c.elapsed_max,
            )
            for name, c in counters.milters.items()
        }
        return Statistics(
            self.total_sessions(), self.active_sessions(), dict(counters.statuses), milters
        )

    def show_config(self) -> str:
        return render_show_config(self._config)

    def subscribe(
        self,
        milter_state_changed: Callable[[str, bool, str], None],
        reloaded: Callable[[bool, str], None],
    ) -> None:
        self._subscribers.append((milter_state_changed, reloaded))

    # ------------------------------------------------------------ status

    def _status_text(self) -> str:
        state = self._state
        if state is None:
            return "starting"
        if self._refused:
            return (
                "configuration refused, every session gets temporary-failure: "
                f"{self._refused}; fix it, then: systemctl reload milter-manager"
            )
        names = ", ".join(c.name for c in state.generation.children) or "none"
        return f"{state.active} sessions active, {state.total} total; milters: {names}"


def _condition_origin(config: Configuration, error: ConditionConfigError) -> str:
    key_path = getattr(error, "key_path", "conditions")
    return str(config.condition_origin_for(str(key_path)))


def _raise_file_limit() -> None:
    """Each session holds 1 + N sockets: use all the descriptors we are allowed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _one_line(error: BaseException) -> str:
    return "; ".join(str(error).splitlines())
