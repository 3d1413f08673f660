"""One message of an SMTP session: the ``Transaction``.

The session makes a new transaction at MAIL and lets it go at ABORT and once a
message ended (as aiosmtpd's ``Envelope`` sits beside its ``Session``), so
nothing of one message can leak into the next. It holds what the MTA sent of the message
(sender and recipients as the conditions see them, headers, the body in a
``BodyStore``) and what the children made of it: the working headers, a new
body, a new sender, a quarantine. At the end it turns all that into the MTA's
answer: the fewest changes that give the same result, then the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from mmd.engine.applicability import SessionFacts
from mmd.engine.message import BodyStore, WorkingHeaders
from mmd.engine.verdict import FINAL_NEGATIVE, Verdict, reply_for
from mmd.protocol import messages as m

_NOBODY = -1


class Transaction:
    """What the MTA sent of one message and what the children changed in it."""

    __slots__ = (
        "_body_factory",
        "_pending",
        "_pending_child",
        "_working",
        "body",
        "body_replaced",
        "change_from",
        "headers",
        "quarantine",
        "recipients",
        "replacement",
        "saw_data",
        "spool_error",
    )

    def __init__(self, facts: SessionFacts, body_factory: Callable[[], BodyStore]) -> None:
        self._body_factory = body_factory
        # the MTA's message; the conditions see the same lists through ``facts``
        self.headers: list[tuple[str, str]] = []
        self.recipients: list[str] = []  # accepted so far, the current one last
        facts.sender = ""
        facts.recipients = self.recipients
        facts.headers = self.headers
        self.body: BodyStore | None = None
        self.saw_data = False
        self.spool_error = ""  # the body could not be kept: the message gets tempfail
        # what the children made of it (end-of-message); the working headers are made by
        # ``begin_replay``: most transactions (every idle connection's, and the one after
        # each message until MAIL) never get there
        self._working: WorkingHeaders | None = None
        self.replacement: BodyStore | None = None
        self.body_replaced = False
        self.change_from: m.ChangeFrom | None = None
        self.quarantine: m.Quarantine | None = None
        # a new body being received from one child, kept apart until its verdict
        self._pending: BodyStore | None = None
        self._pending_child = _NOBODY

    # ------------------------------------------------------------ the MTA's message

    def keep_body(self, chunk: bytes) -> str:
        """Store a body chunk; returns why it could not be kept (then the message is lost)."""
        if self.spool_error:
            return ""  # lost already, and said so once
        try:
            if self.body is None:
                self.body = self._body_factory()
            self.body.append(chunk)
        except OSError as error:  # a full or broken temporary folder
            self.spool_error = f"cannot keep the message body: {error}"
            return self.spool_error
        return ""

    def begin_replay(self) -> None:
        """End-of-message: the children's changes go to a fresh copy of the headers."""
        self._working = WorkingHeaders(self.headers)

    @property
    def working(self) -> WorkingHeaders:
        """The headers as the children changed them so far (made at first use)."""
        working = self._working
        if working is None:
            working = self._working = WorkingHeaders(self.headers)
        return working

    def current_body(self) -> BodyStore | None:
        """The body the next child sees: the last accepted new body, else the MTA's."""
        return self.replacement if self.body_replaced else self.body

    # ------------------------------------------------------------ the children's changes

    def hold_body(self, child: int, chunk: bytes) -> None:
        """Keep a piece of ``child``'s new body apart until its verdict; OSError: lost."""
        if self._pending_child != child or self._pending is None:
            self._pending_child = child
            self._pending = self._body_factory()
        self._pending.append(chunk)

    def settle_body(self, child: int, failed: bool) -> None:
        """``child`` is done with the message: its new body counts unless it failed."""
        pending = self._pending
        if pending is None or self._pending_child != child:
            return
        self._pending = None
        self._pending_child = _NOBODY
        if failed:
            pending.close()
            return
        if self.replacement is not None:
            self.replacement.close()
        self.replacement = pending
        self.body_replaced = True

    def apply(self, change: m.Modification, adapt: Callable[[str], str]) -> bool:
        """Apply a child's change; False for a recipient change, which the caller forwards
        as it comes. Raises ``HeaderError`` for a header that is not there."""
        working = self.working
        if isinstance(change, m.AddHeader):
            working.add(change.name, adapt(change.value))
        elif isinstance(change, m.InsertHeader):
            working.insert(change.index, change.name, adapt(change.value))
        elif isinstance(change, m.ChangeHeader):
            working.change(change.name, change.index, adapt(change.value) if change.value else "")
        elif isinstance(change, m.ChangeFrom):
            self.change_from = change
        elif isinstance(change, m.Quarantine):
            self.quarantine = change
        else:
            return False
        return True

    # ------------------------------------------------------------ the MTA's answer

    def answer(
        self, merged: Verdict, reply_codes: Sequence[m.ReplyCode], chunk_size: int
    ) -> Iterator[m.ReplyMessage]:
        """The MTA's end-of-message answer: net changes, then the verdict."""
        if merged in FINAL_NEGATIVE:
            yield reply_for(merged, reply_codes)
            return
        if self.change_from is not None:
            yield self.change_from
        yield from self.working.net_changes()
        if self.body_replaced and self.replacement is not None:
            empty = True
            for chunk in self.replacement.chunks(chunk_size):
                empty = False
                yield m.ReplaceBody(chunk)
            if empty:
                yield m.ReplaceBody(b"")
        if self.quarantine is not None:
            yield self.quarantine
        yield m.Accept() if merged is Verdict.ACCEPT else m.Continue()

    def close(self) -> None:
        """Give back the message's stores: a spooled body returns its file at once."""
        for store in (self.body, self.replacement, self._pending):
            if store is not None:
                store.close()
        self.body = self.replacement = self._pending = None
