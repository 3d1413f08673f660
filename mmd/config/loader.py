"""Read milter-manager.toml and its drop-ins, merged over what detection found.

Order of precedence, lowest first: built-in defaults, detected milters,
``milter-manager.toml``, ``milter-manager.d/*.toml`` in lexical order, then
the command line (``apply_overrides``). Every value remembers where it came
from so ``--show-config`` and error messages can say so.

Errors never stop at the first one: every problem of every file is collected
into one ConfigError. Any problem refuses the whole configuration (a value
skipped would run with its default); the ConfigError still carries what was
valid, from which a daemon refused at start takes only where to listen.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmd.config.connection_spec import parse_connection_spec
from mmd.config.keys import MANAGER_KEYS, MILTER_KEYS, Key, from_text
from mmd.config.model import Configuration, MilterConfig, Origin
from mmd.config.toml_lines import line_of, locate_lines
from mmd.detection.model import DetectedMilter

MAIN_FILE = "milter-manager.toml"
DROP_IN_DIR = "milter-manager.d"
COMMAND_LINE = Origin("command line")
TABLES = ("manager", "milter", "conditions")


class ConfigError(ValueError):
    """One or more problems, each ``FILE:LINE: key: what is wrong``.

    ``configuration`` is what loaded without the bad values; a daemon refused
    at start takes from it only where to listen.
    """

    def __init__(self, problems: Sequence[str], configuration: Configuration | None = None):
        self.problems = list(problems)
        self.configuration = configuration
        super().__init__("\n".join(self.problems))


def config_files(config_dir: Path, problems: list[str]) -> list[Path]:
    """The files read, in the order they apply; what cannot be read goes to ``problems``.

    Only a main file or drop-in folder that does not exist at all means "nothing to read".
    A folder where the main file should be, a symbolic link to nothing, or a drop-in folder the
    daemon's user may not list are problems: skipping them would drop settings silently.
    Hidden names (an editor's ``.#50-local.toml`` lock link) are not drop-ins.
    """
    try:
        os.stat(os.path.join(config_dir, "."))  # needs the right to enter the folder
    except FileNotFoundError:
        _exists_as(config_dir, True, problems)  # a symbolic link to nothing is a problem
        return []
    except OSError as error:
        # e.g. a folder the daemon's user may not enter: a problem to report, not a crash
        problems.append(f"{config_dir}: cannot read: {error.strerror or error}")
        return []
    files: list[Path] = []
    main = config_dir / MAIN_FILE
    if _exists_as(main, False, problems):
        files.append(main)
    drop_ins = config_dir / DROP_IN_DIR
    if _exists_as(drop_ins, True, problems):
        try:
            with os.scandir(drop_ins) as entries:
                names = sorted(e.name for e in entries
                               if e.name.endswith(".toml") and not e.name.startswith("."))
        except OSError as error:
            problems.append(f"{drop_ins}: cannot read: {error.strerror or error}")
            names = []
        files.extend(path for path in (drop_ins / name for name in names)
                     if _exists_as(path, False, problems))
    return files


def _exists_as(path: Path, folder: bool, problems: list[str]) -> bool:
    """True when ``path`` is there as a file (or a folder), symbolic links followed."""
    wanted = "a folder" if folder else "a file"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            return False  # really absent
        problems.append(f"{path}: a symbolic link to {target!r}, which does not exist; "
                        f"expected {wanted}")
        return False
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror or error}")
        return False
    if (stat.S_ISDIR if folder else stat.S_ISREG)(mode):
        return True
    found = "a folder" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else "not a file"
    problems.append(f"{path}: {found}, expected {wanted}")
    return False


def load_configuration(
    config_dir: Path, detected: Sequence[DetectedMilter] = ()
) -> Configuration:
    """Build the effective configuration; raise ConfigError listing every problem."""
    config = Configuration()
    for found in detected:
        config.milters.append(_from_detected(found))
    problems: list[str] = []
    for path in config_files(config_dir, problems):
        config.files.append(str(path))
        _FileReader(config, path, problems).read()
    _check_detected_specs(config, problems)
    if problems:
        raise ConfigError(problems, config)
    return config


def _from_detected(found: DetectedMilter) -> MilterConfig:
    origin = Origin(found.origin)
    milter = MilterConfig(name=found.name, connection_spec=found.connection_spec,
                          enabled=found.enabled)
    milter.origins.update(name=origin, connection_spec=origin, enabled=origin)
    if found.description:
        milter.description = found.description
        milter.origins["description"] = origin
    if found.applicable_conditions:
        milter.applicable_conditions = list(found.applicable_conditions)
        milter.origins["applicable_conditions"] = origin
    if found.extra_timeout > 0:
        milter.reading_timeout += found.extra_timeout
        milter.writing_timeout += found.extra_timeout
        milter.origins["reading_timeout"] = origin
        milter.origins["writing_timeout"] = origin
    return milter


def _check_detected_specs(config: Configuration, problems: list[str]) -> None:
    """A detected spec no file replaced is checked last; a bad one disables that child."""
    for milter in config.milters:
        origin = milter.origin("connection_spec")
        if not origin.text.startswith("detected"):
            continue
        try:
            parse_connection_spec(milter.connection_spec)
        except ValueError as error:
            problems.append(f"{origin}: connection_spec: {error} (milter {milter.name!r} "
                            "disabled; set connection_spec for it in a [[milter]] table)")
            milter.enabled = False


def _unknown(kind: str, key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind}{hint}"


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$|\s*\(at end of document\)$")


class _FileReader:
    """Apply one file to ``config``; problems go to the shared list."""

    def __init__(self, config: Configuration, path: Path, problems: list[str]):
        self.config = config
        self.path = path
        self.problems = problems
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.line_count = 0

    def where(self, *path: str | int) -> str:
        return f"{self.path}:{line_of(self.lines, path) or 1}"

    def problem(self, path: tuple[str | int, ...], key: str, what: str) -> None:
        self.problems.append(f"{self.where(*path)}: {key}: {what}")

    def read(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self.problems.append(f"{self.path}:1: (file): cannot read: {error}")
            return
        self.line_count = text.count("\n") + 1
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            message = str(error)
            match = _TOML_POSITION.search(message)
            line = self.line_count
            if match and match.group(1):
                line = int(match.group(1))
            if match:
                message = message[: match.start()]
            self.problems.append(f"{self.path}:{line}: (syntax): {message}")
            return
        self.lines = locate_lines(text)
        for table, value in data.items():
            if table == "manager":
                self.read_manager(value)
            elif table == "milter":
                self.read_milters(value)
            elif table == "conditions":
                self.read_conditions(value)
            else:
                self.problem((table,), table,
                             _unknown("table (expected [manager], [[milter]] or [conditions])",
                                      table, TABLES))

    def read_manager(self, table: object) -> None:
        if not isinstance(table, dict):
            self.problem(("manager",), "manager", "must be a table: write [manager]")
            return
        manager = self.config.manager
        for key, value in table.items():
            spec = MANAGER_KEYS.get(key)
            if spec is None:
                self.problem(("manager", key), key, _unknown("key in [manager]", key,
                                                             list(MANAGER_KEYS)))
                continue
            converted = self.convert(("manager", key), spec, value)
            if converted is not _BAD:
                setattr(manager, key, converted)
                manager.origins[key] = Origin(self.where("manager", key))

    def convert(self, path: tuple[str | int, ...], key: Key, value: object) -> object:
        try:
            return key.convert(value)
        except ValueError as error:
            self.problem(path, key.name, str(error))
            return _BAD

    def read_milters(self, tables: object) -> None:
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            self.problem(("milter",), "milter",
                         "must be an array of tables: write [[milter]] for each child")
            return
        seen: dict[str, int] = {}
        for index, table in enumerate(tables):
            self.read_milter(index, table, seen)

    def read_milter(self, index: int, table: dict[str, Any], seen: dict[str, int]) -> None:
        here: tuple[str | int, ...] = ("milter", index)
        unknown = [k for k in table if k not in MILTER_KEYS]
        for key in unknown:
            self.problem((*here, key), key, _unknown("key in [[milter]]", key, list(MILTER_KEYS)))
        if "name" not in table:
            self.problem(here, "name", "missing: every [[milter]] needs a name")
            return
        name = self.convert((*here, "name"), MILTER_KEYS["name"], table["name"])
        if not isinstance(name, str):
            return
        if name in seen:
            self.problem((*here, "name"), "name",
                         f"milter {name!r} is defined twice in this file "
                         f"(first at line {seen[name]})")
            return
        seen[name] = line_of(self.lines, (*here, "name"))
        milter = next((m for m in self.config.milters if m.name == name), None)
        if milter is None:
            if "connection_spec" not in table:
                self.problem((*here, "name"), "connection_spec",
                             f"missing: milter {name!r} is not a detected milter, "
                             "so it needs a connection_spec")
                return
            spec = self.convert((*here, "connection_spec"), MILTER_KEYS["connection_spec"],
                                table["connection_spec"])
            if not isinstance(spec, str):
                return
            milter = MilterConfig(name=name, connection_spec=spec)
            self.config.milters.append(milter)
            milter.origins["name"] = Origin(self.where(*here, "name"))
        for key, value in table.items():
            if key in unknown or key == "name":
                continue
            converted = self.convert((*here, key), MILTER_KEYS[key], value)
            if converted is not _BAD:
                setattr(milter, key, converted)
                milter.origins[key] = Origin(self.where(*here, key))

    def read_conditions(self, table: object) -> None:
        if not isinstance(table, dict):
            self.problem(("conditions",), "conditions", "must be a table: write [conditions]")
            return
        _merge(self.config.conditions_table, table)
        for path, line in self.lines.items():
            if path and path[0] == "conditions":
                self.config.conditions_origins[path[1:]] = Origin(f"{self.path}:{line}")


class _Bad:
    """Marks a value that failed its check (None can be a real value)."""


_BAD = _Bad()


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Later files win key by key; sub-tables merge, everything else is replaced."""
    for key, value in new.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value)
        else:
            into[key] = copy.deepcopy(value)


def apply_overrides(config: Configuration, overrides: Mapping[str, object]) -> Configuration:
    """Return a copy of ``config`` with command-line values on top.

    Keys are ``[manager]`` keys (``connection_spec`` or ``manager.connection_spec``)
    or ``milter.NAME.KEY`` for one child. Values may be typed or text as typed
    on the command line. The keys are remembered in ``overrides`` so a reload
    can apply them again.
    """
    result = copy.deepcopy(config)
    problems: list[str] = []
    for raw_key, value in overrides.items():
        try:
            _apply_override(result, raw_key, value)
        except ValueError as error:
            problems.append(f"{COMMAND_LINE}: {raw_key}: {error}")
        else:
            result.overrides[raw_key] = value
    if problems:
        raise ConfigError(problems, result)
    return result


def _apply_override(config: Configuration, raw_key: str, value: object) -> None:
    key = raw_key.removeprefix("manager.")
    if key.startswith("milter."):
        name, dot, milter_key = key.removeprefix("milter.").rpartition(".")
        if not dot or not name:
            raise ValueError("expected milter.NAME.KEY")
        spec = MILTER_KEYS.get(milter_key)
        if spec is None or milter_key == "name":
            raise ValueError(_unknown("milter key", milter_key, list(MILTER_KEYS)))
        milter = next((m for m in config.milters if m.name == name), None)
        if milter is None:
            raise ValueError(f"no milter named {name!r}")
        setattr(milter, milter_key, _convert_override(spec, value))
        milter.origins[milter_key] = COMMAND_LINE
        return
    spec = MANAGER_KEYS.get(key)
    if spec is None:
        raise ValueError(_unknown("key", key, list(MANAGER_KEYS)))
    setattr(config.manager, key, _convert_override(spec, value))
    config.manager.origins[key] = COMMAND_LINE


def _convert_override(key: Key, value: object) -> object:
    if isinstance(value, str) and key.kind not in ("str", "spec", "status", "mode"):
        value = from_text(key, value)
    return key.convert(value)
