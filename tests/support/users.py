"""Acting as another user inside the test process (the test runs as root, as CI does)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def effective_user(name: str) -> Iterator[None]:
    """Files are opened with the rights of ``name`` until the block ends."""
    assert os.geteuid() == 0, "this test switches the effective user: it needs root"
    user = pwd.getpwnam(name)
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
