"""What the journal says when a child's unix socket refuses the daemon (EACCES)."""

from __future__ import annotations

import grp
import os
import shutil
import socket
import tempfile
from pathlib import Path

from mmd.detection.access import Credentials, Entry, explain, explain_refusal

USER = Credentials(uid=999, gids=frozenset({994}), user="milter-manager")
ROOT_DIR = Entry("/", 0o40755, 0, 0)
RUN = Entry("/run", 0o40755, 0, 0)


def no_members(gid: int) -> set[str]:
    return set()


def test_missing_group_is_named_with_what_to_do() -> None:
    folder = Entry("/run/opendkim", 0o40755, 4242108, 4242108)
    sock = Entry("/run/opendkim/opendkim.sock", 0o140770, 4242108, 4242108)
    text = explain([ROOT_DIR, RUN, folder, sock], USER, no_members)
    assert "the socket /run/opendkim/opendkim.sock is srwxrwx---" in text
    assert "user milter-manager is not in group 4242108" in text  # no such gid on this host
    assert "usermod -a -G 4242108 milter-manager, then systemctl restart milter-manager" in text


def test_member_in_the_database_but_not_in_this_process_needs_a_restart() -> None:
    sock = Entry("/run/opendkim/opendkim.sock", 0o140770, 4242108, 4242108)
    text = explain([ROOT_DIR, RUN, sock], USER, lambda gid: {"milter-manager"})
    assert "is in group 4242108, but this process started before it was added" in text
    assert "systemctl restart milter-manager" in text and "usermod" not in text


def test_a_folder_without_search_permission_for_the_group() -> None:
    folder = Entry("/var/spool/postfix/spamass", 0o40750, 0, 200)
    sock = Entry("/var/spool/postfix/spamass/spamass.sock", 0o140777, 0, 200)
    text = explain([ROOT_DIR, folder, sock], USER, no_members)
    assert text.startswith("the folder /var/spool/postfix/spamass is drwxr-x---")
    assert "not in group 200" in text


def test_owner_only_socket_says_no_group_helps() -> None:
    sock = Entry("/run/x/x.sock", 0o140700, 4242108, 4242108)
    text = explain([ROOT_DIR, sock], USER, no_members)
    assert "neither its group nor others may use it" in text and "usermod" not in text


def test_permissions_that_allow_it_point_at_selinux() -> None:
    sock = Entry("/run/x/x.sock", 0o140777, 4242108, 4242108)
    assert "SELinux" in explain([ROOT_DIR, sock], USER, no_members)


def test_a_real_socket_on_disk() -> None:
    folder = Path(tempfile.mkdtemp(dir="/var/tmp"))  # not below pytest's 0700 folder
    folder.chmod(0o755)
    path = folder / "child.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        path.chmod(0o770)
        gid = os.stat(path).st_gid
        stranger = Credentials(uid=4242424, gids=frozenset({4242424}), user="nobody-here")
        text = explain_refusal(str(path), stranger)
    shutil.rmtree(folder)
    group = grp.getgrgid(gid).gr_name
    assert "is srwxrwx--- " in text and f"not in group {group}" in text, text


def test_a_folder_that_hides_the_socket_from_stat() -> None:
    """Debian's /run/opendkim is 0750: without the group even stat() of the socket fails."""
    folder = Entry("/run/opendkim", 0o40750, 4242108, 4242108)
    text = explain([ROOT_DIR, RUN, folder], USER, no_members)
    assert text.startswith("the folder /run/opendkim is drwxr-x--- "), text
    assert "usermod -a -G 4242108 milter-manager" in text


def test_a_real_folder_on_disk_that_refuses_the_search() -> None:
    folder = Path(tempfile.mkdtemp(dir="/var/tmp"))
    folder.chmod(0o755)
    inner = folder / "run"
    inner.mkdir(mode=0o750)
    path = inner / "child.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        gid = os.stat(inner).st_gid
        pid = os.fork()
        if pid == 0:  # as an unprivileged user, as the daemon runs
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            text = explain_refusal(str(path))
            os._exit(0 if text.startswith(f"the folder {inner} is drwxr-x--- ")
                     and f"not in group {grp.getgrgid(gid).gr_name}" in text else 1)
        _, status = os.waitpid(pid, 0)
    shutil.rmtree(folder)
    assert os.waitstatus_to_exitcode(status) == 0
