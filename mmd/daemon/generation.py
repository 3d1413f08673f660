"""Building a generation: detection, files, command line and runtime switches, checked whole.

Everything here blocks (it reads files and asks systemd), so the daemon runs it in an
executor, never on the event loop that carries mail. A generation is built complete or not
at all: any problem raises ``ConfigError`` or ``InvalidConfiguration`` and whatever serves
keeps serving. ``milter-manager --show-config`` runs the same check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mmd.adapters.server import Generation
from mmd.conditions.errors import ConditionConfigError
from mmd.conditions.registry import ConditionRegistry, needed_macros, settings_from_table
from mmd.config.loader import apply_overrides, load_configuration
from mmd.config.model import Configuration
from mmd.control import InvalidConfiguration
from mmd.daemon import live
from mmd.daemon.status_map import STATUS_VERDICTS
from mmd.detection import activity
from mmd.detection.model import DetectedMilter
from mmd.engine import ChildSettings, SessionSettings
from mmd.engine.stages import Stage
from mmd.journal_schema import Event, Field, extra
from mmd.protocol.constants import MacroStage

log = logging.getLogger("mmd.daemon")

_MACRO_STAGES = {
    Stage.CONNECT: MacroStage.CONNECT,
    Stage.HELO: MacroStage.HELO,
    Stage.MAIL: MacroStage.MAIL,
    Stage.RCPT: MacroStage.RCPT,
    Stage.DATA: MacroStage.DATA,
    Stage.END_OF_HEADERS: MacroStage.END_OF_HEADERS,
    Stage.END_OF_MESSAGE: MacroStage.END_OF_MESSAGE,
}

Detector = Callable[[], tuple[list[DetectedMilter], list[str]]]


@dataclass
class Options:
    """What the command line decides for the daemon's whole life."""

    config_dir: Path = Path("/etc/milter-manager")
    overrides: dict[str, object] = field(default_factory=dict)
    detector: Detector | None = None
    bus_address: str | None = None  # None: the system bus; "" disables D-Bus
    user: str = ""
    group: str = ""
    # the non-root default socket's folder: every folder from here down must be private
    private_socket_root: Path | None = None


@dataclass(frozen=True)
class Loaded:
    """One checked load: the configuration, what sessions run with, and which files it read.

    ``files`` (``live.fingerprint``) is taken before the files are read: a file edited during
    the load makes the next live update wait for a reload rather than apply the edit.
    """

    config: Configuration
    generation: Generation
    files: str


def load(options: Options, enabled_overrides: Mapping[str, bool]) -> Configuration:
    """Blocking: detection, then files, then command line, then runtime switches.

    Any problem in the files raises ``ConfigError`` (at start as at reload: a value
    skipped would run with its default, against the configuration).
    """
    detected: list[DetectedMilter] = []
    if options.detector is not None:
        detected, problems = options.detector()
        for problem in problems:
            log.warning("%s", problem, extra=extra(Event.DETECTION_ERROR, {Field.REASON: problem}))
    config = load_configuration(options.config_dir, detected)
    activity.take_out_inactive(config, detected)
    config = apply_overrides(config, options.overrides)
    for milter in config.milters:
        if milter.name in enabled_overrides:
            milter.enabled = enabled_overrides[milter.name]
    return config


def load_checked(
    options: Options, enabled_overrides: Mapping[str, bool], number: int
) -> tuple[Configuration, Generation]:
    """Blocking: ``load`` and ``build_generation``, the whole check of start, reload and
    ``--show-config``; raises ConfigError or InvalidConfiguration."""
    config = load(options, enabled_overrides)
    return config, build_generation(config, number)


def load_generation(
    options: Options, enabled_overrides: Mapping[str, bool], number: int
) -> Loaded:
    """Blocking: ``load_checked`` and the fingerprint of the files, for start and reload."""
    files = live.fingerprint(options.config_dir)
    config, generation = load_checked(options, enabled_overrides, number)
    return Loaded(config, generation, files)


def build_generation(config: Configuration, number: int) -> Generation:
    """Turn configuration into what sessions run with; raises InvalidConfiguration.

    Blocking when a condition reads its list files (trusted domains, accounts) or Postfix's.
    """
    base = Path(config.files[0]).parent if config.files else None
    try:
        registry = ConditionRegistry(
            settings_from_table(config.conditions_table, base_directory=base)
        )
    except ConditionConfigError as error:
        raise InvalidConfiguration(f"{_condition_origin(config, error)}: {error}") from error
    milters = tuple(config.enabled_milters())
    children = []
    for milter in milters:
        try:
            conditions = registry.build(milter.applicable_conditions)
        except (ConditionConfigError, OSError) as error:
            where = milter.origin("applicable_conditions")
            raise InvalidConfiguration(
                f"{where}: milter {milter.name}: applicable_conditions: {error}"
            ) from error
        children.append(
            ChildSettings(
                milter.name,
                fallback=STATUS_VERDICTS[milter.fallback_status],
                evaluation_mode=milter.evaluation_mode,
                reuse=milter.reuse_connection,
                conditions=tuple(conditions),
            )
        )
    manager = config.manager
    needed = needed_macros(c for child in children for c in child.conditions)
    settings = SessionSettings(
        fallback=STATUS_VERDICTS[manager.fallback_status],
        fallback_at_disconnect=STATUS_VERDICTS[manager.fallback_status_at_disconnect],
        chunk_size=manager.chunk_size,
        needed_macros={
            _MACRO_STAGES[stage]: names for stage, names in needed.items() if stage in _MACRO_STAGES
        },
    )
    return Generation(manager, milters, tuple(children), settings, number)


def _condition_origin(config: Configuration, error: ConditionConfigError) -> str:
    key_path = getattr(error, "key_path", "conditions")
    return str(config.condition_origin_for(str(key_path)))


def one_line(error: BaseException) -> str:
    """An error's text on one line, for the journal and STATUS=."""
    return "; ".join(str(error).splitlines())
