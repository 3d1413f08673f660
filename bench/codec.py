"""Packets per second of the milter codec on a typical Postfix session.

Run: ``PYTHONPATH=. python bench/codec.py [seconds-per-case]``. Prints one line
per case; compare runs on the same machine only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from mmd.protocol.codec import Decoder, Direction, encode, encode_many
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Family, MacroStage, Step
from mmd.protocol.messages import (
    Accept,
    AddHeader,
    Body,
    Connect,
    Continue,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    Macro,
    Mail,
    Message,
    Negotiate,
    Quit,
    Rcpt,
)


def session_commands() -> list[Message]:
    """What Postfix sends a milter for one message with 2 recipients and 16 headers."""
    commands: list[Message] = [
        Negotiate(6, ALL_ACTIONS, ALL_STEPS),
        Macro(
            b"C",
            (
                ("j", "mx.example.org"),
                ("{daemon_name}", "smtpd"),
                ("{daemon_addr}", "192.0.2.1"),
                ("v", "Postfix 3.7.11"),
                ("_", "client.example.net [198.51.100.7]"),
            ),
        ),
        Connect("client.example.net", Family.INET, 52344, "198.51.100.7"),
        Macro(b"H", (("{tls_version}", "TLSv1.3"), ("{cipher}", "TLS_AES_256_GCM_SHA384"))),
        Helo("client.example.net"),
        Macro(b"M", (("i", "4Xyz1234"), ("{auth_type}", ""), ("{mail_addr}", "a@example.net"))),
        Mail(("<a@example.net>", "SIZE=4096", "BODY=8BITMIME")),
        Macro(b"R", (("{rcpt_addr}", "b@example.org"), ("{rcpt_mailer}", "local"))),
        Rcpt(("<b@example.org>",)),
        Macro(b"R", (("{rcpt_addr}", "c@example.org"), ("{rcpt_mailer}", "local"))),
        Rcpt(("<c@example.org>", "NOTIFY=NEVER")),
        Macro(b"T", ()),
        Data(),
    ]
    for n in range(16):
        commands.append(Header(f"X-Header-{n}", f"value number {n} with some text in it"))
    commands += [
        EndOfHeaders(),
        Body(b"Hello,\r\n" + b"this is a line of a typical body text.\r\n" * 100),
        Macro(b"E", (("i", "4Xyz1234"),)),
        EndOfMessage(),
        Quit(),
    ]
    return commands


def session_replies() -> list[Message]:
    """What a child milter answers to the commands above."""
    replies: list[Message] = [
        Negotiate(6, ALL_ACTIONS, Step.NO_HELO, {MacroStage.MAIL: "{auth_type} i"}),
    ]
    replies += [Continue()] * 22  # connect, helo, mail, 2 rcpt, data, 16 headers
    replies += [Continue(), Continue(), AddHeader("X-Spam-Status", "No, score=0.1"), Accept()]
    return replies


def rate(label: str, packets: int, run: Callable[[], object], seconds: float) -> None:
    rounds = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        run()
        rounds += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    per_second = packets * rounds / (now - start)
    print(f"{label:<48} {per_second:>12,.0f} packets/s")


def decode_all(direction: Direction, chunks: list[bytes]) -> Callable[[], object]:
    def run() -> object:
        decoder = Decoder(direction)
        count = 0
        for chunk in chunks:
            decoder.receive_data(chunk)
            while decoder.next_message() is not None:
                count += 1
        return count

    return run


def encode_each(messages: list[Message]) -> Callable[[], object]:
    return lambda: [encode(m) for m in messages]


def encode_joined(messages: list[Message]) -> Callable[[], object]:
    return lambda: encode_many(messages)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    for name, messages, direction in (
        ("commands", session_commands(), Direction.COMMANDS),
        ("replies", session_replies(), Direction.REPLIES),
    ):
        packets = [encode(m) for m in messages]
        stream = b"".join(packets)
        n = len(messages)
        rate(f"decode {name}, one read per packet", n, decode_all(direction, packets), seconds)
        rate(
            f"decode {name}, whole session in one read", n, decode_all(direction, [stream]), seconds
        )
        rate(
            f"decode {name}, 7-byte reads",
            n,
            decode_all(direction, [stream[i : i + 7] for i in range(0, len(stream), 7)]),
            seconds,
        )
        rate(f"encode {name}", n, encode_each(messages), seconds)
        rate(f"encode_many {name}", n, encode_joined(messages), seconds)


if __name__ == "__main__":
    main()
