"""``milter-manager reload``: reload the running daemon, wait until the new configuration is used.

units/milter-manager.service runs it as ExecReload, so ``systemctl reload`` returns only
after the reload and fails when the configuration is refused. It asks over D-Bus (Reload())
when the daemon is on the bus; when there is no bus, or the daemon is not on it, it sends
SIGHUP to the daemon's pid (``--pid``, or $MAINPID that systemd sets for ExecReload) and
waits for the daemon's answer (mmd.adapters.reload_signal). Same exit status either way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

EXIT_RELOADED = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3
EXIT_DENIED = 4
DEFAULT_TIMEOUT = 120.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="milter-manager reload",
        description=(
            "Reload the running milter manager's configuration and wait until the new "
            "configuration is in use (or was refused). Asks over D-Bus (Reload() on "
            "org.miltermanager.Manager1) when it can; otherwise sends SIGHUP to the daemon "
            "and waits for its answer. systemctl reload milter-manager runs this."
        ),
        epilog=(
            f"Exit status: {EXIT_RELOADED} the new configuration is in use; {EXIT_REFUSED} it "
            "was refused (the previous one keeps serving; the reason is printed); "
            f"{EXIT_USAGE} usage error or no daemon to ask; {EXIT_NO_ANSWER} no answer in time "
            f"or the daemon ended; {EXIT_DENIED} not allowed (root or group "
            "milter-manager-admin for D-Bus; root or the daemon's user for the signal)."
        ),
    )
    parser.add_argument(
        "--pid",
        type=int,
        default=None,
        help="the daemon's pid for the signal way (default: $MAINPID, set by systemd)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the reload (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--no-dbus", action="store_true", help="do not try D-Bus; signal the pid directly"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing when the reload succeeds"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.timeout <= 0:
        return _fail(EXIT_USAGE, "--timeout must be positive")
    pid = args.pid if args.pid is not None else _pid_from_environment()
    reason = "--no-dbus"
    if not args.no_dbus:
        from mmd.adapters.dbus_service import ControlUnreachable, call_reload

        try:
            answer = asyncio.run(call_reload(args.timeout))
        except ControlUnreachable as error:
            reason = str(error)
        else:
            if answer.outcome == "reloaded":
                return _done(args.quiet, answer.message)
            code = EXIT_DENIED if answer.outcome == "denied" else EXIT_REFUSED
            return _fail(code, answer.message)
    if pid is None:
        return _fail(EXIT_USAGE, f"D-Bus: {reason}; and no pid to signal (--pid or $MAINPID)")
    print(f"milter-manager reload: D-Bus: {reason}; sending SIGHUP to pid {pid}", file=sys.stderr)
    return _by_signal(pid, args.timeout, args.quiet)


def _by_signal(pid: int, timeout: float, quiet: bool) -> int:
    from mmd.adapters.reload_signal import AnswerListener, WaitFailed

    try:
        listener = AnswerListener(pid)
    except OSError as error:
        return _fail(EXIT_NO_ANSWER, f"cannot wait for pid {pid}'s answer: {error}")
    try:
        answer = listener.signal_and_wait(timeout)
    except ProcessLookupError:
        return _fail(EXIT_USAGE, f"no process {pid}")
    except PermissionError:
        return _fail(EXIT_DENIED, f"not allowed to signal pid {pid}")
    except WaitFailed as error:
        return _fail(EXIT_NO_ANSWER, str(error))
    finally:
        listener.close()
    if answer.success:
        return _done(quiet, answer.message)
    return _fail(EXIT_REFUSED, answer.message)


def _pid_from_environment() -> int | None:
    value = os.environ.get("MAINPID", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _done(quiet: bool, message: str) -> int:
    if not quiet:
        print(message)
    return EXIT_RELOADED


def _fail(code: int, message: str) -> int:
    print(f"milter-manager reload: {message}", file=sys.stderr)
    return code
