"""What detection hands to the configuration merge."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DetectedMilter:
    """One installed milter as found on this host.

    ``origin`` is the provenance comment ``--show-config`` prints, e.g.
    ``detected: opendkim.service, /etc/opendkim.conf``. ``extra_timeout`` is
    added to the reading and writing timeouts (milter-greylist's tarpit).
    """

    name: str
    connection_spec: str
    enabled: bool
    unit: str
    origin: str
    applicable_conditions: tuple[str, ...] = ()
    description: str = ""
    active_state: str = ""  # systemd ActiveState, "" when unknown
    unit_file_state: str = ""  # systemd UnitFileState, "" when unknown
    extra_timeout: float = 0.0
    notes: tuple[str, ...] = field(default=())  # warnings worth a log line
    # enabled, but its unit does not run now ("opendkim.service is failed"); "" when it does
    inactive: str = ""
