"""Transaction on its own: one message's store, recipients, changes and the MTA's answer."""

from __future__ import annotations

import errno

import pytest

from mmd.engine.applicability import SessionFacts
from mmd.engine.message import BodyStore, HeaderError, MemoryBody
from mmd.engine.transaction import Transaction
from mmd.engine.verdict import Verdict
from mmd.protocol import messages as m


class CountingBodies:
    """A body factory that remembers every store it made."""

    def __init__(self) -> None:
        self.made: list[MemoryBody] = []

    def __call__(self) -> BodyStore:
        body = MemoryBody()
        self.made.append(body)
        return body


def same(value: str) -> str:
    return value


def test_the_conditions_see_the_transactions_own_lists() -> None:
    facts = SessionFacts(sender="old", recipients=["old"], headers=[("Old", "1")])
    transaction = Transaction(facts, MemoryBody)
    assert (facts.sender, facts.recipients, facts.headers) == ("", [], [])
    transaction.recipients.append("a@example.org")
    transaction.headers.append(("Subject", "hi"))
    assert facts.recipients == ["a@example.org"]
    assert facts.headers == [("Subject", "hi")]


def test_the_body_is_kept_in_one_store() -> None:
    bodies = CountingBodies()
    transaction = Transaction(SessionFacts(), bodies)
    assert transaction.current_body() is None
    assert transaction.keep_body(b"one ") == ""
    assert transaction.keep_body(b"two") == ""
    body = transaction.current_body()
    assert body is not None and len(bodies.made) == 1
    assert list(body.chunks(100)) == [b"one two"]


def test_a_body_that_cannot_be_kept_is_said_once() -> None:
    def full() -> BodyStore:
        raise OSError(errno.ENOSPC, "No space left on device")

    transaction = Transaction(SessionFacts(), full)
    assert "No space left on device" in transaction.keep_body(b"x")
    assert transaction.keep_body(b"y") == ""
    assert transaction.spool_error


def test_header_changes_and_the_net_answer() -> None:
    transaction = Transaction(SessionFacts(), MemoryBody)
    transaction.headers.extend([("Subject", "hi"), ("X-Old", "1")])
    transaction.begin_replay()
    for change in (m.AddHeader("X-Spam", "yes"), m.ChangeHeader(1, "X-Old", ""),
                   m.ChangeFrom("<new@example.com>"), m.Quarantine("held")):
        assert transaction.apply(change, same)
    # recipients are not the transaction's to keep: the caller forwards them
    assert not transaction.apply(m.AddRecipient("<b@example.org>"), same)
    with pytest.raises(HeaderError):
        transaction.apply(m.ChangeHeader(1, "X-None", ""), same)
    answer = list(transaction.answer(Verdict.CONTINUE, [], 1000))
    assert answer == [
        m.ChangeFrom("<new@example.com>"),
        m.ChangeHeader(1, "X-Old", ""),
        m.AddHeader("X-Spam", "yes"),
        m.Quarantine("held"),
        m.Continue(),
    ]


def test_header_values_go_through_the_leading_space_adapter() -> None:
    transaction = Transaction(SessionFacts(), MemoryBody)
    transaction.begin_replay()
    transaction.apply(m.AddHeader("X", "v"), lambda value: " " + value)
    assert transaction.working.items() == [("X", " v")]


def test_a_refusal_answers_with_the_childs_own_code_and_no_changes() -> None:
    transaction = Transaction(SessionFacts(), MemoryBody)
    transaction.begin_replay()
    transaction.apply(m.AddHeader("X", "1"), same)
    code = m.ReplyCode("550 5.7.1 spam")
    assert list(transaction.answer(Verdict.REJECT, [code], 1000)) == [code]


def test_a_new_body_counts_once_its_child_did_not_fail() -> None:
    bodies = CountingBodies()
    transaction = Transaction(SessionFacts(), bodies)
    transaction.keep_body(b"original")
    transaction.hold_body(0, b"new ")
    transaction.hold_body(0, b"body")
    transaction.settle_body(1, failed=False)  # another child: not its body
    assert not transaction.body_replaced
    transaction.settle_body(0, failed=False)
    assert transaction.body_replaced
    current = transaction.current_body()
    assert current is not None and list(current.chunks(3)) == [b"new", b" bo", b"dy"]
    assert list(transaction.answer(Verdict.ACCEPT, [], 4)) == [
        m.ReplaceBody(b"new "), m.ReplaceBody(b"body"), m.Accept()]

    transaction.hold_body(1, b"lost")
    transaction.settle_body(1, failed=True)
    assert list(bodies.made[2].chunks(10)) == []  # closed: the failed child's body is dropped
    assert current is transaction.current_body()


def test_an_empty_new_body_is_still_sent() -> None:
    transaction = Transaction(SessionFacts(), MemoryBody)
    transaction.hold_body(0, b"")
    transaction.settle_body(0, failed=False)
    assert list(transaction.answer(Verdict.CONTINUE, [], 10)) == [
        m.ReplaceBody(b""), m.Continue()]


def test_closing_gives_back_every_store() -> None:
    bodies = CountingBodies()
    transaction = Transaction(SessionFacts(), bodies)
    transaction.keep_body(b"original")
    transaction.hold_body(0, b"pending")
    transaction.close()
    assert [body.size for body in bodies.made] == [8, 7]
    assert all(list(body.chunks(10)) == [] for body in bodies.made)
    assert transaction.current_body() is None
