"""The daemon's process life cycle: start, listen, signals, watchdog, stop.

The first generation is loaded in an executor with the rights every reload will have, the
listening socket is opened (or taken from systemd), privileges are dropped, the control
interface goes on the bus, and READY=1 is sent. SIGHUP reloads, SIGTERM stops: sessions in
flight get ``shutdown_timeout`` seconds. What runs while the daemon serves (reloads, live
updates, the D-Bus methods) is the ``Controller``'s (``mmd.daemon.controller``); building a
generation is ``mmd.daemon.generation``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mmd.adapters import notify, reload_signal
from mmd.adapters.activation import take_activated_sockets
from mmd.adapters.server import ServerState, listen, serve_socket
from mmd.adapters.unix_socket import (
    UnixListener,
    bind_unix_socket,
    ensure_private_folders,
    remove_unix_socket,
)
from mmd.config.connection_spec import UnixSpec, parse_connection_spec
from mmd.config.loader import ConfigError
from mmd.config.model import ManagerConfig
from mmd.control import InvalidConfiguration
from mmd.daemon.controller import Controller
from mmd.daemon.generation import Loaded, Options, load_generation, one_line
from mmd.journal_schema import Event, extra

if TYPE_CHECKING:
    from mmd.adapters.control_link import ControlLink
    from mmd.adapters.systemd_follow import SystemdFollower

log = logging.getLogger("mmd.daemon")


class Daemon:
    """One milter-manager process, from start to exit; ``control`` is what D-Bus exports."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.control = Controller(options)
        self._stop = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._unix_listeners: list[UnixListener] = []
        self._link: ControlLink | None = None
        self._follower: SystemdFollower | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        notify.default_notifier()  # reads and clears NOTIFY_SOCKET before anything else runs
        _raise_file_limit()
        try:
            loaded = await loop.run_in_executor(None, self.first_load)
        except (ConfigError, InvalidConfiguration) as error:
            loaded = self.control.refuse_at_start(error)
        state = self.control.start(loaded)
        try:
            return await self._serve(loop, state, loaded.config.manager)
        finally:
            self._remove_unix_sockets()

    def stop(self) -> None:
        """As SIGTERM: stop accepting, let sessions in flight finish, exit."""
        self._stop.set()

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, state: ServerState, manager: ManagerConfig
    ) -> int:
        socket_activated = await self._open_listeners(state, manager)
        self.control.listening_opened(copy.deepcopy(manager), socket_activated)
        self._drop_privileges()
        for signum, handler in (
            (signal.SIGHUP, self._on_sighup),
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
        ):
            loop.add_signal_handler(signum, handler)
        await self._export_control()
        self.control.set_state("running")
        status = self.control.status_text()
        notify.ready(status)
        log.info("ready: %s", status, extra=extra(Event.READY))
        watchdog = loop.create_task(self._watchdog())
        await self._stop.wait()
        watchdog.cancel()
        await self._shutdown(state)
        return 0

    async def _open_listeners(self, state: ServerState, manager: ManagerConfig) -> bool:
        """Listen where the configuration says, unless systemd passed sockets (then True)."""
        activated = take_activated_sockets()
        if activated:
            for item in activated:
                self._servers.append(await serve_socket(item.sock, state))
                log.info("serving socket-activated fd %s", item.name)
            return True
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
            self._servers.append(await serve_socket(unix.sock, state))
        else:
            self._servers.append(await listen(manager.connection_spec, state))
        log.info("listening on %s", manager.connection_spec)
        return False

    def _remove_unix_sockets(self) -> None:
        """The socket files this process made go with it: the next client gets "no such file"
        rather than "connection refused". Sockets systemd passed are systemd's."""
        while self._unix_listeners:
            unix = self._unix_listeners.pop()
            try:
                remove_unix_socket(unix)
            except OSError as error:  # e.g. after -u, a folder only root may change
                log.warning("cannot remove the socket file %s: %s", unix.path, error)

    def first_load(self) -> Loaded:
        """Blocking: the first load, read with the rights every later reload will have.

        Started as root with ``-u``, the socket is opened as root but files are read as the
        user: a milter's file that only root may read must not be detected at start and then
        vanish at the first reload (the reload runs after the switch).
        """
        target = self._target_user()
        if target is None:
            return load_generation(self.options, {}, 0)
        uid, gid, groups = target
        saved_groups = os.getgroups()
        os.setgroups(groups)
        os.setegid(gid)
        os.seteuid(uid)
        try:
            return load_generation(self.options, {}, 0)
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(saved_groups)

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

        link = ControlLink(self.control, self.options.bus_address)
        self._link = link
        if self.options.detector is not None:
            from mmd.adapters.systemd_follow import SystemdFollower, attach

            follower = SystemdFollower(self.control.refresh_detection)
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
            notify.status(self.control.status_text())
            await asyncio.sleep(period)

    async def _shutdown(self, state: ServerState) -> None:
        self.control.set_state("stopping")
        notify.stopping()
        log.info("stopping: %d sessions in flight", state.active)
        for server in self._servers:
            server.close()
        self._remove_unix_sockets()
        while state.waiting:  # never started: the MTA applies its own default
            state.waiting.popleft().close_mta()
        timeout = state.generation.manager.shutdown_timeout
        if state.active:
            try:
                await asyncio.wait_for(state.idle.wait(), timeout)
            except TimeoutError:
                log.warning(
                    "stopping: %d sessions still open after %g s; closing them",
                    state.active,
                    timeout,
                )
                for connection in list(state.connections):
                    connection.close_mta()
        state.pool.close()  # kept child connections: QUIT, and nothing kept from now on
        if self._follower is not None:
            self._follower.close()
        if self._link is not None:
            await self._link.close()
        log.info("stopped")

    def _on_sighup(self) -> None:
        signalled_ns = time.monotonic_ns()
        asyncio.get_running_loop().create_task(self._reload_logged(signalled_ns))

    async def _reload_logged(self, signalled_ns: int) -> None:
        """A reload asked for by SIGHUP; ``milter-manager reload`` may wait for the answer."""
        try:
            message = await self.control.reload()
        except InvalidConfiguration as error:  # already in the journal
            reload_signal.confirm(False, signalled_ns, str(error))
        except Exception as error:
            log.exception("reload failed")
            reload_signal.confirm(False, signalled_ns, f"reload failed: {one_line(error)}")
        else:
            reload_signal.confirm(True, signalled_ns, message)


def _raise_file_limit() -> None:
    """Each session holds 1 + N sockets: use all the descriptors we are allowed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
