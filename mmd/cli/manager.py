"""``milter-manager``: run the daemon, show the effective configuration, import old configs.

Options follow the classic milter manager so install guides keep working
(``--no-daemon``, ``-u``/``-g``, ``--show-config``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mmd import __version__
from mmd.cli.classic_options import add_classic_options, apply_classic_options
from mmd.config.model import DEFAULT_CONNECTION_SPEC
from mmd.detection.model import DetectedMilter

DEFAULT_CONFIG_DIR = Path("/etc/milter-manager")
NON_ROOT_SPEC_HELP = "unix:$XDG_RUNTIME_DIR/milter-manager/milter-manager.sock"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="milter-manager",
        description=(
            "Milter manager for Postfix: one milter socket that fans every SMTP session out to "
            "the child milters installed on this host and merges their verdicts and changes. "
            "Runs in the foreground (systemd starts it through milter-manager.socket). "
            "Other commands: 'milter-manager import-config FILE' converts a classic "
            "milter-manager.local.conf to TOML; 'milter-manager report' draws statistics graphs "
            "from the journal (see its --help and docs/report.md); 'milter-manager reload' reloads "
            "the running daemon and waits for the outcome (see its --help)."
        ),
        epilog=(
            f"Without -s, it listens on {DEFAULT_CONNECTION_SPEC} (as root) or on "
            f"{NON_ROOT_SPEC_HELP} (as another user; without XDG_RUNTIME_DIR under "
            "/tmp/milter-manager-UID, which must be a folder of that user writable by nobody "
            "else), unless systemd passes a socket (LISTEN_FDS). The socket file it creates is "
            "removed at exit. Signals: SIGHUP reloads, SIGTERM stops after sessions in flight "
            "end. Configuration: DIR/milter-manager.toml and DIR/milter-manager.d/*.toml; a "
            "configuration with any problem is refused: at start every session then gets "
            "temporary failure until a reload succeeds."
        ),
    )
    parser.add_argument(
        "-s",
        "--connection-spec",
        metavar="SPEC",
        help="where to listen: unix:PATH, inet:PORT@HOST, inet6:PORT@HOST",
    )
    parser.add_argument(
        "-c",
        "--config-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help=f"configuration folder (default {DEFAULT_CONFIG_DIR})",
    )
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the effective configuration as TOML, each value with where it "
        "came from, and exit; exit status 1 (problems on stderr) when the daemon would "
        "refuse it",
    )
    parser.add_argument(
        "--no-detection",
        action="store_true",
        help="do not ask systemd which milters are installed; use only the configuration files",
    )
    parser.add_argument(
        "--detection-root",
        metavar="DIR",
        type=Path,
        default=Path("/"),
        help="read milters' configuration files below DIR (default /)",
    )
    parser.add_argument(
        "--no-dbus", action="store_true", help="do not export the D-Bus control interface"
    )
    parser.add_argument(
        "-u",
        "--user-name",
        metavar="USER",
        default="",
        help="when started as root, switch to USER after opening the socket",
    )
    parser.add_argument(
        "-g",
        "--group-name",
        metavar="GROUP",
        default="",
        help="with -u, the primary group to switch to",
    )
    parser.add_argument("--verbose", action="store_true", help="log debug messages too")
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="accepted for the classic install guides; mmd always runs in the foreground",
    )
    parser.add_argument(
        "--version", action="version", version=f"milter-manager (mmd) {__version__}"
    )
    add_classic_options(parser)
    return parser


def default_connection_spec() -> str:
    if os.geteuid() == 0:
        return DEFAULT_CONNECTION_SPEC
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/milter-manager-{os.geteuid()}"
    return f"unix:{runtime}/milter-manager/milter-manager.sock"


def private_socket_root() -> Path:
    """The top folder of the non-root default socket that must be the user's alone.

    Under /tmp another local user could make /tmp/milter-manager-UID first and receive the
    mail: the daemon refuses it, and every folder below it, unless it is a real folder (no
    symbolic link) owned by this user and writable by nobody else (``mmd.adapters.unix_socket``).
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "milter-manager"
    return Path(f"/tmp/milter-manager-{os.geteuid()}")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["import-config"]:
        return import_config(args_list[1:])
    if args_list[:1] == ["reload"]:
        from mmd.cli.reload import main as reload_main

        return reload_main(args_list[1:])
    if args_list[:1] == ["report"]:
        from mmd.cli.report import main as report_main

        return report_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.connection_spec:
        from mmd.config.connection_spec import parse_connection_spec

        try:
            parse_connection_spec(args.connection_spec)
        except ValueError as error:
            parser.error(f"-s/--connection-spec: {error}")

    from mmd.adapters import event_loop
    from mmd.adapters.journal import setup_logging
    from mmd.daemon.generation import Options
    from mmd.daemon.service import Daemon

    setup_logging(args.verbose)
    overrides: dict[str, object] = {}
    if args.connection_spec:
        overrides["connection_spec"] = args.connection_spec
    apply_classic_options(args, overrides)
    options = Options(
        config_dir=args.config_dir,
        overrides=overrides,
        detector=None if args.no_detection else _detector(args.detection_root),
        bus_address="" if args.no_dbus else None,
        user=args.user_name,
        group=args.group_name,
    )
    if args.show_config:
        return show_config(options)
    if (
        "connection_spec" not in overrides
        and not socket_activated()
        and not _config_sets_spec(args.config_dir)
    ):
        overrides["connection_spec"] = default_connection_spec()
        options.overrides = overrides
        if os.geteuid() != 0:
            options.private_socket_root = private_socket_root()
    try:
        return event_loop.run(Daemon(options).run())
    except KeyboardInterrupt:
        return 0
    except OSError as error:
        logging.getLogger("mmd").error("cannot start: %s", error)
        return 1


def socket_activated() -> bool:
    """systemd passed the listening socket (milter-manager.socket).

    Then the non-root default path is never listened on; putting it in the configuration
    would only make ShowConfig and the status report a socket that does not exist.
    """
    from mmd.adapters.activation import ActivationError, parse_listen_environment

    try:
        return bool(parse_listen_environment(os.environ, os.getpid()))
    except ActivationError:
        return False  # the daemon reports it when it takes the sockets


def _detector(root: Path) -> Callable[[], tuple[list[DetectedMilter], list[str]]]:
    def run() -> tuple[list[DetectedMilter], list[str]]:
        from mmd.adapters.systemd_units import detect_installed_milters

        return detect_installed_milters(root)

    return run


def _config_sets_spec(config_dir: Path) -> bool:
    from mmd.config.loader import ConfigError, load_configuration

    try:
        config = load_configuration(config_dir)
    except ConfigError as error:  # refused: still listen where the files say (if valid)
        if error.configuration is None:
            return False
        config = error.configuration
    return str(config.manager.origin("connection_spec")) != "default"


def show_config(options: object) -> int:
    """Print the configuration a reload would install; exit 1 when a reload would refuse it."""
    from mmd.config.loader import ConfigError
    from mmd.config.show import render_show_config
    from mmd.control import InvalidConfiguration
    from mmd.daemon.generation import Options, load_checked

    assert isinstance(options, Options)
    try:
        config, _ = load_checked(options, {}, 0)
    except (ConfigError, InvalidConfiguration) as error:
        print(f"milter-manager: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(render_show_config(config))
    return 0


def import_config(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="milter-manager import-config",
        description="Convert a classic milter-manager.local.conf (Ruby) to TOML on stdout; "
        "what could not be converted is listed on stderr. A define_milter without "
        "connection_spec for a milter not detected on this host is written commented out "
        "(with the reason), so the output always loads.",
    )
    parser.add_argument("file", type=Path, help="the classic configuration file")
    parser.add_argument(
        "--no-detection", action="store_true",
        help="do not ask systemd which milters are installed: every define_milter without "
        "connection_spec is then written commented out",
    )
    parser.add_argument(
        "--detection-root", metavar="DIR", type=Path, default=Path("/"),
        help="read milters' configuration files below DIR (default /)",
    )
    args = parser.parse_args(list(argv))
    from mmd.config.import_ruby import import_ruby_config

    detected: list[str] = []
    if not args.no_detection:
        milters, _ = _detector(args.detection_root)()
        detected = [milter.name for milter in milters]

    try:
        text = args.file.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as error:
        print(f"milter-manager import-config: {error}", file=sys.stderr)
        return 1
    toml_text, problems = import_ruby_config(text, str(args.file), detected)
    sys.stdout.write(toml_text)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
