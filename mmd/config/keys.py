"""The keys of ``[manager]`` and ``[[milter]]``: type, check and meaning.

One table drives the loader, the command-line overrides, ``--show-config``
and the Ruby import, so a key is spelled, checked and documented once.
A converter takes a value as ``tomllib`` gives it and returns the value the
model stores, or raises ValueError saying what is wrong with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mmd.config import checks
from mmd.config.connection_spec import parse_connection_spec
from mmd.config.model import Status

Kind = Literal["str", "bool", "int", "float", "status", "mode", "spec", "names"]

STATUS_NAMES = ", ".join(s.value for s in Status)


def to_str(value: object) -> str:
    return checks.string(value)


def to_name(value: object) -> str:
    text = to_str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def to_bool(value: object) -> bool:
    return checks.boolean(value)


def to_status(value: object) -> Status:
    text = to_str(value)
    try:
        return Status(text)
    except ValueError:
        raise ValueError(f"unknown status {text!r} (expected {STATUS_NAMES})") from None


def to_spec(value: object) -> str:
    text = to_str(value)
    parse_connection_spec(text)
    return text.strip()


_OCTAL = re.compile(r"^(0o|0)?([0-7]{1,4})$")


def to_mode(value: object) -> int:
    """Octal text ("0660") or an integer (0o660); a decimal 660 is almost surely a slip."""
    if isinstance(value, str):
        m = _OCTAL.match(value.strip())
        if not m:
            raise ValueError(f"{value!r} is not an octal mode like \"0660\"")
        mode = int(m.group(2), 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
        if not 0 <= mode <= 0o777:
            raise ValueError(
                f"{mode} is not a permission mode; write it as a string like \"0660\" "
                "or as an octal integer like 0o660"
            )
    else:
        raise ValueError(f"expected an octal string like \"0660\", got {checks.type_name(value)}")
    if mode > 0o7777:
        raise ValueError(f"{value!r} is not a permission mode")
    return mode


def to_int(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if not checks.is_integer(value):
            raise checks.wrong("an integer", value)
        if value < minimum:
            raise ValueError(f"{value} is less than {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{value} is more than {maximum}")
        return value

    return convert


def to_seconds(value: object) -> float:
    """A time-out: more than zero seconds.

    Zero would not mean "no time-out": every wait would end at once, every child would fail
    with its fallback, and with the default ``accept`` mail would pass unfiltered.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise checks.wrong("a number of seconds", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number of seconds")
    if value < 0:
        raise ValueError(f"{value} is negative; a time-out must be more than 0 seconds")
    if value == 0:
        raise ValueError("0 is not a time-out; it must be more than 0 seconds")
    return float(value)


def to_names(value: object) -> list[str]:
    if not isinstance(value, list):  # TOML's arrays; checks.array would take a tuple too
        raise checks.wrong("an array of strings", value)
    names: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"expected an array of non-empty strings, found {item!r}")
        names.append(item)
    return names


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    kind: Kind
    convert: Callable[[object], object]
    meaning: str


def _table(*keys: Key) -> dict[str, Key]:
    return {key.name: key for key in keys}


def _timeouts(**meanings: str) -> list[Key]:
    """A child's time-outs, ``WHAT_timeout``: seconds, more than 0."""
    return [Key(f"{what}_timeout", "float", to_seconds, text) for what, text in meanings.items()]


MANAGER_KEYS = _table(
    Key("connection_spec", "spec", to_spec,
        "Socket the MTA side connects to when not socket-activated."),
    Key("unix_socket_mode", "mode", to_mode, "Permissions of a Unix socket mmd creates itself."),
    Key("unix_socket_group", "str", to_str, "Group given to a Unix socket mmd creates itself."),
    Key("fallback_status", "status", to_status, "Verdict when no child is left to ask."),
    Key("fallback_status_at_disconnect", "status", to_status,
        "Verdict when the SMTP client went away mid-session."),
    Key("max_connections", "int", to_int(0),
        "Sessions from the MTA side served at once (0: unlimited)."),
    Key("chunk_size", "int", to_int(1, 65535),
        "Largest body chunk in bytes sent to a child in one packet."),
    Key("max_packet_size", "int", to_int(1), "Largest milter packet in bytes accepted."),
    Key("body_memory_limit", "int", to_int(0),
        "Body bytes kept in memory per message before a temporary file."),
    Key("shutdown_timeout", "float", to_seconds, "Seconds SIGTERM waits for sessions in flight."),
    Key("mta_idle_timeout", "float", to_seconds,
        "Seconds an MTA connection may stay silent while mmd waits for it."),
    Key("follow_systemd", "bool", to_bool,
        "Apply milters enabled, disabled, started or stopped in systemd without a reload."),
    Key("reuse_child_connections", "bool", to_bool,
        "Keep child connections for later sessions (QUIT_NC) instead of connecting anew."),
    Key("child_connections_kept", "int", to_int(0),
        "Idle child connections kept per child for reuse (0: none)."),
    Key("child_connection_idle_timeout", "float", to_seconds,
        "Seconds a kept child connection may stay idle before mmd closes it."),
)

MILTER_KEYS = _table(
    Key("name", "str", to_name, "The child's name; a detected milter's name changes it."),
    Key("connection_spec", "spec", to_spec, "Socket of the child."),
    Key("description", "str", to_str, "Free text."),
    Key("enabled", "bool", to_bool, "false keeps the child out of every session."),
    Key("fallback_status", "status", to_status, "This child's verdict when it fails."),
    Key("evaluation_mode", "bool", to_bool,
        "Ask the child but ignore its rejecting verdicts and its changes."),
    Key("reuse_connection", "bool", to_bool,
        "false: a new connection to this child for every session (no QUIT_NC)."),
    Key("applicable_conditions", "names", to_names,
        "Conditions that decide per session whether the child is applied."),
    *_timeouts(
        connection="Seconds to connect to the child.",
        writing="Seconds for a write to the child.",
        reading="Seconds to wait for a reply from the child.",
        end_of_message="Seconds to wait for the child's reply at end-of-message.",
    ),
)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def from_text(key: Key, text: str) -> object:
    """Turn command-line text into the type the key's converter expects."""
    if key.kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if key.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if key.kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if key.kind == "names":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text
