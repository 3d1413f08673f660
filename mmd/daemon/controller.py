"""The control implementation: the object behind the D-Bus interface (``mmd.control.Control``).

It owns what an admin can look at and change while the daemon runs: the configuration in
force, the generation new sessions start with, reloads, live updates after systemd changed,
runtime switches (SetMilterEnabled) and the counters. A reload loads and checks the next
generation in an executor (file reads and detection block) and installs it in one step on
the event loop, only when it is whole: sessions in flight keep the one they started with,
and a broken configuration leaves the old one serving (fail closed).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable

from mmd import __version__
from mmd.adapters import notify
from mmd.adapters.server import ServerState
from mmd.config.loader import ConfigError
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
from mmd.daemon.generation import Loaded, Options, build_generation, load_generation, one_line
from mmd.daemon.records import Counters, JournalRecorder
from mmd.daemon.startup import keep_listening_settings, refused_configuration
from mmd.detection import activity
from mmd.journal_schema import Event, Field, extra

log = logging.getLogger("mmd.daemon")

MilterStateChanged = Callable[[str, bool, str], None]
Reloaded = Callable[[bool, str], None]


class Controller:
    """Implements ``mmd.control.Control`` over the server's state."""

    version = __version__

    def __init__(self, options: Options) -> None:
        self.options = options
        self.counters = Counters()
        self.recorder = JournalRecorder(self.counters)
        self.server: ServerState | None = None  # set by ``start``
        self._state_name = "starting"
        self._enabled_overrides: dict[str, bool] = {}
        self._config = Configuration()
        self._reload_lock = asyncio.Lock()
        self._subscribers: list[tuple[MilterStateChanged, Reloaded]] = []
        self._generation_number = 0
        self._refused = ""  # why the configuration was refused at start, until a reload
        self._listening = ManagerConfig()  # the listening settings in force since start
        self._socket_activated = False
        self._inactive: dict[str, str] = {}  # detected milters whose unit does not run
        self._files_read = ""  # live.fingerprint of the files the last load used
        self._files_waiting = ""  # the fingerprint a live update said it waits for

    # ------------------------------------------------------------ set up by the life cycle

    def start(self, loaded: Loaded) -> ServerState:
        """The first generation: the server's state, sessions start with it."""
        self._config = loaded.config
        self._files_read = loaded.files
        self._follow_activity(loaded.config)
        self.server = ServerState(loaded.generation, self.recorder)
        return self.server

    def refuse_at_start(self, error: ConfigError | InvalidConfiguration) -> Loaded:
        """Log every problem; the daemon serves, but every session gets temporary-failure."""
        problems = error.problems if isinstance(error, ConfigError) else [one_line(error)]
        for problem in problems:
            log.error(
                "configuration: %s",
                problem,
                extra=extra(Event.CONFIGURATION_ERROR, {Field.REASON: problem}),
            )
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        self._refused = problems[0] + more
        log.error(
            "configuration refused at start: every session gets temporary-failure until a "
            "reload (systemctl reload milter-manager) loads a valid configuration",
            extra=extra(
                Event.CONFIGURATION_ERROR, {Field.STATUS: "refused", Field.REASON: self._refused}
            ),
        )
        config = refused_configuration(error, self.options.overrides)
        return Loaded(config, build_generation(config, 0), "")  # no child: nothing to read

    def listening_opened(self, manager: ManagerConfig, socket_activated: bool) -> None:
        """The listening settings in force from now on (a reload cannot change them)."""
        self._listening = manager
        self._socket_activated = socket_activated

    def set_state(self, name: str) -> None:
        """``running`` once serving, ``stopping`` at the end (the life cycle's words)."""
        self._state_name = name

    # ------------------------------------------------------------ Control

    def state(self) -> str:
        return self._state_name

    def active_sessions(self) -> int:
        return self.server.active if self.server else 0

    def total_sessions(self) -> int:
        return self.server.total if self.server else 0

    def configuration_files(self) -> list[str]:
        return list(self._config.files)

    async def _load_next(self) -> Loaded:
        """Load and check the next generation off the event loop (file reads and detection
        block); raises ConfigError or InvalidConfiguration."""
        return await asyncio.get_running_loop().run_in_executor(
            None,
            load_generation,
            self.options,
            dict(self._enabled_overrides),
            self._generation_number + 1,
        )

    async def reload(self) -> str:
        async with self._reload_lock:
            self._state_name = "reloading"
            notify.reloading()
            try:
                loaded = await self._load_next()
            except (ConfigError, InvalidConfiguration) as error:
                message = f"reload refused, keeping the previous configuration: {one_line(error)}"
                log.error(
                    "%s",
                    message,
                    extra=extra(
                        Event.RELOAD, {Field.STATUS: "failed", Field.REASON: one_line(error)}
                    ),
                )
                self._finish_reload(False, message)
                raise InvalidConfiguration(message) from error
            self._keep_listening_settings(loaded.config)
            self._refused = ""
            self._install(loaded)
            self._follow_activity(loaded.config)
            generation = loaded.generation
            message = f"reloaded: {len(generation.children)} milters: " + ", ".join(
                c.name for c in generation.children
            )
            log.info("%s", message, extra=extra(Event.RELOAD, {Field.STATUS: "success"}))
            self._finish_reload(True, message)
            return message

    def _keep_listening_settings(self, config: Configuration) -> None:
        for warning in keep_listening_settings(self._listening, config, self._socket_activated):
            log.warning(
                "reload: %s",
                warning,
                extra=extra(Event.CONFIGURATION_WARNING, {Field.REASON: warning}),
            )

    def _install(self, loaded: Loaded, keep_connections: bool = False) -> None:
        """The one step that changes what new sessions run with. ``keep_connections``: a
        live update, where kept child connections survive if the children are the same."""
        assert self.server is not None
        self._generation_number = loaded.generation.number
        self._config = loaded.config
        self._files_read = loaded.files  # which files this load used, for the live updates
        self.server.install(loaded.generation, keep_connections)

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
            assert self.server is not None
            if self._refused:  # refused at start: only a reload may load a configuration
                log.debug("live update after %s: waiting for a reload", why)
                return
            if not self._config.manager.follow_systemd:
                log.debug("live update after %s: follow_systemd = false", why)
                return
            loop = asyncio.get_running_loop()
            files = await loop.run_in_executor(None, live.fingerprint, self.options.config_dir)
            if self._files_edited(files, why):
                return
            try:
                loaded = await self._load_next()
            except (ConfigError, InvalidConfiguration) as error:
                log.warning("live update after %s skipped: %s", why, one_line(error))
                return
            if self._files_edited(loaded.files, why):  # edited while it loaded
                return
            before = [c.name for c in self.server.generation.children]
            self._install(loaded, keep_connections=True)
            said = self._follow_activity(loaded.config)
            after = [c.name for c in loaded.generation.children]
            live.log_update(loaded.generation.number, why, after)
            live.report_set_change(
                before, after, why, said, (changed for changed, _ in self._subscribers)
            )
            notify.status(self.status_text())

    def _files_edited(self, files: str, why: str) -> bool:
        """The configuration files differ from the last load's: say so once per edit."""
        if files == self._files_read:
            return False
        if files != self._files_waiting:
            self._files_waiting = files
            log.warning(
                "systemd changed (%s), but the configuration files changed since the "
                "last reload: the set of milters stays until `systemctl reload "
                "milter-manager`",
                why,
            )
        return True

    def _finish_reload(self, success: bool, message: str) -> None:
        self._state_name = "running"
        notify.ready(self.status_text())
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
        counters = self.counters.milter(name)
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

    async def set_milter_enabled(self, name: str, enabled: bool, caller: str) -> None:
        async with self._reload_lock:  # not amid a reload: each starts from the other's result
            if not any(m.name == name for m in self._config.milters):
                raise NoSuchMilter(name)
            config = copy.deepcopy(self._config)  # the one in force stays whole if this fails
            for milter in config.milters:
                if milter.name == name:
                    milter.enabled = enabled
            # conditions may read their list files: off the event loop, as a reload
            generation = await asyncio.get_running_loop().run_in_executor(
                None, build_generation, config, self._generation_number + 1
            )
            self._enabled_overrides[name] = enabled
            self._install(Loaded(config, generation, self._files_read))
        word = "enabled" if enabled else "disabled"
        reason = f"{word} at runtime by {caller}"
        log.info(
            "milter %s %s",
            name,
            reason,
            extra=extra(
                Event.MILTER_STATE,
                {Field.MILTER: name, Field.STATUS: word, Field.REASON: reason},
            ),
        )
        for changed, _ in self._subscribers:
            changed(name, enabled, reason)

    def statistics(self) -> Statistics:
        milters = {
            name: MilterStatistics(
                sessions=c.sessions,
                verdicts=dict(c.verdicts),
                average_latency=c.elapsed_total / c.sessions if c.sessions else 0.0,
                max_latency=c.elapsed_max,
            )
            for name, c in self.counters.milters.items()
        }
        return Statistics(
            self.total_sessions(), self.active_sessions(), dict(self.counters.statuses), milters
        )

    def show_config(self) -> str:
        return render_show_config(self._config)

    def subscribe(self, milter_state_changed: MilterStateChanged, reloaded: Reloaded) -> None:
        self._subscribers.append((milter_state_changed, reloaded))

    # ------------------------------------------------------------ status

    def status_text(self) -> str:
        """systemd's STATUS= line (``systemctl status``)."""
        state = self.server
        if state is None:
            return "starting"
        if self._refused:
            return (
                "configuration refused, every session gets temporary-failure: "
                f"{self._refused}; fix it, then: systemctl reload milter-manager"
            )
        names = ", ".join(c.name for c in state.generation.children) or "none"
        return f"{state.active} sessions active, {state.total} total; milters: {names}"
