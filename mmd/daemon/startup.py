"""What start decides beyond a reload: the refused start, and the settings fixed at start.

A configuration a reload would refuse must not serve mail at start either (a typo would
otherwise run with defaults, "milters: none", and accept mail unfiltered). mmd then still
starts and listens, so the MTA gets an answer rather than its ``milter_default_action``, but
with no child and ``temporary-failure`` for every session, until a reload succeeds.

The listening socket is opened once: a reload cannot move it or change its mode or group.
A reload that asks for that keeps the value in force, says so with a warning naming the
key, and ``ShowConfig`` shows the value in force with where the new one was asked for.
"""

from __future__ import annotations

from mmd.config.loader import ConfigError, apply_overrides
from mmd.config.model import Configuration, ManagerConfig, Origin, Status

LISTENING_KEYS = ("connection_spec", "unix_socket_mode", "unix_socket_group")
"""``[manager]`` keys used only when the socket is opened (start)."""

REFUSED = Origin("configuration refused at start: every session gets temporary-failure")


def refused_configuration(
    error: BaseException, overrides: dict[str, object]
) -> Configuration:
    """No child, ``temporary-failure`` for every session, listening where the files say.

    Only the listening keys are taken from what loaded (a bad value there was already left
    at its default), so the MTA finds the socket it is configured for.
    """
    loaded = getattr(error, "configuration", None)
    config = Configuration()
    if isinstance(loaded, Configuration):
        config.files = list(loaded.files)
        for key in LISTENING_KEYS:
            setattr(config.manager, key, getattr(loaded.manager, key))
            if key in loaded.manager.origins:
                config.manager.origins[key] = loaded.manager.origins[key]
    try:
        config = apply_overrides(config, overrides)
    except ConfigError as bad:
        if bad.configuration is not None:
            config = bad.configuration
    config.manager.fallback_status = Status.TEMPORARY_FAILURE
    config.manager.origins["fallback_status"] = REFUSED
    return config


def keep_listening_settings(
    at_start: ManagerConfig, new: Configuration, socket_activated: bool
) -> list[str]:
    """Put the listening values of ``at_start`` back into ``new``; a warning per changed key."""
    warnings: list[str] = []
    for key in LISTENING_KEYS:
        old_value = getattr(at_start, key)
        asked = getattr(new.manager, key)
        if asked == old_value:
            continue
        asked_where = new.manager.origin(key)
        shown = f"{asked:04o}" if key == "unix_socket_mode" else repr(asked)
        if socket_activated:
            why = "systemd passes the listening socket; change milter-manager.socket instead"
        else:
            why = "the socket is opened at start; restart milter-manager to apply it"
        warnings.append(f"{asked_where}: {key}: {shown} not applied by a reload ({why})")
        setattr(new.manager, key, old_value)
        new.manager.origins[key] = Origin(
            f"{at_start.origin(key)}; in force since start "
            f"({asked_where} asks for {shown}: not applied by a reload)"
        )
    return warnings
