"""A real libmilter child (python3-milter) for the codec test: run with /usr/bin/python3.

Usage: ``/usr/bin/python3 libmilter_child.py SOCKET_PATH``. It answers every
stage with continue, rejects recipients starting with ``<reject`` through a
reply code, and at end-of-message reports what libmilter decoded from our
commands (a JSON list in the header ``X-Seen``), sends one of every other
change libmilter can send, then accepts. Kept free of mmd imports: Debian's python3 runs it.
"""

from __future__ import annotations

import json
import sys

import Milter


class Child(Milter.Base):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: list[object] = []
        self.body_bytes = 0

    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        self.seen.append(["connect", hostname, family, hostaddr,
                          self.getsymval("j"), self.getsymval("{daemon_name}")])
        return int(Milter.CONTINUE)

    def hello(self, name: str) -> int:
        self.seen.append(["helo", name])
        return int(Milter.CONTINUE)

    def negotiate(self, opts: list[int]) -> int:
        result = int(super().negotiate(opts))
        # Milter.symlist/setsymlist of python3-milter 1.0.5 hand bytes to the C
        # module, which wants str (TypeError, silently swallowed): call it directly.
        self._ctx.setsymlist(Milter.M_ENVFROM, "{auth_type} i")
        return result

    def envfrom(self, sender: str, *args: str) -> int:
        self.seen.append(["mail", sender, *args,
                          self.getsymval("{auth_type}"), self.getsymval("i")])
        return int(Milter.CONTINUE)

    def envrcpt(self, recipient: str, *args: str) -> int:
        self.seen.append(["rcpt", recipient, *args])
        if recipient.startswith("<reject"):
            self.setreply("550", "5.7.1", "Rejected by the test child")
            return int(Milter.REJECT)
        return int(Milter.CONTINUE)

    def data(self) -> int:
        return int(Milter.CONTINUE)

    def unknown(self, command: str) -> int:
        self.seen.append(["unknown", command])
        return int(Milter.CONTINUE)

    def header(self, name: str, value: str) -> int:
        self.seen.append(["header", name, value])
        return int(Milter.CONTINUE)

    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    def body(self, chunk: bytes) -> int:
        self.body_bytes += len(chunk)
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        self.seen.append(["body", self.body_bytes])
        self.addheader("X-Seen", json.dumps(self.seen))
        self.addheader("X-First", "inserted", 0)
        self.chgheader("Subject", 1, "changed subject")
        self.addrcpt("<added@example.org>")
        self.addrcpt("<added-par@example.org>", "NOTIFY=NEVER")
        self.delrcpt("<b@example.org>")
        self.chgfrom("<new-sender@example.org>", "SIZE=100")
        self.replacebody(b"replaced body\r\n")
        self.quarantine("held by the test child")
        self.progress()
        return int(Milter.ACCEPT)

    def abort(self) -> int:
        return int(Milter.CONTINUE)

    def close(self) -> int:
        return int(Milter.CONTINUE)


def main() -> None:
    Milter.factory = Child
    Milter.runmilter("mmd-codec-test", "unix:" + sys.argv[1], timeout=30)


if __name__ == "__main__":
    main()
