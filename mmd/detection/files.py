"""Read files below a configurable root, so detection can run on a fake tree.

A missing file is an ordinary answer (``None``); a file that exists but
cannot be read as text (a directory in its place, invalid bytes, no
permission) raises :class:`UnreadableFile` naming the host path, so the one
detector that needed it is skipped with a clear line.
"""

from __future__ import annotations

import os
from pathlib import Path


class UnreadableFile(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = path
        self.reason = reason


class RootFiles:
    """Host paths (``/etc/...``) resolved below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.local(path))

    def is_executable(self, path: str) -> bool:
        local = self.local(path)
        return local.is_file() and os.access(local, os.X_OK)

    def read(self, path: str) -> str | None:
        """The file's text, or None when there is no such file."""
        local = self.local(path)
        if not os.path.lexists(local):
            return None
        try:
            data = local.read_bytes()
        except IsADirectoryError:
            raise UnreadableFile(path, "it is a directory") from None
        except FileNotFoundError:
            return None  # a dangling symlink: the file is not there
        except OSError as error:
            raise UnreadableFile(path, error.strerror or str(error)) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UnreadableFile(path, f"not UTF-8 text (byte {error.start})") from None

    def list_dir(self, path: str) -> list[str]:
        """Entry names of a directory, sorted; empty when it does not exist."""
        local = self.local(path)
        if not local.is_dir():
            return []
        try:
            return sorted(os.listdir(local))
        except OSError as error:
            raise UnreadableFile(path, error.strerror or str(error)) from None
