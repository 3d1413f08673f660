"""systemd socket activation: take over the listening sockets systemd opened for us.

systemd (or ``systemd-socket-activate``) passes sockets as fds 3, 4, ... and describes them in
LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (see sd_listen_fds(3)). The parsing is a pure
function so it can be tested on plain mappings; ``take_activated_sockets`` does the I/O and
removes the variables, so child processes (and their children) never believe they were
activated.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

SD_LISTEN_FDS_START = 3
"""The first passed fd, fixed by the protocol."""

UNNAMED = "unknown"
"""The name systemd gives a passed fd without FileDescriptorName=."""

LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(ValueError):
    """The activation variables are present but inconsistent: a setup error to report."""


@dataclass(frozen=True)
class PassedFd:
    """One fd systemd passed, with the name of its ListenStream= (FileDescriptorName=)."""

    fd: int
    name: str


@dataclass(frozen=True)
class ActivatedSocket:
    """A passed listening socket, ready for asyncio's ``start_server(sock=...)``."""

    name: str
    sock: socket.socket


def parse_listen_environment(environ: Mapping[str, str], pid: int) -> list[PassedFd]:
    """Return the fds the variables describe for process ``pid``.

    No variables, or variables meant for another process (LISTEN_PID differs: they leaked
    from a parent), mean "not socket activated": an empty list.
    """
    listen_pid = environ.get("LISTEN_PID")
    listen_fds = environ.get("LISTEN_FDS")
    if listen_pid is None or listen_fds is None:
        return []
    try:
        target_pid = int(listen_pid)
    except ValueError:
        raise ActivationError(f"LISTEN_PID is not a process id: {listen_pid!r}") from None
    if target_pid != pid:
        return []
    try:
        count = int(listen_fds)
    except ValueError:
        raise ActivationError(f"LISTEN_FDS is not a number: {listen_fds!r}") from None
    if count < 0:
        raise ActivationError(f"LISTEN_FDS is negative: {count}")
    names_value = environ.get("LISTEN_FDNAMES")
    if names_value is None:
        names = [UNNAMED] * count
    else:
        names = names_value.split(":") if count else []
        if len(names) != count:
            raise ActivationError(
                f"LISTEN_FDNAMES names {len(names)} fds but LISTEN_FDS says {count}: "
                f"{names_value!r}"
            )
    return [
        PassedFd(fd=SD_LISTEN_FDS_START + index, name=name or UNNAMED)
        for index, name in enumerate(names)
    ]


def forget_listen_environment(environ: MutableMapping[str, str]) -> None:
    """Remove the activation variables (``os.environ.pop`` also unsets them for children)."""
    for variable in LISTEN_VARIABLES:
        environ.pop(variable, None)


def take_activated_sockets(
    environ: MutableMapping[str, str] | None = None, pid: int | None = None
) -> list[ActivatedSocket]:
    """Wrap every passed fd in a socket object and clear the variables.

    The fds are made close-on-exec: a child process must not keep the MTA-side socket open
    (it would keep accepting connections nobody serves after we stop).
    """
    env = os.environ if environ is None else environ
    try:
        passed = parse_listen_environment(env, os.getpid() if pid is None else pid)
    finally:
        forget_listen_environment(env)
    activated: list[ActivatedSocket] = []
    for item in passed:
        try:
            os.set_inheritable(item.fd, False)
            sock = socket.socket(fileno=item.fd)
        except OSError as error:
            raise ActivationError(
                f"passed fd {item.fd} ({item.name}) is not a usable socket: {error}"
            ) from error
        activated.append(ActivatedSocket(name=item.name, sock=sock))
    return activated


def pick_socket(activated: list[ActivatedSocket], name: str) -> ActivatedSocket | None:
    """The socket systemd named ``name`` (FileDescriptorName=), else the only one passed."""
    for item in activated:
        if item.name == name:
            return item
    if len(activated) == 1:
        return activated[0]
    return None
