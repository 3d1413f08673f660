"""A raw MTA-side milter client run inside the test container, for sessions a system test
holds open (across a reload, a stop, a D-Bus property read) or runs start to end.

The client speaks the wire format itself (no mmd import: the container's python3 runs it) and
prints one line per reply, so the test sees each step as it happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.container import SystemdContainer

CLIENT_PATH = "/var/tmp/mmd-mta-client.py"

# Arguments: SOCKET, then steps: "connect" (a CONNECT command), "hold" (print "in-session" and
# wait for a line on stdin). Negotiation comes first and QUIT last.
CLIENT = r"""
import socket, struct, sys
def packet(command, data=b""):
    return struct.pack(">I", len(data) + 1) + command + data
def receive(sock):
    def exactly(size):
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError("closed by the milter")
            data += chunk
        return data
    (size,) = struct.unpack(">I", exactly(4))
    body = exactly(size)
    return body[:1].decode()
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(60)
sock.connect(sys.argv[1])
sock.sendall(packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
print("negotiate", receive(sock), flush=True)
for step in sys.argv[2:]:
    if step == "connect":
        sock.sendall(packet(b"C", b"mx.example.net\0" + b"4" + struct.pack(">H", 50443)
                            + b"192.168.123.123\0"))
        print("connect", receive(sock), flush=True)
    elif step == "hold":
        print("in-session", flush=True)
        sys.stdin.readline()
sock.sendall(packet(b"Q"))
sock.close()
print("quit", flush=True)
"""


def mta_session(c: SystemdContainer, socket: str, user: str = "postfix") -> list[str]:
    """Negotiate, connect, quit; the reply lines."""
    c.write_file(CLIENT_PATH, CLIENT)
    result = c.run(["python3", CLIENT_PATH, socket, "connect"], user=user, timeout=120)
    return result.stdout.splitlines()


@contextmanager
def held_session(c: SystemdContainer, socket: str, connect: bool = True,
                 user: str = "postfix") -> Iterator[None]:
    """A session open (negotiated, and connected unless ``connect`` is false) for the body of
    the ``with``; then it quits, and the client must see its QUIT through and exit 0."""
    c.write_file(CLIENT_PATH, CLIENT)
    steps = ["connect", "hold"] if connect else ["hold"]
    client = c.popen(["python3", CLIENT_PATH, socket, *steps], user=user)
    assert client.stdout is not None and client.stdin is not None
    try:
        assert client.stdout.readline().strip() == "negotiate O"
        if connect:
            assert client.stdout.readline().startswith("connect ")
        assert client.stdout.readline().strip() == "in-session"
        yield
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "quit"
        assert client.wait(timeout=30) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
