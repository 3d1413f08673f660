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


@dataclass(frozen=True, slots=True)
class Connect:
    hostname: str
    family: Family
    port: int = 0
    address: str = ""


@dataclass(frozen=True, slots=True)
class Helo:
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
    pass


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class EndOfHeaders:
    pass


@dataclass(frozen=True, slots=True)
class Body:
    chunk: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """SMFIC_BODYEOB; may carry a last body chunk."""

    chunk: bytes = b""


@dataclass(frozen=True, slots=True)
class Abort:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


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
    pass


@dataclass(frozen=True, slots=True)
class Continue:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    pass


@dataclass(frozen=True, slots=True)
class Tempfail:
    pass


@dataclass(frozen=True, slots=True)
class Discard:
    pass


@dataclass(frozen=True, slots=True)
class ConnectionFail:
    pass


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class Skip:
    pass


@dataclass(frozen=True, slots=True)
class Progress:
    pass


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """SMFIR_REPLYCODE: ``text`` is the whole reply, e.g. ``550 5.7.1 Blocked``."""

    text: str

    @property
    def code(self) -> str:
        return self.text[:3]


@dataclass(frozen=True, slots=True)
class Quarantine:
    reason: str


@dataclass(frozen=True, slots=True)
class AddHeader:
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
    recipient: str


@dataclass(frozen=True, slots=True)
class AddRecipientWithArgs:
    recipient: str
    args: str


@dataclass(frozen=True, slots=True)
class DeleteRecipient:
    recipient: str


@dataclass(frozen=True, slots=True)
class ChangeFrom:
    sender: str
    args: str = ""


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    chunk: bytes


@dataclass(frozen=True, slots=True)
class SetSymbolList:
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
