"""A tiny scripted world around one ``Session`` for the engine's unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mmd.engine import (
    ChildFinished,
    ChildSettings,
    CloseChild,
    Output,
    Session,
    SessionFinished,
    SessionSettings,
    ToChild,
    ToMta,
)
from mmd.protocol import messages as m
from mmd.protocol.constants import ALL_ACTIONS, ALL_STEPS, Family, Step
from mmd.protocol.constants import Action as Act

MTA_OFFER = m.Negotiate(6, ALL_ACTIONS, ALL_STEPS)
CONNECT = m.Connect("mx.example.net", Family.INET, 50443, "192.168.123.123")


NO_STEPS = Step(0)


def answer(steps: Step = NO_STEPS, actions: Act = ALL_ACTIONS) -> m.Negotiate:
    return m.Negotiate(6, actions, steps)


@dataclass
class Driver:
    session: Session
    log: list[Output] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        children: Sequence[ChildSettings | str],
        settings: SessionSettings | None = None,
        answers: Sequence[m.Negotiate | None] | None = None,
    ) -> Driver:
        """Negotiate; ``None`` in ``answers`` makes that child unreachable."""
        specs = [ChildSettings(c) if isinstance(c, str) else c for c in children]
        driver = cls(Session(specs, settings))
        driver.mta(MTA_OFFER)
        for index, reply in enumerate(answers or [answer() for _ in specs]):
            if reply is None:
                driver.fail(index, "connect: refused")
            else:
                driver.child(index, reply)
        return driver

    def _keep(self, actions: list[Output]) -> list[Output]:
        self.log.extend(actions)
        return actions

    def mta(self, message: m.CommandMessage) -> list[Output]:
        return self._keep(self.session.from_mta(message))

    def child(self, index: int, reply: m.ReplyMessage) -> list[Output]:
        return self._keep(self.session.from_child(index, reply))

    def fail(self, index: int, reason: str) -> list[Output]:
        return self._keep(self.session.child_failed(index, reason))

    def envelope(self) -> None:
        """CONNECT .. DATA with every child continuing."""
        for command in (
            CONNECT,
            m.Helo("delian"),
            m.Mail(("<sender@example.com>",)),
            m.Rcpt(("<receiver@example.org>",)),
            m.Data(),
        ):
            sent = self.mta(command)
            for index in {a.index for a in sent if isinstance(a, ToChild) and a.expect_reply}:
                self.child(index, m.Continue())


def to_mta(actions: Sequence[Output]) -> list[m.ReplyMessage]:
    return [a.message for a in actions if isinstance(a, ToMta)]


def to_child(actions: Sequence[Output], index: int) -> list[m.CommandMessage]:
    return [a.message for a in actions if isinstance(a, ToChild) and a.index == index]


def commands(actions: Sequence[Output], index: int) -> list[m.CommandMessage]:
    """What ``index`` got, macros left out."""
    return [c for c in to_child(actions, index) if not isinstance(c, m.Macro)]


def closed(actions: Sequence[Output]) -> set[int]:
    return {a.index for a in actions if isinstance(a, CloseChild)}


def finished(actions: Sequence[Output]) -> list[ChildFinished]:
    return [a for a in actions if isinstance(a, ChildFinished)]


def session_end(actions: Sequence[Output]) -> SessionFinished:
    (end,) = [a for a in actions if isinstance(a, SessionFinished)]
    return end


def message(driver: Driver, headers: list[tuple[str, str]], body: bytes) -> list[Output]:
    out: list[Output] = []
    for name, value in headers:
        out += driver.mta(m.Header(name, value))
    out += driver.mta(m.EndOfHeaders())
    out += driver.mta(m.Body(body))
    return out


def run_child_through_eom(
    driver: Driver, index: int, *eom_replies: m.ReplyMessage
) -> list[Output]:
    """Continue every replayed command of child ``index``, then answer EOM."""
    out: list[Output] = []
    while True:
        pending = [
            a for a in driver.log if isinstance(a, ToChild) and a.index == index and a.expect_reply
        ]
        last = pending[-1]
        if isinstance(last.message, m.EndOfMessage):
            break
        out += driver.child(index, m.Continue())
    for reply in eom_replies:
        out += driver.child(index, reply)
    return out
