"""Message bodies kept in memory up to a limit and in a temporary file beyond.

The engine keeps a message body in whatever ``BodyStore`` it is given; this is
the daemon's: a temporary file is I/O, so it lives here among the adapters.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO


class SpooledBody:
    """Memory up to ``limit`` bytes, a temporary file beyond: bounded memory per message."""

    def __init__(self, limit: int) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=limit)  # noqa: SIM115
        if limit <= 0:
            # SpooledTemporaryFile takes 0 as "never roll over": body_memory_limit = 0
            # means no body in memory at all
            self._file.rollover()
        self._size = 0

    def append(self, chunk: bytes) -> None:
        self._file.seek(0, 2)
        self._file.write(chunk)
        self._size += len(chunk)

    def chunks(self, size: int) -> Iterator[bytes]:
        offset = 0
        while offset < self._size:
            self._file.seek(offset)
            piece = self._file.read(min(size, self._size - offset))
            if not piece:
                return
            offset += len(piece)
            yield piece

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._file.close()
