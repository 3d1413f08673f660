"""The classic milter-manager command line, accepted as it was written in old ``OPTION_ARGS``
lines, init scripts and unit overrides.

Options that mean something here become the same setting (``--socket-group-name`` is
``unix_socket_group``, ``--log-level`` the log level); options that systemd has taken over
(daemonizing, the PID file, the log file) and those of the classic event loop are accepted
and named in one warning that says what to use instead. The table in docs/systemd.md lists
every option.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import MutableMapping

# classic --log-level names (joined with "|" or ",") -> the Python level they let through
LOG_LEVELS = {
    "none": logging.CRITICAL + 10,
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "message": logging.INFO,
    "info": logging.INFO,
    "statistics": logging.INFO,
    "default": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
    "profile": logging.DEBUG,
    "all": logging.DEBUG,
}
STATISTICS_LOGGER = "mmd.session"  # the statistics entries (session-end, milter-verdict, ...)

# option -> what systemd (or mmd) does instead, for the warning
SYSTEMD_INSTEAD = {
    "daemon": "--daemon: systemd runs milter-manager in the foreground and tracks it "
    "(Type=notify)",
    "pid_file": "--pid-file: systemd knows the main PID (systemctl show -p MainPID "
    "milter-manager)",
    "log_path": "--log-path: messages go to the journal (journalctl -u milter-manager; "
    "statistics: milter-manager report)",
    "event_loop_backend": "--event-loop-backend: mmd has one asyncio event loop",
    "n_workers": "--n-workers: mmd serves every session in one process",
    "packet_buffer_size": "--packet-buffer-size: mmd writes each packet at once",
}


def _log_level(text: str) -> str:
    names = [name.strip().lower() for name in text.replace(",", "|").split("|") if name.strip()]
    unknown = [name for name in names if name not in LOG_LEVELS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown log level {', '.join(unknown) or repr(text)} (one or more of "
            f"{'|'.join(LOG_LEVELS)})")
    return "|".join(names)


def add_classic_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "options of the classic milter-manager",
        "accepted so old command lines keep working; see the table in docs/systemd.md",
    )
    group.add_argument(
        "--socket-group-name", metavar="GROUP",
        help="group of the listening UNIX socket (the unix_socket_group setting)",
    )
    group.add_argument(
        "--log-level", metavar="LEVEL", type=_log_level,
        help="classic levels, joined with '|': none, critical, error, warning, message, info, "
        "statistics, default, debug, trace, profile, all; debug, trace, profile and all are "
        "--verbose; the statistics entries stay unless the level is only none/critical/error/"
        "warning",
    )
    group.add_argument("--daemon", action="store_true",
                       help="ignored with a warning: systemd runs the daemon")
    group.add_argument("--pid-file", metavar="FILE",
                       help="ignored with a warning: systemd tracks the main PID")
    group.add_argument("--log-path", metavar="PATH",
                       help="ignored with a warning: messages go to the journal")
    group.add_argument("--event-loop-backend", metavar="BACKEND",
                       help="ignored with a warning (glib or libev in the classic manager)")
    group.add_argument("--n-workers", metavar="N", type=int,
                       help="ignored with a warning: one process serves every session")
    group.add_argument("--packet-buffer-size", metavar="SIZE", type=int,
                       help="ignored with a warning")


def apply_classic_options(args: argparse.Namespace, overrides: MutableMapping[str, object]) -> None:
    """Map the classic options onto settings and log levels (after logging is set up); one
    warning names every ignored option, before a --log-level could hide it."""
    if args.socket_group_name:
        overrides["unix_socket_group"] = args.socket_group_name
    ignored = [text for name, text in SYSTEMD_INSTEAD.items()
               if getattr(args, name) is not None and getattr(args, name) is not False]
    if ignored:
        logging.getLogger("mmd").warning(
            "ignored options of the classic milter-manager: %s", "; ".join(ignored))
    if args.log_level:
        names = args.log_level.split("|")
        general = [name for name in names if name != "statistics"]
        level = min((LOG_LEVELS[name] for name in general), default=logging.WARNING)
        logging.getLogger().setLevel(logging.DEBUG if args.verbose else level)
        if level > logging.INFO and "statistics" in names:
            logging.getLogger(STATISTICS_LOGGER).setLevel(logging.INFO)
