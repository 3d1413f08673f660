"""The configuration as plain data, with where each value came from.

Every other part reads these objects; only ``mmd.config`` builds them. Names
are the TOML keys (``[manager]`` and ``[[milter]]``), which other tools write.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    """A verdict name as configuration and logs spell it."""

    ACCEPT = "accept"
    TEMPORARY_FAILURE = "temporary-failure"
    REJECT = "reject"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value came from: ``default``, ``FILE:LINE``, ``detected: UNIT, FILE``, ..."""

    text: str

    def __str__(self) -> str:
        return self.text


DEFAULT = Origin("default")


@dataclass(slots=True)
class MilterConfig:
    """One child milter. Timeouts are seconds."""

    name: str
    connection_spec: str
    description: str = ""
    enabled: bool = True
    fallback_status: Status = Status.ACCEPT
    evaluation_mode: bool = False
    # false: no connection to this child is kept between sessions (for a child that does
    # not honour QUIT_NC the way libmilter does), whatever [manager] says
    reuse_connection: bool = True
    applicable_conditions: list[str] = field(default_factory=list)
    connection_timeout: float = 297.0
    writing_timeout: float = 7.0
    reading_timeout: float = 7.0
    end_of_message_timeout: float = 297.0
    # key -> where its value came from; keys missing here are defaults
    origins: dict[str, Origin] = field(default_factory=dict)

    def origin(self, key: str) -> Origin:
        return self.origins.get(key, DEFAULT)


DEFAULT_CONNECTION_SPEC = "unix:/run/milter-manager/milter-manager.sock"


@dataclass(slots=True)
class ManagerConfig:
    connection_spec: str = DEFAULT_CONNECTION_SPEC
    unix_socket_mode: int = 0o660
    unix_socket_group: str = ""
    fallback_status: Status = Status.ACCEPT
    fallback_status_at_disconnect: Status = Status.TEMPORARY_FAILURE
    max_connections: int = 0  # 0 = unlimited
    chunk_size: int = 65535
    max_packet_size: int = 2 * 1024 * 1024
    # body bytes kept in memory per message before spilling to a temporary file
    body_memory_limit: int = 1024 * 1024
    # how long SIGTERM waits for sessions in flight
    shutdown_timeout: float = 30.0
    # an MTA connection silent this long while mmd waits for its next command is closed
    # (libmilter's own default for its MTA connection)
    mta_idle_timeout: float = 7210.0
    # re-run detection when systemd reports a catalogued milter's unit changed (no reload)
    follow_systemd: bool = True
    # keep child connections across MTA connections (QUIT_NC, milter protocol 6): no
    # connect and no OPTNEG per child and session (mmd.engine.reuse, adapters/child_pool.py)
    reuse_child_connections: bool = True
    # idle kept connections per child, and how long one may stay idle before it is closed
    child_connections_kept: int = 16
    child_connection_idle_timeout: float = 60.0
    origins: dict[str, Origin] = field(default_factory=dict)

    def origin(self, key: str) -> Origin:
        return self.origins.get(key, DEFAULT)


@dataclass(slots=True)
class Configuration:
    """Everything one generation of sessions runs with."""

    manager: ManagerConfig = field(default_factory=ManagerConfig)
    milters: list[MilterConfig] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # files read, in order
    # the raw ``[conditions]`` table (merged over the files, later wins), parsed elsewhere
    conditions_table: dict[str, Any] = field(default_factory=dict)
    # (key, subkey, ...) inside [conditions] -> FILE:LINE; see condition_origin()
    conditions_origins: dict[tuple[str | int, ...], Origin] = field(default_factory=dict)
    # values given on the command line (key -> value), re-applied on reload
    overrides: dict[str, object] = field(default_factory=dict)

    def condition_origin(self, *path: str | int) -> Origin:
        """Where ``[conditions]`` key ``path`` was set (nearest located parent), for errors."""
        for end in range(len(path), -1, -1):
            found = self.conditions_origins.get(tuple(path[:end]))
            if found is not None:
                return found
        return DEFAULT

    def condition_origin_for(self, key_path: str) -> Origin:
        """``condition_origin`` for a dotted key path such as
        ``conditions.custom[1].name`` (the form condition errors use)."""
        parts: list[str | int] = []
        for piece in key_path.replace("]", "").replace("[", ".").split("."):
            if piece:
                parts.append(int(piece) if piece.isdigit() else piece)
        if parts[:1] == ["conditions"]:
            parts = parts[1:]
        return self.condition_origin(*parts)

    def enabled_milters(self) -> list[MilterConfig]:
        return [m for m in self.milters if m.enabled]
