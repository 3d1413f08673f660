"""Milters as detection reports them, for tests that feed the configuration loader, the
daemon or the D-Bus adapter without running detection."""

from __future__ import annotations

from typing import Any

from mmd.detection.model import DetectedMilter


def detected_milter(name: str, connection_spec: str, config_file: str = "",
                    enabled: bool = True, **facts: Any) -> DetectedMilter:
    """Found through ``NAME.service`` (and its configuration file, named in the origin)."""
    unit = f"{name}.service"
    origin = f"detected: {unit}, {config_file}" if config_file else f"detected: {unit}"
    return DetectedMilter(name=name, connection_spec=connection_spec, enabled=enabled,
                          unit=unit, origin=origin, **facts)


OPENDKIM = detected_milter("opendkim", "local:/run/opendkim/opendkim.sock", "/etc/opendkim.conf")
