"""The Unix socket mmd creates itself (not socket-activated): its folder, its file, its removal.

Nothing here follows a symbolic link. The socket file gets its mode when ``bind`` creates it
(through the umask), never from a ``chmod`` that a link swapped in could redirect; its group
is set with ``lchown``. A private folder (the non-root default under /tmp) must be a real
folder owned by the daemon's user that nobody else may write to: another local user who
created it first would otherwise receive the mail. The file is removed at exit only if it is
still the one this process created, so a socket systemd passed in (or one another daemon
made since) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UnixListener:
    """A listening socket bound to ``path`` by this process, and the file's identity."""

    path: str
    sock: socket.socket
    identity: tuple[int, int, int]  # device, inode, change time: inode numbers are reused


def ensure_private_folders(root: Path, folder: Path) -> None:
    """Create ``root`` and the folders below it down to ``folder`` (mode 0700), or check them.

    Each must be a real folder (not a symbolic link) owned by the effective user and not
    writable by group or others; raises OSError naming the folder otherwise.
    """
    if folder != root and root not in folder.parents:
        raise OSError(f"{folder} is not inside {root}")
    below = folder.relative_to(root).parts
    for depth in range(len(below) + 1):
        path = root.joinpath(*below[:depth])
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        check_private_folder(path)


def check_private_folder(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise OSError(f"{path} is a symbolic link; refusing to put the socket there")
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a folder; refusing to put the socket there")
    if info.st_uid != os.geteuid():
        raise OSError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): "
            "another user may have made it to receive the mail; remove it, or choose a "
            "socket with -s"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(
            f"{path} is writable by {'others' if info.st_mode & stat.S_IWOTH else 'its group'} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): refusing to put the socket there"
        )


def bind_unix_socket(path: str, mode: int, group: str = "", backlog: int = 1024) -> UnixListener:
    """A listening socket at ``path`` with permissions ``mode`` and, if given, ``group``."""
    gid = _group_id(group) if group else -1
    _remove_leftover(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        previous = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)  # creates the file; a link already there is EADDRINUSE
        finally:
            os.umask(previous)
        if gid != -1:
            os.chown(path, -1, gid, follow_symlinks=False)
        identity = _identity(os.lstat(path))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return UnixListener(path, sock, identity)


def remove_unix_socket(listener: UnixListener) -> None:
    """Remove the socket file, if it is still the one ``bind_unix_socket`` created."""
    try:
        info = os.lstat(listener.path)
    except FileNotFoundError:
        return
    if _identity(info) == listener.identity:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listener.path)


def _identity(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_dev, info.st_ino, info.st_ctime_ns


def _group_id(name: str) -> int:
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise OSError(f"unix_socket_group: no group named {name!r}") from None


def _remove_leftover(path: str) -> None:
    """A socket file nobody listens on is a leftover from a crash: replace it, nothing else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise OSError(f"{path} is in use by another process")
    finally:
        probe.close()
