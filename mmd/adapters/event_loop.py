"""Which asyncio event loop runs the daemon.

uvloop (libuv) cuts the daemon's own CPU per session by roughly a seventh in
``bench/sessions.py``; the standard loop is the fallback wherever uvloop is
not installed. The rest of mmd uses only the asyncio API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    # asyncio.Runner rather than uvloop.run(): Debian 12's uvloop (0.17) predates uvloop.run.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
