"""Milter packets as small immutable values: the events of the sans-IO core.

Commands travel from the MTA to a milter, replies from a milter to the MTA.
``Negotiate`` travels both ways (the same wire layout). Text fields are
``str`` decoded as UTF-8 with ``surrogateescape`` so that any byte sequence
survives a round trip; body data stays ``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mmd.protocol.constants import Action, Family, MacroStage, Step

# ---------------------------------------------------------------- both ways


@dataclass(frozen=True, slots=True)
class Negotiate:
    """SMFIC_OPTNEG from the MTA, or the milter's answer to it.

    ``symbol_lists`` maps a v6 macro stage to a space-separated list of
    macro names the milter asks for (only in answers).
    """

    version: int
    actions: Action
    steps: Step
    symbol_lists: Mapping[MacroStage, str] = field(default_factory=dict)


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Macro:
    """SMFIC_MACRO: macro values for the command ``command`` that follows."""

    command: bytes
    macros: tuple[tuple[str, str], ...]
    # the packet as the decoder read it: the same bytes encode would make, so the MTA's
    # macros go on to every child without being encoded again (not part of equality)
    wire: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Connect:
    """SMFIC_CONNECT: the SMTP client, as the MTA saw it."""

    hostname: str
    family: Family
    port: int = 0
    address: str = ""


@dataclass(frozen=True, slots=True)
class Helo:
    """SMFIC_HELO: the name the client gave with HELO/EHLO."""

    name: str


@dataclass(frozen=True, slots=True)
class Mail:
    """MAIL FROM: the sender first, then ESMTP arguments."""

    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rcpt:
    """RCPT TO: the recipient first, then ESMTP arguments."""

    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Data:
    """SMFIC_DATA: the client sent DATA (protocol 4 and later)."""


@dataclass(frozen=True, slots=True)
class Header:
    """SMFIC_HEADER: one header of the message, value as the MTA has it."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class EndOfHeaders:
    """SMFIC_EOH: the headers are complete."""


@dataclass(frozen=True, slots=True)
class Body:
    """SMFIC_BODY: one chunk of the message body."""

    chunk: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """SMFIC_BODYEOB; may carry a last body chunk."""

    chunk: bytes = b""


@dataclass(frozen=True, slots=True)
class Abort:
    """SMFIC_ABORT: the message is over without end-of-message; the connection goes on."""


@dataclass(frozen=True, slots=True)
class Quit:
    """SMFIC_QUIT: the SMTP session and the connection are over."""


@dataclass(frozen=True, slots=True)
class QuitNewConnection:
    """SMFIC_QUIT_NC: the connection is kept for a new SMTP session."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """An SMTP command the MTA did not recognise."""

    command: str


CommandMessage = (
    Negotiate
    | Macro
    | Connect
    | Helo
    | Mail
    | Rcpt
    | Data
    | Header
    | EndOfHeaders
    | Body
    | EndOfMessage
    | Abort
    | Quit
    | QuitNewConnection
    | Unknown
)

# ---------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Accept:
    """SMFIR_ACCEPT: accept the message (or connection) without asking further."""


@dataclass(frozen=True, slots=True)
class Continue:
    """SMFIR_CONTINUE: go on to the next stage."""


@dataclass(frozen=True, slots=True)
class Reject:
    """SMFIR_REJECT: refuse with a permanent error."""


@dataclass(frozen=True, slots=True)
class Tempfail:
    """SMFIR_TEMPFAIL: refuse with a temporary error."""


@dataclass(frozen=True, slots=True)
class Discard:
    """SMFIR_DISCARD: accept the message and throw it away."""


@dataclass(frozen=True, slots=True)
class ConnectionFail:
    """SMFIR_CONN_FAIL: drop the connection (the MTA answers 4xx)."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """SMFIR_SHUTDOWN: the milter is going away (the MTA answers 4xx)."""


@dataclass(frozen=True, slots=True)
class Skip:
    """SMFIR_SKIP: no more body chunks, please (protocol 6)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """SMFIR_PROGRESS: still working on end-of-message; restarts the timeout."""


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """SMFIR_REPLYCODE: ``text`` is the whole reply, e.g. ``550 5.7.1 Blocked``."""

    text: str

    @property
    def code(self) -> str:
        """The three-digit SMTP code."""
        return self.text[:3]


@dataclass(frozen=True, slots=True)
class Quarantine:
    """SMFIR_QUARANTINE: hold the message, with a reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class AddHeader:
    """SMFIR_ADDHEADER: append a header."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class InsertHeader:
    """Insert at position ``index`` (0 = before the first header)."""

    index: int
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    """Change the ``index``-th (1-based) header called ``name``; an empty value deletes it."""

    index: int
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class AddRecipient:
    """SMFIR_ADDRCPT: add an envelope recipient."""

    recipient: str


@dataclass(frozen=True, slots=True)
class AddRecipientWithArgs:
    """SMFIR_ADDRCPT_PAR: add an envelope recipient with ESMTP arguments."""

    recipient: str
    args: str


@dataclass(frozen=True, slots=True)
class DeleteRecipient:
    """SMFIR_DELRCPT: remove an envelope recipient."""

    recipient: str


@dataclass(frozen=True, slots=True)
class ChangeFrom:
    """SMFIR_CHGFROM: replace the envelope sender (with ESMTP arguments)."""

    sender: str
    args: str = ""


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    """SMFIR_REPLBODY: one chunk of the new body (the chunks replace the whole body)."""

    chunk: bytes


@dataclass(frozen=True, slots=True)
class SetSymbolList:
    """SMFIR_SETSYMLIST (reply letter l): the macros a milter wants at one stage."""

    stage: MacroStage
    symbols: str


VerdictReply = Accept | Continue | Reject | Tempfail | Discard | ConnectionFail | Shutdown | Skip
Modification = (
    AddHeader
    | InsertHeader
    | ChangeHeader
    | AddRecipient
    | AddRecipientWithArgs
    | DeleteRecipient
    | ChangeFrom
    | ReplaceBody
    | Quarantine
)
ReplyMessage = Negotiate | VerdictReply | Progress | ReplyCode | Modification | SetSymbolList
Message = CommandMessage | ReplyMessage
