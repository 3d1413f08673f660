"""Why a child milter's unix socket refuses this process, in words an administrator acts on.

The daemon reaches group-restricted milter sockets (Debian's opendkim socket is 0770, group
opendkim) through its user's supplementary groups. A process gets those when it starts and
never again, so a milter package installed later, whose package creates a new group, is
detected at once but its socket answers "Permission denied" until the user is in that group
*and* the daemon was restarted. A bare "Permission denied" per session does not say which of
the two is missing, or which group: ``explain_refusal`` does.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

SERVICE = "milter-manager"
DOCS = "docs/detection.md, 'Reaching the child sockets'"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who asks: the process's user and the groups it holds right now."""

    uid: int
    gids: frozenset[int]
    user: str

    @classmethod
    def of_this_process(cls) -> Credentials:
        uid = os.geteuid()
        return cls(uid, frozenset({os.getegid(), *os.getgroups()}), _user_name(uid))


@dataclass(frozen=True, slots=True)
class Entry:
    """What ``stat`` says about one path on the way to the socket."""

    path: str
    mode: int
    uid: int
    gid: int


def explain_refusal(socket_path: str, creds: Credentials | None = None) -> str:
    """One sentence: where the permission is missing and what to do about it."""
    creds = creds or Credentials.of_this_process()
    try:
        entries = _entries(socket_path)
    except OSError as error:
        return f"cannot inspect {error.filename or socket_path}: {error.strerror or error}"
    return explain(entries, creds, _members)


def explain(
    entries: list[Entry],
    creds: Credentials,
    members: Callable[[int], set[str]] | None = None,
) -> str:
    """``entries``: every folder from / down, then the socket (folders need x, the socket w);
    the list stops early at a folder this process may not search.

    ``members(gid) -> set of user names`` lists a group's members as /etc/group says
    (injected for tests); the default reads the group database.
    """
    listed = members or _members
    for entry in entries:
        is_socket = stat.S_ISSOCK(entry.mode)
        need = 0o2 if is_socket else 0o1  # write the socket, search the folders
        if creds.uid == 0 or _allowed(entry, creds, need):
            continue
        what = "the socket" if is_socket else "the folder"
        shown = f"{what} {entry.path} is {stat.filemode(entry.mode)} " \
                f"{_user_name(entry.uid)}:{_group_name(entry.gid)}"  # fmt: skip
        group_bits = (entry.mode >> 3) & 0o7
        if entry.uid != creds.uid and group_bits & need:
            group = _group_name(entry.gid)
            if creds.user in listed(entry.gid):
                return (
                    f"{shown}; user {creds.user} is in group {group}, but this process "
                    f"started before it was added: systemctl restart {SERVICE} ({DOCS})"
                )
            return (
                f"{shown} and user {creds.user} is not in group {group}: "
                f"usermod -a -G {group} {creds.user}, then systemctl restart {SERVICE} "
                f"(the Debian package does both when a milter package it knows is "
                f"installed; {DOCS})"
            )
        return (
            f"{shown}: neither its group nor others may use it; change the milter's socket "
            f"mode or group (its UMask or socket settings), or give {creds.user} access ({DOCS})"
        )
    if not entries or not stat.S_ISSOCK(entries[-1].mode):
        return "cannot see why: the path is not a socket now"
    return (
        f"file permissions allow user {creds.user} to connect to {entries[-1].path}: "
        "a security module refused it (SELinux: docs/selinux.md)"
    )


def _allowed(entry: Entry, creds: Credentials, need: int) -> bool:
    if entry.uid == creds.uid:
        bits = entry.mode >> 6
    elif entry.gid in creds.gids:
        bits = entry.mode >> 3
    else:
        bits = entry.mode
    return bool(bits & need)


def _entries(socket_path: str) -> list[Entry]:
    path = PurePosixPath(socket_path)
    chain = [*reversed(path.parents), path]
    found = []
    for item in chain:
        try:
            info = os.stat(item)
        except PermissionError:
            break  # a folder before it may not be searched: ``explain`` names that one
        found.append(Entry(str(item), info.st_mode, info.st_uid, info.st_gid))
    return found


def _members(gid: int) -> set[str]:
    """Users in the group per the group database: listed members and those whose primary
    group it is (not the process's groups: those are fixed at start)."""
    try:
        group = grp.getgrgid(gid)
    except KeyError:
        return set()
    names = set(group.gr_mem)
    names.update(user.pw_name for user in pwd.getpwall() if user.pw_gid == gid)
    return names


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
