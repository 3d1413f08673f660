"""Turn the many ways milters write a socket into one connection spec.

Milters, unit files and init scripts spell sockets differently (a bare path,
``local:``, ``inet:PORT`` with no host, ``HOST:PORT``). The manager connects
to the child, so every form ends as ``unix:PATH``, ``inet:PORT@HOST`` or
``inet6:PORT@HOST``; a listening-side wildcard becomes loopback.
"""

from __future__ import annotations

import re

_WILDCARD_HOSTS = {"", "*", "0.0.0.0", "*v4", "any", "INADDR_ANY"}
_WILDCARD6_HOSTS = {"::", "[::]", "*v6"}


def normalize_spec(value: str) -> str | None:
    """A connection spec the manager can connect to, or None if ``value`` is not one."""
    text = value.strip().strip("\"'").strip()
    if not text:
        return None
    if text.startswith("/"):
        return f"unix:{text}"
    scheme, sep, rest = text.partition(":")
    if not sep:
        return None
    scheme = scheme.lower()
    if scheme in ("unix", "local"):
        return f"unix:{rest}" if rest.startswith("/") else None
    if scheme in ("inet", "inet6"):
        return _inet_spec(scheme, rest)
    return None


def _inet_spec(scheme: str, rest: str) -> str | None:
    port, _, host = rest.partition("@")
    if not port.isdigit():
        return None
    if scheme == "inet6":
        if host in _WILDCARD6_HOSTS or not host:
            host = "[::1]"
        return f"inet6:{port}@{host}"
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"inet:{port}@{host}"


_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\s]*):(?P<port>\d+)$")


def host_port_spec(value: str) -> str | None:
    """``HOST:PORT``, ``[ADDR6]:PORT``, ``*:PORT``, a bare port or a path (systemd, rspamd)."""
    text = value.strip().strip("\"'").strip()
    if text.startswith("/"):
        return f"unix:{text}"
    if text.isdigit():
        return f"inet:{text}@127.0.0.1"
    match = _HOST_PORT.match(text)
    if match is None:
        return None
    host, port = match["host"], match["port"]
    if host in _WILDCARD6_HOSTS:
        return f"inet6:{port}@[::1]"
    if host.startswith("["):
        return f"inet6:{port}@{host}"
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"inet:{port}@{host}"
