#!/usr/bin/python3
"""SMTP conversations swaks cannot have, for system tests (stdlib only: run inside the test
container as ``python3 - MODE < smtp_steps.py``, or with its path).

Modes, each against 127.0.0.1:25:

* ``rset-then-mail``: MAIL, RCPT, RSET (the MTA aborts the transaction at its milters),
  then a whole message in the same SMTP connection.
* ``quit-mid-data``: MAIL, RCPT, DATA, a message with a header ``X-Half: yes``, then the
  client closes its socket without the final dot.
* ``two-messages NAME ADDRESS BODY``: XCLIENT (the client becomes NAME at ADDRESS), then two
  messages in the one SMTP connection: the first with BODY, whatever the answer (a filter
  may refuse it), the second an ordinary one, which must be accepted.

Every line the server sends is printed as ``<- LINE`` (as swaks prints it), every line sent
as ``-> LINE``; the exit status is 0 when the conversation went as planned.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable

SERVER = ("127.0.0.1", 25)
SENDER = "sender@example.com"
RECIPIENT = "receiver@example.org"


class Client:
    def __init__(self) -> None:
        self.sock = socket.create_connection(SERVER, timeout=60)
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        """The server's (last line of its) reply."""
        while True:
            line = self.file.readline().decode("utf-8", "replace").rstrip("\r\n")
            print(f"<- {line}", flush=True)
            if not line or line[3:4] != "-":
                return line

    def send(self, text: str) -> None:
        for line in text.split("\r\n"):
            print(f"-> {line}", flush=True)
        self.sock.sendall(text.encode() + b"\r\n")

    def command(self, text: str, expect: str) -> None:
        self.send(text)
        line = self.reply()
        if not line.startswith(expect):
            raise SystemExit(f"{text!r}: expected {expect}, got {line!r}")


def message(subject: str, extra: str = "", body: str = "") -> str:
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return (f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{time.time_ns()}@client.example.net>\r\n{extra}\r\n"
            f"{body or subject + ': the body.'}\r\n")


def greeted() -> Client:
    """A client past the banner and EHLO."""
    client = Client()
    client.reply()
    client.command("EHLO client.example.net", "250")
    return client


def envelope(client: Client) -> None:
    client.command(f"MAIL FROM:<{SENDER}>", "250")
    client.command(f"RCPT TO:<{RECIPIENT}>", "250")


def transaction(client: Client, text: str) -> str:
    """MAIL, RCPT, DATA and the message ``text``: the server's answer to its end."""
    envelope(client)
    client.command("DATA", "354")
    client.send(text + ".")  # ``text`` ends with CRLF
    return client.reply()


def accepted(line: str) -> None:
    if not line.startswith("250"):
        raise SystemExit(f"message not accepted: {line!r}")


def rset_then_mail() -> None:
    client = greeted()
    envelope(client)
    client.command("RSET", "250")
    accepted(transaction(client, message("after RSET")))
    client.command("QUIT", "221")


def two_messages(name: str, address: str, body: str) -> None:
    client = greeted()
    client.command(f"XCLIENT NAME={name} ADDR={address}", "220")
    client.command("EHLO client.example.net", "250")
    transaction(client, message("first of two", body=body))
    accepted(transaction(client, message("second of two")))
    client.command("QUIT", "221")


def quit_mid_data() -> None:
    client = greeted()
    envelope(client)
    client.command("DATA", "354")
    client.send(message("half a message", "X-Half: yes\r\n"))  # no final "."
    client.sock.close()


MODES: dict[str, Callable[..., None]] = {
    "rset-then-mail": rset_then_mail,
    "quit-mid-data": quit_mid_data,
    "two-messages": two_messages,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
