"""milter-test-server: play the MTA for one session against a milter and print the outcome.

Options and output follow the classic milter manager tool so that scripts and
habits carry over: ``status: NAME [CODE]<EXT>(TEXT)``, ``elapsed-time: N
seconds``, an optional quarantine line and, with ``--output-message``, the
message with every change marked ``+ ``/``- ``. The session itself lives in
``mmd.adapters.mta_client``; this module parses options, applies the
milter's changes to a copy of the message and formats the result (pure code,
unit-tested without sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mmd import __version__
from mmd.adapters.mta_client import (
    ConnectError,
    SessionError,
    SessionInput,
    SessionResult,
    Timeouts,
    run_session,
)
from mmd.config.connection_spec import (
    ConnectionSpec,
    InetSpec,
    SpecError,
    UnixSpec,
    parse_connection_spec,
)
from mmd.config.model import DEFAULT_CONNECTION_SPEC
from mmd.engine.message import HeaderError, WorkingHeaders
from mmd.protocol import messages as m
from mmd.protocol.constants import Step

PROGRAM_NAME = "milter-test-server"
DEFAULT_CONNECT_HOST = "mx.example.net"
DEFAULT_CONNECT_ADDRESS = "inet:50443@[192.168.123.123]"
DEFAULT_HELO_FQDN = "delian"
DEFAULT_ENVELOPE_FROM = "sender@example.com"
DEFAULT_RECIPIENT = "receiver@example.org"
DEFAULT_BODY = "La de da de da 1.\nLa de da de da 2.\nLa de da de da 3.\nLa de da de da 4."

T = TypeVar("T")

GREEN = "\033[01;32m"
RED = "\033[01;31m"
NORMAL = "\033[00m"


class UsageError(Exception):
    """A bad option value; printed like the classic tool does, exit status 1."""


# ---------------------------------------------------------------- the message


@dataclass(slots=True)
class Delivery:
    """Envelope, headers and body as the MTA would deliver them (before or after the changes)."""

    envelope_from: str
    recipients: list[str]
    headers: list[tuple[str, str]]
    body: bytes
    replaced_body: bytes | None = None

    def copy(self) -> Delivery:
        """A copy whose lists can change without touching this one."""
        return replace(self, recipients=list(self.recipients), headers=list(self.headers))


def normalize_address(address: str) -> str:
    """Envelope addresses travel in angle brackets."""
    if address.startswith("<") and address.endswith(">"):
        return address
    return f"<{address}>"


def address_in(value: str) -> str:
    """The path of a From:/To: header value: ``Name <a@b>`` -> ``<a@b>``."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        if end < 0:
            raise UsageError(f"invalid mail address: <{value}>")
        return value[start : end + 1]
    words = value.split()
    return f"<{words[0] if words else ''}>"


def apply_changes(
    mail: Delivery, changes: Iterable[m.Modification], leading_space: bool = False
) -> Delivery:
    """The message after the milter's changes, in the order they came (as the MTA applies).

    Headers change as the manager changes them (the engine's ``WorkingHeaders``). With
    ``leading_space`` (SMFIP_HDR_LEADSPC negotiated) a header value carries its own
    separator space, as Postfix then writes it verbatim: drop it for our ``Name: value``.
    """
    result = mail.copy()
    headers = WorkingHeaders(result.headers)

    def own(value: str) -> str:
        return value[1:] if leading_space and value.startswith(" ") else value

    for change in changes:
        if isinstance(change, m.AddHeader):
            headers.add(change.name, own(change.value))
        elif isinstance(change, m.InsertHeader):
            headers.insert(change.index, change.name, own(change.value))
        elif isinstance(change, m.ChangeHeader):
            with contextlib.suppress(HeaderError):  # deleting a header that is not there
                headers.change(change.name, change.index, own(change.value))
        elif isinstance(change, m.ChangeFrom):
            result.envelope_from = normalize_address(change.sender)
        elif isinstance(change, m.AddRecipient | m.AddRecipientWithArgs):
            result.recipients.append(normalize_address(change.recipient))
        elif isinstance(change, m.DeleteRecipient):
            target = normalize_address(change.recipient)
            if target in result.recipients:
                result.recipients.remove(target)
        elif isinstance(change, m.ReplaceBody):
            result.replaced_body = (result.replaced_body or b"") + change.chunk
    result.headers = headers.items()
    return result


# ---------------------------------------------------------------- output


def format_status(result: SessionResult) -> str:
    """The classic ``status: NAME [CODE]<EXT>(TEXT)`` line."""
    status = result.status
    if result.quarantine_reason is not None and status == "pass":
        status = "quarantine"
    line = f"status: {status}"
    if result.reply is not None:
        reply = result.reply
        extended = reply.extended_code if reply.extended_code is not None else "(null)"
        text = reply.message if reply.message is not None else "(null)"
        line += f" [{reply.code}]<{extended}>({text})"
    return line


def format_elapsed(seconds: float) -> str:
    """The classic ``elapsed-time`` line."""
    # %g like the classic: six significant digits, no trailing zeros
    return f"elapsed-time: {seconds:g} seconds"


def _paint(line: str, prefix: str, color: bool) -> str:
    if not color or prefix == " ":
        return line
    return f"{GREEN if prefix == '+' else RED}{line}{NORMAL}"


def _envelope_line(prefix: str, label: str, address: str, color: bool) -> str:
    return _paint(f"{prefix} {label}:{address}", prefix, color)


def _header_lines(prefix: str, header: tuple[str, str], color: bool) -> list[str]:
    name, value = header
    if not value:
        return [_paint(f"{prefix} {name}:", prefix, color)]
    first, *rest = value.split("\n")
    lines = [f"{prefix} {name}: {first}"] + [f"{prefix} {line}" for line in rest]
    return [_paint(line, prefix, color) for line in lines]


def _diff(
    before: Sequence[T], after: Sequence[T], same_slot: Callable[[T, T], bool],
    pair_replacements: bool = False,
) -> list[tuple[str, T]]:
    """Lines of a change listing: kept items ``" "``, removed ``"-"``, added ``"+"``.

    Walks both lists like the classic tool: an item missing from the rest of the
    original is an addition, one missing from the rest of the result a removal,
    and an item replaced in place (``same_slot``, e.g. the same header name)
    shows as ``-`` then ``+``. With ``pair_replacements`` (envelope recipients, as the
    classic prints them) an item replaced by a new one shows as ``-`` then ``+`` too.
    """
    out: list[tuple[str, T]] = []
    i = j = 0
    while i < len(before) and j < len(after):
        old, new = before[i], after[j]
        if old == new:
            out.append((" ", old))
            i, j = i + 1, j + 1
        elif pair_replacements and new not in before[i:] and old not in after[j:]:
            out += [("-", old), ("+", new)]
            i, j = i + 1, j + 1
        elif new not in before[i:]:
            out.append(("+", new))
            j += 1
        elif old not in after[j:]:
            out.append(("-", old))
            i += 1
        elif same_slot(old, new):
            out += [("-", old), ("+", new)]
            i, j = i + 1, j + 1
        else:
            out.append(("+", new))
            j += 1
    out += [("-", item) for item in before[i:]]
    out += [("+", item) for item in after[j:]]
    return out


def _same_header_name(old: tuple[str, str], new: tuple[str, str]) -> bool:
    return old[0].lower() == new[0].lower()


def _any_slot(old: str, new: str) -> bool:
    return True


def _charset(headers: Sequence[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name.lower() != "content-type":
            continue
        lowered = value.lower()
        start = lowered.find("charset=")
        if start < 0:
            return None
        rest = value[start + len("charset=") :].strip()
        if rest[:1] in ('"', "'"):
            end = rest.find(rest[0], 1)
            return rest[1:end] if end > 0 else None
        return rest.split(";")[0].strip() or None
    return None


def _body_text(body: bytes, charset: str | None) -> str:
    if charset:
        try:
            codecs.lookup(charset)
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    return body.decode("utf-8", errors="replace")


def format_message(original: Delivery, result: Delivery, color: bool = False) -> list[str]:
    """The three sections of ``--output-message``."""
    lines = ["Envelope:------------------------------"]
    if original.envelope_from == result.envelope_from:
        lines.append(_envelope_line(" ", "MAIL FROM", original.envelope_from, color))
    else:
        lines.append(_envelope_line("-", "MAIL FROM", original.envelope_from, color))
        lines.append(_envelope_line("+", "MAIL FROM", result.envelope_from, color))
    for prefix, recipient in _diff(original.recipients, result.recipients, _any_slot, True):
        lines.append(_envelope_line(prefix, "RCPT TO", recipient, color))
    lines.append("Header:--------------------------------")
    for prefix, header in _diff(original.headers, result.headers, _same_header_name):
        lines += _header_lines(prefix, header, color)
    lines.append("Body:----------------------------------")
    body = result.replaced_body if result.replaced_body is not None else original.body
    lines.append(_body_text(body, _charset(result.headers)))
    return lines


def format_result(
    result: SessionResult, original: Delivery, output_message: bool, color: bool = False
) -> str:
    """Everything one session prints: status, time, quarantine, the changed message."""
    if result.error is not None:
        return result.error + "\n"
    lines = [format_status(result), format_elapsed(result.elapsed)]
    if result.quarantine_reason is not None:
        lines.append(f"Quarantine reason: <{result.quarantine_reason}>")
    if output_message:
        lines.append("")
        negotiated = result.negotiated
        leading_space = negotiated is not None and bool(
            negotiated.steps & Step.HEADER_LEADING_SPACE
        )
        changed = apply_changes(original, result.changes, leading_space)
        lines += format_message(original, changed, color)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- options


class _Append(argparse.Action):
    """Collect repeatable NAME:VALUE options, checking the delimiter as the classic does."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: str | Sequence[object] | None, option_string: str | None = None,
    ) -> None:
        text = str(values)
        if ":" not in text:
            what = "header" if self.dest == "headers" else "macro"
            parser.error(f"{option_string}: {what} name and value delimiter ':' "
                         f"doesn't exist: <{text}>")
        name, _, value = text.partition(":")
        items = list(getattr(namespace, self.dest) or [])
        items.append((name, value.lstrip(" ") if self.dest == "headers" else value))
        setattr(namespace, self.dest, items)


MACRO_OPTIONS = {
    "connect-macro": "connect",
    "helo-macro": "helo",
    "envelope-from-macro": "envelope-from",
    "envelope-recipient-macro": "envelope-recipient",
    "data-macro": "data",
    "end-of-header-macro": "end-of-header",
    "end-of-message-macro": "end-of-message",
}


def build_parser() -> argparse.ArgumentParser:
    """The options of the classic tool (``-h`` is a header, help is long only)."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM_NAME,
        add_help=False,  # -h is --header, as in the classic tool
        description="Talk the MTA side of the milter protocol to one milter for one "
        "session and print its verdict (and, with --output-message, the changed message).",
        epilog="Exit status: 0 when the session ran to a verdict (whatever it is); 1 on a "
        "bad option value, a connection failure, a timeout or a protocol error; 2 on an "
        "unknown option.",
    )
    add = parser.add_argument
    add("--help", action="help", help="Show this help and exit.")
    add("--version", action="version", version=f"{PROGRAM_NAME} {__version__}",
        help="Show the version and exit.")
    add("--name", default=PROGRAM_NAME, metavar="NAME",
        help="Use NAME as the MTA's name: the value of the {daemon_name} macro. "
        "(default: %(default)s)")
    add("-s", "--connection-spec", default=DEFAULT_CONNECTION_SPEC, metavar="SPEC",
        help="The milter's socket: unix:PATH, inet:PORT[@HOST], inet6:PORT[@HOST] "
        "(HOST may be [ADDRESS]); a bare /PATH means unix:/PATH. (default: %(default)s)")
    add("--negotiate-version", type=int, default=6, metavar="VERSION",
        help="Milter protocol version offered on negotiate. (default: %(default)s)")
    add("--connect-host", default=DEFAULT_CONNECT_HOST, metavar="HOST",
        help="Client host name given on connect. (default: %(default)s)")
    add("--connect-address", default=DEFAULT_CONNECT_ADDRESS, metavar="SPEC",
        help="Client address given on connect: a SPEC like --connection-spec "
        "(inet:PORT@[ADDRESS], inet6:..., unix:PATH) or a plain IPv4/IPv6 address "
        "(port 50443). (default: %(default)s)")
    add("--helo-fqdn", default=DEFAULT_HELO_FQDN, metavar="FQDN",
        help="Name given with HELO/EHLO. (default: %(default)s)")
    add("-f", "--envelope-from", "--from", dest="envelope_from", metavar="FROM",
        help=f"Sender for MAIL FROM. (default: {DEFAULT_ENVELOPE_FROM}, or the From: "
        "of --mail-file)")
    add("-r", "--envelope-recipient", "--recipient", dest="recipients", action="append",
        metavar="RECIPIENT",
        help=f"Recipient for RCPT TO; repeat for several. (default: {DEFAULT_RECIPIENT}, "
        "or the To: of --mail-file)")
    add("-h", "--header", dest="headers", action=_Append, metavar="NAME:VALUE",
        help="Add a header; repeat for several. From: and To: are added from the "
        "envelope when absent.")
    add("-b", "--body", dest="body_chunks", action="append", metavar="CHUNK",
        help="Add a body chunk (one BODY packet); repeat for several.")
    add("-m", "--mail-file", metavar="PATH",
        help="Read headers and body from an RFC 822 file ('-' for standard input); its "
        "From: and To: give the envelope unless -f/-r are given.")
    add("--unknown", dest="unknown_command", metavar="COMMAND",
        help="Send COMMAND as an unknown SMTP command after the recipients.")
    add("--authenticated-name", metavar="NAME",
        help="SASL login name: sent as {auth_authen} with MAIL FROM.")
    add("--authenticated-type", metavar="TYPE",
        help="SASL method: sent as {auth_type} with MAIL FROM.")
    add("--authenticated-author", metavar="AUTHOR",
        help="SASL sender: sent as {auth_author} with MAIL FROM.")
    for option, stage in MACRO_OPTIONS.items():
        add(f"--{option}", dest=option.replace("-", "_"), action=_Append,
            metavar="NAME:VALUE",
            help=f"Add a macro sent at {stage} (NAME without braces is sent as is; "
            "write {name} for long names); repeat for several.")
    add("--queue-id", metavar="ID",
        help="Queue id sent as the i macro (MAIL, DATA, end-of-header, end-of-message). "
        "(default: random, like Postfix)")
    add("--output-message", action="store_true", help="Show the message after the "
        "milter's changes (+ added, - removed lines).")
    add("--color", nargs="?", const="yes", default="no", metavar="yes|true|no|false|auto",
        help="Colour the changed lines of --output-message. (default: no)")
    add("--connection-timeout", type=float, default=300.0, metavar="SECONDS",
        help="Give up connecting after SECONDS. (default: %(default)s)")
    add("--reading-timeout", type=float, default=10.0, metavar="SECONDS",
        help="Give up waiting for a reply after SECONDS. (default: %(default)s)")
    add("--writing-timeout", type=float, default=10.0, metavar="SECONDS",
        help="Give up writing a command after SECONDS. (default: %(default)s)")
    add("--end-of-message-timeout", type=float, default=300.0, metavar="SECONDS",
        help="Give up waiting for the end-of-message reply after SECONDS; a progress "
        "reply restarts the wait. (default: %(default)s)")
    add("-t", "--threads", type=_threads, default=0, metavar="N",
        help="Run N sessions in parallel (the classic tool's threads); each prints its "
        "result, in the order the sessions were started; 0 is one session. "
        "(default: %(default)s)")
    add("-v", "--verbose", action="store_true",
        help="Trace every packet sent and received on standard error; with a connection "
        "failure, also say why on standard error.")
    return parser


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a number of threads: {text}")
    return value


@dataclass(slots=True)
class Options:
    """Parsed options, defaults applied: what the session and the output need."""

    spec: ConnectionSpec
    spec_text: str
    session: SessionInput
    mail: Delivery
    timeouts: Timeouts
    output_message: bool = False
    color: bool = False
    verbose: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    threads: int = 1


def parse_milter_spec(text: str) -> ConnectionSpec:
    """The milter's socket: a connection spec, or a bare absolute path (``unix:PATH``)."""
    return parse_connection_spec("unix:" + text if text.startswith("/") else text)


def parse_connect_address(text: str) -> ConnectionSpec:
    """The client address given on connect: a connection spec or a plain address."""
    if ":" in text and text.split(":", 1)[0].lower() in ("inet", "inet6", "unix", "local"):
        return parse_connection_spec(text)
    address = text.removeprefix("[").removesuffix("]")
    return InetSpec(address, 50443, "inet6" if ":" in address else "inet")


def parse_mail(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Split an RFC 822 message into headers (folded lines joined by newline) and body."""
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]  # an mbox separator
    headers: list[tuple[str, str]] = []
    position = 0
    for position, raw in enumerate(lines):
        line = raw.removesuffix(b"\r").decode("utf-8", errors="surrogateescape")
        if not line:
            position += 1
            break
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value}\n{line}")
        elif line[0].isalnum() and ":" in line:
            name, _, value = line.partition(":")
            headers.append((name, value.lstrip(" \t")))
        else:
            raise UsageError(f"invalid header: <{line}>")
    else:
        position = len(lines)
    return headers, b"\n".join(lines[position:])


def _domain(address: str) -> str:
    return address.strip("<>").rpartition("@")[2]


def standard_macros(
    name: str, host: str, address: ConnectionSpec, mail: Delivery, queue_id: str,
    auth: dict[str, str],
) -> dict[str, list[tuple[str, str]]]:
    """The macros Postfix sends by default at each stage (milter_*_macros)."""
    client = address.path if isinstance(address, UnixSpec) else address.connect_host()
    connect = [
        ("j", "mail.example.com"), ("_", f"{host} [{client}]"), ("{daemon_name}", name),
        ("{daemon_addr}", "127.0.0.1"), ("{if_name}", "localhost"), ("{if_addr}", "127.0.0.1"),
        ("{client_addr}", client), ("{client_name}", host), ("{client_ptr}", host),
    ]
    if not isinstance(address, UnixSpec):
        connect.append(("{client_port}", str(address.port)))
    sender = mail.envelope_from.strip("<>")
    envelope_from = [("i", queue_id), ("{mail_mailer}", "smtp"),
                     ("{mail_host}", _domain(sender)), ("{mail_addr}", sender)]
    envelope_from += list(auth.items())
    return {
        "connect": connect,
        "helo": [],
        "envelope-from": envelope_from,
        "envelope-recipient": [],
        "data": [("i", queue_id)],
        "end-of-header": [("i", queue_id)],
        "end-of-message": [("i", queue_id)],
    }


def _merge(base: list[tuple[str, str]], extra: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    merged = dict(base)
    merged.update(extra)
    return list(merged.items())


def options_from(argv: Sequence[str] | None) -> Options:
    """Parse argv (argparse exits 2 on unknown options, as usual)."""
    args = build_parser().parse_args(argv)
    try:
        spec = parse_milter_spec(args.connection_spec)
        connect_address = parse_connect_address(args.connect_address)
    except SpecError as error:
        raise UsageError(str(error)) from error
    headers: list[tuple[str, str]] = list(args.headers or [])
    body_chunks = [chunk.encode("utf-8", errors="surrogateescape")
                   for chunk in (args.body_chunks or [])]
    envelope_from = args.envelope_from
    recipients = list(args.recipients or [])
    if args.mail_file is not None:
        try:
            if args.mail_file == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(args.mail_file, "rb") as file:
                    data = file.read()
        except OSError as error:
            raise UsageError(f"Loading from {args.mail_file} failed.: {error.strerror}") from error
        file_headers, body = parse_mail(data)
        headers = file_headers + headers
        if not body_chunks:
            body_chunks = [body]
        for name, value in file_headers:
            if name.lower() == "from" and envelope_from is None:
                envelope_from = address_in(value)
            elif name.lower() == "to" and not args.recipients:
                recipients.append(address_in(value))
    envelope_from = normalize_address(envelope_from or DEFAULT_ENVELOPE_FROM)
    recipients = [normalize_address(r) for r in recipients or [DEFAULT_RECIPIENT]]
    names = {name.lower() for name, _ in headers}
    if "from" not in names:
        headers.append(("From", envelope_from))
    if "to" not in names:
        headers.append(("To", recipients[0]))
    if not body_chunks:
        body_chunks = [DEFAULT_BODY.encode()]
    mail = Delivery(envelope_from, recipients, headers, b"".join(body_chunks))

    auth = {}
    if args.authenticated_name is not None:
        auth["{auth_authen}"] = args.authenticated_name
    if args.authenticated_type is not None:
        auth["{auth_type}"] = args.authenticated_type
    if args.authenticated_author is not None:
        auth["{auth_author}"] = args.authenticated_author
    queue_id = args.queue_id or secrets.token_hex(5).upper()
    macros = standard_macros(args.name, args.connect_host, connect_address, mail, queue_id, auth)
    for option, stage in MACRO_OPTIONS.items():
        macros[stage] = _merge(macros[stage], getattr(args, option.replace("-", "_")) or [])
    recipient_macros = {
        r: [("{rcpt_mailer}", "smtp"), ("{rcpt_host}", _domain(r)), ("{rcpt_addr}", r.strip("<>"))]
        for r in recipients
    }
    session = SessionInput(
        connect_host=args.connect_host,
        connect_address=connect_address,
        helo_fqdn=args.helo_fqdn,
        envelope_from=envelope_from,
        recipients=recipients,
        headers=headers,
        body_chunks=body_chunks,
        macros=macros,
        recipient_macros=recipient_macros,
        unknown_command=args.unknown_command,
        negotiate_version=args.negotiate_version,
    )
    timeouts = Timeouts(args.connection_timeout, args.reading_timeout, args.writing_timeout,
                        args.end_of_message_timeout)
    color_value = str(args.color).lower()
    if color_value not in ("yes", "true", "no", "false", "auto"):
        raise UsageError(f"Invalid color value: {args.color}")
    color = color_value in ("yes", "true") or (color_value == "auto" and sys.stdout.isatty())
    return Options(spec, args.connection_spec, session, mail, timeouts, args.output_message, color,
                   args.verbose, threads=max(1, args.threads))


def _trace(direction: str, message: m.Message) -> None:
    arrow = ">" if direction == "send" else "<"
    print(f"[{arrow}] {message!r}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sessions and print their outcomes; the exit status of the classic tool."""
    try:
        options = options_from(argv)
    except UsageError as error:
        print(error)
        return 1
    trace = _trace if options.verbose else None
    outcomes = asyncio.run(_sessions(options, trace))
    status = 0
    for outcome in outcomes:
        if isinstance(outcome, ConnectError):
            # one line on standard output, as the classic prints it; why, with -v
            print(f"Failed to connect to {options.spec_text}")
            if options.verbose:
                print(f"{PROGRAM_NAME}: {outcome}", file=sys.stderr)
            status = 1
        elif isinstance(outcome, SessionError):
            print(outcome)
            status = 1
        else:
            sys.stdout.write(format_result(outcome, options.mail, options.output_message,
                                           options.color))
    return status


async def _sessions(
    options: Options, trace: Callable[[str, m.Message], None] | None
) -> list[SessionResult | ConnectError | SessionError]:
    """``--threads`` sessions at once, each with its own queue id; results in start order."""

    async def one(number: int) -> SessionResult | ConnectError | SessionError:
        session = options.session if number == 0 else _with_queue_id(options.session)
        try:
            return await run_session(options.spec, session, options.timeouts, trace)
        except (ConnectError, SessionError) as error:
            return error

    return list(await asyncio.gather(*(one(number) for number in range(options.threads))))


def _with_queue_id(session: SessionInput) -> SessionInput:
    """The same session under a fresh random queue id (the ``i`` macro)."""
    old = dict(session.macros.get("data", [])).get("i")
    new = secrets.token_hex(5).upper()
    macros = {stage: [(name, new if name == "i" and value == old else value)
                      for name, value in pairs]
              for stage, pairs in session.macros.items()}
    return replace(session, macros=macros)


if __name__ == "__main__":
    sys.exit(main())
