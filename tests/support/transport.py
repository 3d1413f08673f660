"""An asyncio transport that keeps what is written, for adapter unit tests without sockets."""

from __future__ import annotations

import asyncio


class RecordingTransport(asyncio.Transport):
    """Every write kept in ``written``; close and abort do nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass
