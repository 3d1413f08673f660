"""Mail flowing through mmd while something happens (a bus restart, a package install).

Each loop runs milter-test-server against mmd's socket inside the container, one session
after another, until told to stop, and counts sessions sent and sessions answered with a
verdict (``status: accept``/``pass``); the output of any other session is kept.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.container import SystemdContainer

STOP = "/run/mmd-test-load.stop"
FAILURES = "/run/mmd-test-load.failures"

LOOP = r"""
sent=0; answered=0
while [ ! -e {stop} ]; do
  sent=$((sent + 1))
  if out="$(milter-test-server -s unix:{socket} 2>&1)" \
      && printf '%s\n' "$out" | grep -qE '^status: (accept|pass)$'; then
    answered=$((answered + 1))
  else
    printf '%s %s\n' "$(date +%T.%N)" "$out" >>{failures}
  fi
done
echo "$sent $answered"
"""


@dataclass
class SessionLoad:
    """``start()`` some loops, ``stop()`` them: ``sent``, ``answered``, ``failures``."""

    c: SystemdContainer
    socket: str
    loops: int = 2
    sent: int = 0
    answered: int = 0
    failures: str = ""
    _running: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self) -> None:
        self.c.run(["rm", "-f", STOP, FAILURES])
        script = LOOP.format(stop=STOP, socket=self.socket, failures=FAILURES)
        self._running = [self.c.popen(["bash", "-c", script]) for _ in range(self.loops)]

    def stop(self) -> None:
        self.c.run(["touch", STOP])
        counts = [loop.communicate(timeout=120)[0].split() for loop in self._running]
        self._running = []
        self.sent = sum(int(count[0]) for count in counts)
        self.answered = sum(int(count[1]) for count in counts)
        self.failures = self.c.run(["cat", FAILURES], check=False).stdout

    def __str__(self) -> str:
        return f"{self.sent} sessions sent, {self.answered} answered"


@contextmanager
def flowing(c: SystemdContainer, socket: str, settle: float = 2.0) -> Iterator[SessionLoad]:
    """Sessions flow for the ``with`` block, from ``settle`` seconds before it to after it."""
    load = SessionLoad(c, socket)
    load.start()
    try:
        time.sleep(settle)
        yield load
        time.sleep(settle)
    finally:
        load.stop()
