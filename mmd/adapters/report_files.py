"""Files the report writes: each replaced atomically (temporary file, fsync, rename), so the
web server, node_exporter and the next run never read half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = data.encode() if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def file_cursor(path: Path, offset: int) -> str:
    """A cursor for ``--from-file``: the file's identity and the bytes already read."""
    status = path.stat()
    return f"file:{status.st_dev}:{status.st_ino}:{offset}"


def read_new_lines(path: Path, cursor: str | None) -> Iterator[tuple[str, int]]:
    """Lines (with the offset after each) past ``cursor``; from the start when the cursor
    belongs to another file (rotated by logrotate) or the file shrank (truncated)."""
    with path.open("rb") as stream:
        status = os.fstat(stream.fileno())
        offset = 0
        if cursor is not None and cursor.startswith("file:"):
            device, inode, at = (int(part) for part in cursor.split(":")[1:4])
            if (device, inode) == (status.st_dev, status.st_ino) and at <= status.st_size:
                offset = at
        stream.seek(offset)
        for raw in stream:
            if not raw.endswith(b"\n"):
                break  # a line still being written: read it next time
            offset += len(raw)
            yield raw.decode(errors="replace"), offset
