"""Where one milter listens, read from that milter's own files.

Sources, first hit wins:

1. the socket option on the unit's ExecStart (``-p``; ``-s`` for
   amavisd-milter), after expanding the unit's environment — the milters
   let their command line override their configuration file, so it comes
   first (the reference looked at ``-p`` last);
2. the milter's configuration file: the one ExecStart names (``-c``,
   ``-f``, ``-x``), else the packaged locations (Debian, then Red Hat);
   a file that says "not configured" (clamav-milter's ``Example`` line,
   rspamd's ``milter = no``) stops here;
3. variables from the unit's Environment=/EnvironmentFile= and the
   /etc/default or /etc/sysconfig file: the milter's own names, then
   SOCKET, SOCKET_ADDRESS, MILTER_SOCKET, CONNECTION_SPEC;
4. ListenStream= of a socket unit that activates it;
5. the packaged default for this distribution family.

milter-greylist's largest ``tarpit`` is taken from its configuration file
whatever source named the socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mmd.detection.catalog import MilterEntry, PackagedSocket
from mmd.detection.configs import ConfigFinding
from mmd.detection.files import RootFiles
from mmd.detection.shellvars import parse_assignments
from mmd.detection.specs import host_port_spec, normalize_spec
from mmd.detection.unitfile import UnitFile, expand_argv, option_value, unwrap_shell


@dataclass(frozen=True, slots=True)
class SocketFound:
    spec: str
    origin: str  # the file (and setting) it came from, for --show-config
    extra_timeout: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoSocket:
    reason: str
    notes: tuple[str, ...] = field(default=())


def distribution_family(files: RootFiles) -> str:
    if files.exists("/etc/debian_version"):
        return "debian"
    if files.exists("/etc/redhat-release") or files.exists("/etc/fedora-release"):
        return "redhat"
    return ""


@dataclass(slots=True)
class _Environment:
    values: dict[str, str]
    sources: dict[str, str]  # variable -> file (or unit) that set it last


def _environment(entry: MilterEntry, files: RootFiles, service: UnitFile | None) -> _Environment:
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    if service is not None:
        values.update(service.environment)
        sources.update({name: f"{service.files[0]} Environment" for name in values})
    paths = [path for path, _optional in service.environment_files] if service else []
    paths += [path for path in entry.environment_files if path not in paths]
    for path in paths:
        text = files.read(path)
        if text is None:
            continue
        before = dict(values)
        values = parse_assignments(text, values)
        sources.update({name: path for name, value in values.items() if before.get(name) != value})
    return _Environment(values, sources)


def discover_socket(
    entry: MilterEntry,
    files: RootFiles,
    service: UnitFile | None,
    socket_units: Sequence[UnitFile] = (),
) -> SocketFound | NoSocket:
    notes: list[str] = []
    environment = _environment(entry, files, service)
    argv = expand_argv(service.exec_start, environment.values) if service else []
    argv = unwrap_shell(argv, environment.values)
    exec_origin = f"{service.exec_start_file} ExecStart" if service else ""

    config = _read_config(entry, files, argv, notes)
    if isinstance(config, NoSocket):
        return config
    config_path, finding = config
    extra_timeout = finding.extra_timeout if finding else 0.0

    def found(spec: str, origin: str) -> SocketFound:
        return SocketFound(spec, origin, extra_timeout, tuple(notes))

    if entry.socket_option and argv:
        value = option_value(argv, entry.socket_option)
        if value:
            spec = normalize_spec(value)
            if spec:
                return found(spec, f"{exec_origin} {entry.socket_option}")
            notes.append(f"{exec_origin}: socket '{value}' not understood")

    if finding is not None and finding.spec:
        return found(finding.spec, config_path)
    if finding is not None and finding.raw:
        notes.append(f"{config_path}: socket '{finding.raw}' not understood")

    for name in entry.variables():
        value = environment.values.get(name, "")
        if value:
            spec = normalize_spec(value)
            if spec:
                return found(spec, f"{environment.sources.get(name, '?')} {name}")
            notes.append(f"{environment.sources.get(name, '?')}: {name}='{value}' not understood")

    for socket_unit in socket_units:
        for stream in socket_unit.listen_streams:
            spec = host_port_spec(stream)
            if spec:
                return found(spec, f"{socket_unit.files[0]} ListenStream")

    family = distribution_family(files)
    for packaged in entry.packaged_sockets:
        if _applies(packaged, family, files):
            notes.append(f"no socket configured; using the packaged default {packaged.spec}")
            return found(packaged.spec, "packaged default")

    return NoSocket("no socket found in its unit, configuration or environment files", tuple(notes))


def _read_config(
    entry: MilterEntry, files: RootFiles, argv: list[str], notes: list[str]
) -> tuple[str, ConfigFinding | None] | NoSocket:
    """The milter's configuration file and what it says; NoSocket if it says "not configured"."""
    if entry.parser is None:
        return "", None
    named = option_value(argv, entry.config_option) if entry.config_option and argv else None
    paths = (named,) if named else entry.config_files
    for path in paths:
        text = files.read(path)
        if text is None:
            if named:
                notes.append(f"ExecStart names {path}, which does not exist")
            continue
        finding = entry.parser(text)
        if finding.not_configured:
            return NoSocket(f"{path}: {finding.not_configured}", tuple(notes))
        if finding.spec or finding.raw or finding.extra_timeout:
            return path, finding
    return "", None


def _applies(packaged: PackagedSocket, family: str, files: RootFiles) -> bool:
    if packaged.family and family and packaged.family != family:
        return False
    return not packaged.requires or files.exists(packaged.requires)
