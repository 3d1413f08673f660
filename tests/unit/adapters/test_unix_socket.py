"""The socket mmd creates itself: a private folder, no symbolic link followed, removed at exit
(issue 13, defects 4 and 10)."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import stat
from pathlib import Path

import pytest

from mmd.adapters.unix_socket import (
    bind_unix_socket,
    check_private_folder,
    ensure_private_folders,
    remove_unix_socket,
)

NOBODY = pwd.getpwnam("nobody")


def test_private_folders_are_made_for_this_user_only(tmp_path: Path) -> None:
    root = tmp_path / "milter-manager-1000"
    ensure_private_folders(root, root / "milter-manager")
    for folder in (root, root / "milter-manager"):
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.geteuid()
    ensure_private_folders(root, root / "milter-manager")  # a second start accepts them


def test_folder_made_by_another_user_is_refused(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test gives a folder to another user: it needs root"
    root = tmp_path / "milter-manager-1000"
    root.mkdir(mode=0o755)
    os.chown(root, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(OSError, match=rf"{root} belongs to uid {NOBODY.pw_uid}, not to this"):
        ensure_private_folders(root, root / "milter-manager")
    assert not (root / "milter-manager").exists()


@pytest.mark.parametrize(("mode", "who"), [(0o777, "others"), (0o1777, "others"),
                                           (0o770, "its group")])
def test_folder_writable_by_others_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    root = tmp_path / "milter-manager-1000"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(OSError, match=f"writable by {who}"):
        ensure_private_folders(root, root / "milter-manager")


def test_symbolic_link_is_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root = tmp_path / "milter-manager-1000"
    root.symlink_to(elsewhere)
    with pytest.raises(OSError, match="is a symbolic link"):
        ensure_private_folders(root, root / "milter-manager")
    assert list(elsewhere.iterdir()) == []
    inner_root = tmp_path / "real"
    inner_root.mkdir(mode=0o700)
    (inner_root / "milter-manager").symlink_to(elsewhere)
    with pytest.raises(OSError, match="is a symbolic link"):
        ensure_private_folders(inner_root, inner_root / "milter-manager")


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").write_text("")
    with pytest.raises(OSError, match="is not a folder"):
        check_private_folder(tmp_path / "root")


def test_socket_gets_mode_and_group_at_creation(tmp_path: Path) -> None:
    path = tmp_path / "mmd.sock"
    group = grp.getgrgid(NOBODY.pw_gid).gr_name
    listener = bind_unix_socket(str(path), 0o640, group)
    try:
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o640
        assert info.st_gid == NOBODY.pw_gid
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(path))
        client.close()
    finally:
        listener.sock.close()


def test_link_at_the_socket_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret")
    victim.chmod(0o600)
    path = tmp_path / "mmd.sock"
    path.symlink_to(victim)
    with pytest.raises(OSError, match="exists and is not a socket"):
        bind_unix_socket(str(path), 0o666, "nogroup")
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert os.stat(victim).st_gid == os.getegid()


def test_unknown_group_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="unix_socket_group: no group named 'no-such-group'"):
        bind_unix_socket(str(tmp_path / "mmd.sock"), 0o660, "no-such-group")
    assert not (tmp_path / "mmd.sock").exists()


def test_leftover_socket_is_replaced_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "mmd.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nobody listens
    listener = bind_unix_socket(str(path), 0o660)
    try:
        with pytest.raises(OSError, match="is in use by another process"):
            bind_unix_socket(str(path), 0o660)
    finally:
        listener.sock.close()


def test_removal_takes_only_the_file_this_process_made(tmp_path: Path) -> None:
    path = tmp_path / "mmd.sock"
    listener = bind_unix_socket(str(path), 0o660)
    listener.sock.close()
    remove_unix_socket(listener)
    assert not path.exists()
    remove_unix_socket(listener)  # already gone: nothing to do

    mine = bind_unix_socket(str(path), 0o660)
    mine.sock.close()
    path.unlink()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))  # another daemon's socket, made since
    try:
        remove_unix_socket(mine)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        other.close()
