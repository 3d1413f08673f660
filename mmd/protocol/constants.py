"""Numbers and letters of the milter protocol, as libmilter and Postfix define them."""

from __future__ import annotations

import enum

MAX_VERSION = 6
MIN_VERSION = 2
DEFAULT_MAX_PACKET_SIZE = 1024 * 1024 * 2  # bigger than any BODY chunk Postfix sends (64 KiB)
MAX_BODY_CHUNK = 65535


class Command(bytes, enum.Enum):
    """First byte of a packet the MTA sends to a milter."""

    ABORT = b"A"
    BODY = b"B"
    CONNECT = b"C"
    MACRO = b"D"
    END_OF_MESSAGE = b"E"
    HELO = b"H"
    QUIT_NEW_CONNECTION = b"K"
    HEADER = b"L"
    MAIL = b"M"
    END_OF_HEADERS = b"N"
    NEGOTIATE = b"O"
    QUIT = b"Q"
    RCPT = b"R"
    DATA = b"T"
    UNKNOWN = b"U"


class Reply(bytes, enum.Enum):
    """First byte of a packet a milter sends back to the MTA."""

    ADD_RECIPIENT = b"+"
    DELETE_RECIPIENT = b"-"
    ADD_RECIPIENT_WITH_ARGS = b"2"
    SHUTDOWN = b"4"
    ACCEPT = b"a"
    REPLACE_BODY = b"b"
    CONTINUE = b"c"
    DISCARD = b"d"
    CHANGE_FROM = b"e"
    CONNECTION_FAIL = b"f"
    ADD_HEADER = b"h"
    INSERT_HEADER = b"i"
    SET_SYMBOL_LIST = b"l"
    CHANGE_HEADER = b"m"
    NEGOTIATE = b"O"
    PROGRESS = b"p"
    QUARANTINE = b"q"
    REJECT = b"r"
    SKIP = b"s"
    TEMPFAIL = b"t"
    REPLY_CODE = b"y"


class Action(enum.IntFlag):
    """What a milter may change (SMFIF_*), offered by the MTA, asked for by the milter."""

    ADD_HEADERS = 0x001
    CHANGE_BODY = 0x002
    ADD_RECIPIENT = 0x004
    DELETE_RECIPIENT = 0x008
    CHANGE_HEADERS = 0x010
    QUARANTINE = 0x020
    CHANGE_FROM = 0x040
    ADD_RECIPIENT_WITH_ARGS = 0x080
    SET_SYMBOL_LIST = 0x100


ALL_ACTIONS = Action(0x1FF)


class Step(enum.IntFlag):
    """Protocol step flags (SMFIP_*): events a milter does not want, replies it will not send."""

    NO_CONNECT = 0x000001
    NO_HELO = 0x000002
    NO_MAIL = 0x000004
    NO_RCPT = 0x000008
    NO_BODY = 0x000010
    NO_HEADERS = 0x000020
    NO_END_OF_HEADERS = 0x000040
    NO_REPLY_HEADER = 0x000080
    NO_UNKNOWN = 0x000100
    NO_DATA = 0x000200
    SKIP = 0x000400
    RCPT_REJECTED = 0x000800
    NO_REPLY_CONNECT = 0x001000
    NO_REPLY_HELO = 0x002000
    NO_REPLY_MAIL = 0x004000
    NO_REPLY_RCPT = 0x008000
    NO_REPLY_DATA = 0x010000
    NO_REPLY_UNKNOWN = 0x020000
    NO_REPLY_END_OF_HEADERS = 0x040000
    NO_REPLY_BODY = 0x080000
    HEADER_LEADING_SPACE = 0x100000


ALL_STEPS = Step(0x1FFFFF)
NO_EVENT_STEPS = (
    Step.NO_CONNECT
    | Step.NO_HELO
    | Step.NO_MAIL
    | Step.NO_RCPT
    | Step.NO_BODY
    | Step.NO_HEADERS
    | Step.NO_END_OF_HEADERS
    | Step.NO_UNKNOWN
    | Step.NO_DATA
)
NO_REPLY_STEPS = (
    Step.NO_REPLY_HEADER
    | Step.NO_REPLY_CONNECT
    | Step.NO_REPLY_HELO
    | Step.NO_REPLY_MAIL
    | Step.NO_REPLY_RCPT
    | Step.NO_REPLY_DATA
    | Step.NO_REPLY_UNKNOWN
    | Step.NO_REPLY_END_OF_HEADERS
    | Step.NO_REPLY_BODY
)
YES_STEPS = Step.SKIP | Step.RCPT_REJECTED | Step.HEADER_LEADING_SPACE


class MacroStage(enum.IntEnum):
    """Index of a v6 per-stage macro symbol list (SMFIM_*)."""

    CONNECT = 0
    HELO = 1
    MAIL = 2
    RCPT = 3
    DATA = 4
    END_OF_MESSAGE = 5
    END_OF_HEADERS = 6


class Family(bytes, enum.Enum):
    """Address family in a CONNECT packet."""

    UNKNOWN = b"U"
    UNIX = b"L"
    INET = b"4"
    INET6 = b"6"
