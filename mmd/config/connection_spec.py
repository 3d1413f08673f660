"""Socket addresses in the milter world's ``connection_spec`` notation.

The notation comes from libmilter and the classic manager: ``unix:/path`` (or
``local:/path``), ``inet:PORT``, ``inet:PORT@HOST``, ``inet:PORT@[ADDR]``,
``inet6:PORT``, ``inet6:PORT@HOST``, ``inet6:PORT@[ADDR]``. Parsing once, into
a small typed value, means the server and the child adapters never look at
the text again and every bad spec is refused at load time with a message that
says what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

InetFamily = Literal["inet", "inet6"]

_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")

SPEC_FORMS = (
    "unix:/PATH, local:/PATH, inet:PORT, inet:PORT@HOST, inet:PORT@[ADDRESS], "
    "inet6:PORT, inet6:PORT@HOST or inet6:PORT@[ADDRESS]"
)


@dataclass(frozen=True, slots=True)
class UnixSpec:
    """A Unix domain socket; ``path`` is absolute."""

    path: str

    def format(self) -> str:
        """The canonical spec text."""
        return format_connection_spec(self)

    def __str__(self) -> str:
        return format_connection_spec(self)


@dataclass(frozen=True, slots=True)
class InetSpec:
    """A TCP socket. ``host`` is ``""`` when the spec names no host (all interfaces
    when listening, loopback is the adapters' choice when connecting)."""

    host: str
    port: int
    family: InetFamily = "inet"

    def connect_host(self) -> str:
        """Where a client connects: the named host, else loopback of the family."""
        return self.host or ("::1" if self.family == "inet6" else "127.0.0.1")

    def format(self) -> str:
        """The canonical spec text."""
        return format_connection_spec(self)

    def __str__(self) -> str:
        return format_connection_spec(self)


ConnectionSpec = UnixSpec | InetSpec


class SpecError(ValueError):
    """A connection spec that cannot be parsed; the message names the problem."""


def parse_connection_spec(text: str) -> ConnectionSpec:
    """Parse ``text``; raise SpecError (a ValueError) naming the problem and the forms."""
    if not isinstance(text, str):
        raise SpecError(f"connection spec must be a string, not {type(text).__name__}")
    scheme, sep, rest = text.strip().partition(":")
    if not sep:
        raise SpecError(f"{text!r} has no 'TYPE:' prefix; expected {SPEC_FORMS}")
    scheme = scheme.lower()
    if scheme in ("unix", "local"):
        return _parse_unix(text, rest)
    if scheme in ("inet", "inet6"):
        return _parse_inet(text, rest, "inet" if scheme == "inet" else "inet6")
    raise SpecError(f"{text!r}: unknown socket type {scheme!r}; expected {SPEC_FORMS}")


def _parse_unix(text: str, path: str) -> UnixSpec:
    if not path:
        raise SpecError(f"{text!r}: the socket path is empty")
    if not path.startswith("/"):
        raise SpecError(f"{text!r}: the socket path must be absolute (start with '/')")
    if "\0" in path:
        raise SpecError(f"{text!r}: the socket path contains a NUL byte")
    return UnixSpec(path)


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not port_text.isascii():
        raise SpecError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise SpecError(f"{text!r}: port {port} is outside 1-65535")
    return port


def _parse_inet(text: str, rest: str, family: InetFamily) -> InetSpec:
    port_text, at, host = rest.partition("@")
    port = _parse_port(text, port_text)
    if not at:
        return InetSpec("", port, family)
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
            raise SpecError(f"{text!r}: address {host!r} must be written as [ADDRESS]")
        address = _parse_address(text, host[1:-1])
    elif not host:
        raise SpecError(f"{text!r}: the host after '@' is empty")
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if not _HOST_NAME.match(host):
                raise SpecError(
                    f"{text!r}: {host!r} is neither a host name nor an address"
                ) from None
            return InetSpec(host, port, family)
    if family == "inet" and address.version == 6:
        raise SpecError(f"{text!r}: {address} is an IPv6 address; use inet6:")
    if family == "inet6" and address.version == 4:
        raise SpecError(f"{text!r}: {address} is an IPv4 address; use inet:")
    return InetSpec(str(address), port, family)


def _parse_address(text: str, raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        raise SpecError(f"{text!r}: [{raw}] is not an IP address") from None


def format_connection_spec(spec: ConnectionSpec) -> str:
    """The canonical text; ``parse_connection_spec`` of it gives ``spec`` back."""
    if isinstance(spec, UnixSpec):
        return f"unix:{spec.path}"
    if not spec.host:
        return f"{spec.family}:{spec.port}"
    try:
        ipaddress.ip_address(spec.host)
    except ValueError:
        return f"{spec.family}:{spec.port}@{spec.host}"
    return f"{spec.family}:{spec.port}@[{spec.host}]"
