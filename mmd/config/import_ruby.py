"""``milter-manager import-config``: the classic manager's Ruby file to TOML.

The classic ``milter-manager.local.conf`` is Ruby, but nearly every real one
is a list of plain assignments: ``manager.KEY = VALUE`` at the top and
``define_milter("NAME") do |milter| milter.KEY = VALUE ... end`` blocks. This
module reads those forms line by line without running any Ruby, and reports
everything else as ``FILE:LINE: not converted: ...`` with the reason, so the
admin knows exactly what is left to do by hand.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from mmd.config.keys import MANAGER_KEYS, MILTER_KEYS
from mmd.config.show import format_key, format_value

# Classic settings that have no TOML key, and why.
_NO_EQUIVALENT: dict[str, str] = {
    "security": "mmd runs as the unprivileged user its systemd unit sets (User=, Group=)",
    "log": "mmd logs to the journal; filter with journalctl, set levels with LogLevelMax=",
    "controller": "mmd is controlled over D-Bus (milter-manager --help lists the commands)",
    "database": "statistics come from the journal, no database is needed",
    "package": "detection asks systemd, no platform setting is needed",
    "manager.remove_unix_socket_on_create": "systemd owns the listening socket",
    "manager.remove_unix_socket_on_close": "systemd owns the listening socket",
    "manager.daemon": "systemd runs mmd",
    "manager.pid_file": "systemd tracks the process",
    "manager.max_file_descriptors": "set LimitNOFILE= in the systemd unit",
    "manager.maintenance_interval": "not needed: mmd does no periodic memory maintenance",
    "manager.suspend_time_on_unacceptable": "not needed: waiting connections are queued",
    "manager.custom_configuration_directory": "put files in milter-manager.d/ instead",
    "manager.event_loop_backend": "mmd has one event loop",
    "manager.n_workers": "mmd runs as one process",
    "manager.packet_buffer_size": "not needed",
    "manager.connection_check_interval": "not supported",
    "manager.use_netstat_connection_checker": "not supported",
    "milter.command": "systemd starts the child milters",
    "milter.command_options": "systemd starts the child milters",
    "milter.user_name": "systemd starts the child milters",
}
_CONDITION_HINT = "applicable conditions are set in [conditions] (docs/configuration.md)"
_CONDITION_OBJECTS = ("remote_network", "stress", "restrict_accounts", "trusted_domain")
_CONDITION_CALLS = ("define_applicable_condition", "restrict_accounts_by_")
# The classic manager names the authentication conditions after the act, mmd after the client.
_CLASSIC_CONDITION_NAMES = {
    "Authentication": "Authenticated",
    "Unauthentication": "Unauthenticated",
}

_DEFINE_MILTER = re.compile(
    r"""^define_milter\s*\(?\s*(?P<q>["'])(?P<name>[^"']+)(?P=q)\s*\)?\s*"""
    r"""(?:do|\{)\s*\|\s*(?P<var>[a-z_][a-z0-9_]*)\s*\|\s*(?P<rest>.*)$"""
)
_ASSIGN = re.compile(r"^(?P<obj>[a-z_][a-z0-9_]*)\.(?P<key>[a-z_][a-z0-9_]*)\s*=\s*(?P<value>.+)$")
_ADD_CONDITION = re.compile(
    r"""^(?P<obj>[a-z_][a-z0-9_]*)\.add_applicable_condition\s*\(?\s*(?P<value>.+?)\s*\)?$"""
)
_OPENER = re.compile(
    r"^(?:if|unless|case|while|until|begin|def|class|module|for)\b"
    r"|\bdo\s*(?:\|[^|]*\|)?\s*$|\{\s*(?:\|[^|]*\|)?\s*$"
)
_IGNORED = re.compile(r"^load_default\s*$")


class _NotLiteral(ValueError):
    """The text is Ruby we do not evaluate."""


@dataclass
class _Milter:
    name: str
    line: int
    values: dict[str, tuple[object, int]] = field(default_factory=dict)


@dataclass
class _Import:
    filename: str
    manager: dict[str, tuple[object, int]] = field(default_factory=dict)
    milters: dict[str, _Milter] = field(default_factory=dict)
    # [conditions.SECTION] key -> (value, line); the schema is mmd.conditions.settings
    conditions: dict[str, dict[str, tuple[object, int]]] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)
    detected: Collection[str] | None = None

    def skip(self, line: int, text: str, why: str) -> None:
        self.report.append(f"{self.filename}:{line}: not converted: {text}; {why}")


def import_ruby_config(
    text: str, filename: str, detected: Collection[str] | None = None
) -> tuple[str, list[str]]:
    """Return the TOML text and the ``FILE:LINE: not converted: ...`` lines.

    ``detected``: the names of the milters detected on this host. A ``define_milter`` without
    ``connection_spec`` only changes a detected milter; for any other name the daemon would
    refuse the file, so the entry is written commented out, with the reason. None: do not
    check (every entry written as it is)."""
    state = _Import(filename, detected=detected)
    statements = list(_statements(text))
    index = 0
    milter: _Milter | None = None
    var = ""
    while index < len(statements):
        line, stmt = statements[index]
        index += 1
        if milter is not None and stmt in ("end", "}"):
            milter = None
            continue
        match = _DEFINE_MILTER.match(stmt) if milter is None else None
        if match and "#{" in match.group("name"):
            last = _skip_block(statements, index)
            state.skip(line, stmt, "string interpolation in the milter name")
            index = last
            continue
        if match:
            name = match.group("name")
            milter = state.milters.setdefault(name, _Milter(name, line))
            var = match.group("var")
            rest = match.group("rest").strip()
            closes = re.search(r"(?:^|;|\s)\s*(?:end|\})\s*$", rest)
            if closes:
                rest = rest[: closes.start()]
            for part in _split_semicolons(rest):
                _milter_statement(state, milter, var, line, part)
            if closes:
                milter = None
            continue
        if _OPENER.search(stmt):
            last = _skip_block(statements, index)
            span = f"lines {line}-{statements[last - 1][0]}" if last > index else f"line {line}"
            why = f"Ruby block, {span}"
            if stmt.startswith(_CONDITION_CALLS):
                why = f"{why}; {_CONDITION_HINT}"
            state.skip(line, stmt, why)
            index = last
            continue
        if milter is not None:
            _milter_statement(state, milter, var, line, stmt)
        else:
            _top_statement(state, line, stmt)
    if milter is not None:
        state.skip(milter.line, f'define_milter("{milter.name}")', "block has no end")
    return _render(state), state.report


def _skip_block(statements: list[tuple[int, str]], index: int) -> int:
    """Index after the ``end`` that closes a block opened just before ``index``."""
    depth = 1
    while index < len(statements) and depth:
        stmt = statements[index][1]
        if stmt in ("end", "}") or re.match(r"^end\b", stmt):
            depth -= 1
        elif _OPENER.search(stmt):
            depth += 1
        index += 1
    return index


_ADD_ADDRESS = re.compile(
    r"^remote_network\.add_(?P<which>local|remote)_address\s*\(?\s*(?P<value>.+?)\s*\)?$"
)
_STRESS = re.compile(r"^stress\.threshold_n_connections\s*=\s*(?P<value>.+)$")


def _condition_statement(state: _Import, line: int, stmt: str) -> bool:
    """Convert the classic condition settings that map onto [conditions]."""
    address = _ADD_ADDRESS.match(stmt)
    match = address or _STRESS.match(stmt)
    if match is None:
        return False
    try:
        value, rest = _literal(match.group("value"))
    except _NotLiteral as error:
        state.skip(line, stmt, str(error))
        return True
    if address:
        if rest or not isinstance(value, str):
            state.skip(line, stmt, "expected one address in quotes")
            return True
        key = "extra_local" if address.group("which") == "local" else "remote"
        section = state.conditions.setdefault("remote_network", {})
        old = section.get(key, ([], line))[0]
        addresses = list(old) if isinstance(old, list) else []
        section[key] = ([*addresses, value], line)
        return True
    if rest or not isinstance(value, int) or isinstance(value, bool) or value < 0:
        state.skip(line, stmt, "expected a whole number of connections")
        return True
    state.conditions.setdefault("stress", {})["threshold"] = (value, line)
    return True


def _top_statement(state: _Import, line: int, stmt: str) -> None:
    if _IGNORED.match(stmt) or _condition_statement(state, line, stmt):
        return
    if stmt.startswith(("load(", "load ", "load_if_exist")):
        state.skip(line, stmt, "convert that file too and put it in milter-manager.d/")
        return
    if stmt.startswith(_CONDITION_CALLS):
        state.skip(line, stmt, _CONDITION_HINT)
        return
    if stmt.startswith("remove_milter"):
        state.skip(line, stmt, "set enabled = false in that milter's [[milter]] table")
        return
    match = _ASSIGN.match(stmt)
    if not match:
        obj = stmt.split(".", 1)[0]
        why = _CONDITION_HINT if obj in _CONDITION_OBJECTS else "not a plain setting"
        state.skip(line, stmt, why)
        return
    obj, key, raw = match.group("obj", "key", "value")
    reason = _NO_EQUIVALENT.get(f"{obj}.{key}") or _NO_EQUIVALENT.get(obj)
    if reason:
        state.skip(line, stmt, reason)
        return
    if obj in _CONDITION_OBJECTS:
        state.skip(line, stmt, _CONDITION_HINT)
        return
    if obj != "manager" or key not in MANAGER_KEYS:
        state.skip(line, stmt, "unknown setting")
        return
    value = _checked_value(state, line, stmt, raw, key, manager=True)
    if value is not _NOTHING:
        state.manager[key] = (value, line)


def _milter_statement(state: _Import, milter: _Milter, var: str, line: int, stmt: str) -> None:
    if not stmt:
        return
    add = _ADD_CONDITION.match(stmt)
    if add and add.group("obj") == var:
        try:
            value, rest = _literal(add.group("value"))
        except _NotLiteral as error:
            state.skip(line, stmt, str(error))
            return
        if rest or not isinstance(value, str):
            state.skip(line, stmt, "expected one condition name in quotes")
            return
        value = _CLASSIC_CONDITION_NAMES.get(value, value)
        current = milter.values.get("applicable_conditions", ([], line))[0]
        names = list(current) if isinstance(current, list) else []
        if value not in names:
            names.append(value)
        milter.values["applicable_conditions"] = (names, line)
        return
    match = _ASSIGN.match(stmt)
    if not match or match.group("obj") != var:
        state.skip(line, stmt, f"not a plain setting of milter {milter.name!r}")
        return
    key, raw = match.group("key", "value")
    reason = _NO_EQUIVALENT.get(f"milter.{key}")
    if reason:
        state.skip(line, stmt, reason)
        return
    if key not in MILTER_KEYS or key == "name":
        state.skip(line, stmt, "unknown milter setting")
        return
    value = _checked_value(state, line, stmt, raw, key, manager=False)
    if value is not _NOTHING:
        milter.values[key] = (value, line)


class _Nothing:
    pass


_NOTHING = _Nothing()


def _checked_value(
    state: _Import, line: int, stmt: str, raw: str, key: str, *, manager: bool
) -> object:
    try:
        value, rest = _literal(raw)
    except _NotLiteral as error:
        state.skip(line, stmt, str(error))
        return _NOTHING
    if rest:
        state.skip(line, stmt, f"unexpected {rest!r} after the value")
        return _NOTHING
    if value is None:
        return _NOTHING  # nil: the default applies
    if key == "unix_socket_mode" and isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:04o}"
    spec = (MANAGER_KEYS if manager else MILTER_KEYS)[key]
    try:
        spec.convert(value)
    except ValueError as error:
        state.skip(line, stmt, f"{key}: {error}")
        return _NOTHING
    return value


# --- Ruby literals -----------------------------------------------------------

_NUMBER = re.compile(
    r"^[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO]?[0-7_]+|0[bB][01_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "s": " ", "e": "\x1b"}


def _literal(text: str) -> tuple[object, str]:
    """Parse one Ruby literal at the start of ``text``; return it and the rest."""
    text = text.strip()
    if not text:
        raise _NotLiteral("no value")
    head = text[0]
    if head == '"':
        return _double_quoted(text)
    if head == "'":
        return _single_quoted(text)
    if head == "[":
        return _array(text)
    for word, value in (("true", True), ("false", False), ("nil", None)):
        if re.match(rf"^{word}\b", text):
            return value, text[len(word):].strip()
    match = _NUMBER.match(text)
    if match:
        return _number(match.group(0)), text[match.end():].strip()
    raise _NotLiteral("not a literal value")


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    body = clean.lstrip("+-")
    if re.match(r"^\d+\.\d+|^\d+[eE]", body):
        return sign * float(body)
    lowered = body.lower()
    if lowered.startswith("0x"):
        return sign * int(lowered[2:], 16)
    if lowered.startswith("0b"):
        return sign * int(lowered[2:], 2)
    if lowered.startswith("0o"):
        return sign * int(lowered[2:], 8)
    if len(lowered) > 1 and lowered.startswith("0"):
        return sign * int(lowered[1:], 8)  # Ruby reads a leading 0 as octal
    return sign * int(lowered)


def _double_quoted(text: str) -> tuple[str, str]:
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), text[i + 1:].strip()
        if char == "#" and text.startswith("#{", i):
            raise _NotLiteral("string interpolation #{...}")
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    raise _NotLiteral("unterminated string")


def _single_quoted(text: str) -> tuple[str, str]:
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == "'":
            return "".join(out), text[i + 1:].strip()
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "\\'":
            out.append(text[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    raise _NotLiteral("unterminated string")


def _array(text: str) -> tuple[list[object], str]:
    items: list[object] = []
    rest = text[1:].strip()
    while True:
        if rest.startswith("]"):
            return items, rest[1:].strip()
        value, rest = _literal(rest)
        items.append(value)
        if rest.startswith(","):
            rest = rest[1:].strip()
        elif not rest.startswith("]"):
            raise _NotLiteral("not a literal array")


# --- splitting the text into statements ---------------------------------------


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """(position, character) of every character outside Ruby string literals."""
    quote = ""
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        else:
            yield i, char
        i += 1


def _strip_comment(line: str) -> str:
    """Drop a ``# comment``, leaving ``#`` inside strings alone."""
    for i, char in _unquoted(line):
        if char == "#":
            return line[:i].rstrip()
    return line.rstrip()


def _open_brackets(text: str) -> int:
    depth = 0
    for _, char in _unquoted(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
    return depth


def _split_semicolons(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for i, char in _unquoted(text):
        if char == ";":
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


# Only a setting or a call may continue on the next line; anything else (regular
# expressions in a condition, say) is taken a line at a time.
_JOINABLE = re.compile(r"^[a-z_][a-z0-9_.]*\s*(=|\()")


def _statements(text: str) -> list[tuple[int, str]]:
    """(first line number, statement) pairs; brackets left open join lines."""
    out: list[tuple[int, str]] = []
    pending = ""
    pending_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if raw.strip() == "__END__":
            break
        if not line and not pending:
            continue
        if pending:
            pending = f"{pending} {line}".strip()
        else:
            pending, pending_line = line, number
        if _JOINABLE.match(pending) and _open_brackets(pending) > 0:
            continue
        if _DEFINE_MILTER.match(pending):
            out.append((pending_line, pending))
        else:
            out.extend((pending_line, part) for part in _split_semicolons(pending))
        pending = ""
    if pending:
        out.append((pending_line, pending))
    return out


# --- writing TOML ------------------------------------------------------------------


def _render(state: _Import) -> str:
    out = [f"# Converted from {state.filename} by milter-manager import-config."]
    out.append("# Each value follows a comment naming the line it came from.")
    if state.manager:
        out.append("")
        out.append("[manager]")
        for key, (value, line) in state.manager.items():
            out.append(f"# {state.filename}:{line}")
            out.append(f"{format_key(key)} = {format_value(value)}")
    for milter in state.milters.values():
        entry = [f"# {state.filename}:{milter.line}", "[[milter]]",
                 f"name = {format_value(milter.name)}"]
        for key, (value, line) in milter.values.items():
            entry.append(f"# {state.filename}:{line}")
            entry.append(f"{format_key(key)} = {format_value(value)}")
        out.append("")
        if "connection_spec" in milter.values:
            out.extend(entry)
        elif state.detected is None or milter.name in state.detected:
            entry.insert(3, "# no connection_spec: this changes the detected milter of this name")
            out.extend(entry)
        else:
            out.append(f"# Commented out: {milter.name!r} is not detected on this host and has "
                       "no connection_spec,")
            out.append("# so milter-manager would refuse it. Install the milter, or add its")
            out.append("# connection_spec, then remove the '#-' below.")
            out.extend(f"#-{line}" for line in entry)
            state.report.append(
                f"{state.filename}:{milter.line}: commented out: define_milter("
                f"{milter.name!r}): not detected on this host and no connection_spec")
    for section, values in state.conditions.items():
        out.append("")
        out.append(f"[conditions.{format_key(section)}]")
        for key, (value, line) in values.items():
            out.append(f"# {state.filename}:{line}")
            out.append(f"{format_key(key)} = {format_value(value)}")
    if state.report:
        out.append("")
        out.append("# Not converted (do these by hand):")
        out.extend(f"#   {entry}" for entry in state.report)
    return "\n".join(out) + "\n"
