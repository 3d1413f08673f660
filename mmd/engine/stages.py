"""The milter stages and, per MTA command, the step flags that govern it.

One table says for every command which stage it opens, its letter in a MACRO
packet and which step flags (SMFIP_*) let a milter refuse the event or the
reply. The session engine and both MTA-side clients read it, so a flag means
the same wherever a command is sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mmd.protocol import messages as m
from mmd.protocol.constants import Step


class Stage(enum.Enum):
    """Milter stages, in the order a session goes through them (the words logs use)."""

    NEGOTIATE = "negotiate"
    CONNECT = "connect"
    HELO = "helo"
    MAIL = "envelope-from"
    RCPT = "envelope-recipient"
    DATA = "data"
    UNKNOWN = "unknown"
    HEADER = "header"
    END_OF_HEADERS = "end-of-header"
    BODY = "body"
    END_OF_MESSAGE = "end-of-message"
    ABORT = "abort"
    QUIT = "quit"


ENVELOPE_STAGES = frozenset(
    {Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.UNKNOWN}
)
MESSAGE_STAGES = frozenset({Stage.HEADER, Stage.END_OF_HEADERS, Stage.BODY, Stage.END_OF_MESSAGE})
# a child stopped by a condition at one of these is out for the whole connection
CONNECTION_STAGES = frozenset({Stage.CONNECT, Stage.HELO})


@dataclass(frozen=True, slots=True)
class StageInfo:
    """One row of the stage table: a command's stage, macro letter and step bits."""

    stage: Stage
    code: bytes  # the command letter a MACRO packet names
    no_event: int  # Step bits as plain ints: IntFlag's & costs microseconds a test
    no_reply: int


STAGES: dict[type, StageInfo] = {
    m.Connect: StageInfo(Stage.CONNECT, b"C", int(Step.NO_CONNECT), int(Step.NO_REPLY_CONNECT)),
    m.Helo: StageInfo(Stage.HELO, b"H", int(Step.NO_HELO), int(Step.NO_REPLY_HELO)),
    m.Mail: StageInfo(Stage.MAIL, b"M", int(Step.NO_MAIL), int(Step.NO_REPLY_MAIL)),
    m.Rcpt: StageInfo(Stage.RCPT, b"R", int(Step.NO_RCPT), int(Step.NO_REPLY_RCPT)),
    m.Data: StageInfo(Stage.DATA, b"T", int(Step.NO_DATA), int(Step.NO_REPLY_DATA)),
    m.Unknown: StageInfo(Stage.UNKNOWN, b"U", int(Step.NO_UNKNOWN), int(Step.NO_REPLY_UNKNOWN)),
    m.Header: StageInfo(Stage.HEADER, b"L", int(Step.NO_HEADERS), int(Step.NO_REPLY_HEADER)),
    m.EndOfHeaders: StageInfo(
        Stage.END_OF_HEADERS,
        b"N",
        int(Step.NO_END_OF_HEADERS),
        int(Step.NO_REPLY_END_OF_HEADERS),
    ),
    m.Body: StageInfo(Stage.BODY, b"B", int(Step.NO_BODY), int(Step.NO_REPLY_BODY)),
    m.EndOfMessage: StageInfo(Stage.END_OF_MESSAGE, b"E", 0, 0),
}
BY_STAGE: dict[Stage, StageInfo] = {info.stage: info for info in STAGES.values()}


def macro_code(stage: Stage) -> bytes:
    """The MACRO letter of ``stage``'s command; empty for stages without one."""
    info = BY_STAGE.get(stage)
    return info.code if info is not None else b""
