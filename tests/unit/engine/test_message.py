"""Header bookkeeping and the net difference sent to the MTA."""

from __future__ import annotations

import io

import pytest

from mmd.adapters.spool import SpooledBody
from mmd.engine.message import HeaderError, MemoryBody, WorkingHeaders
from mmd.protocol import messages as m


def apply_to(
    original: list[tuple[str, str]], changes: list[m.Modification]
) -> list[tuple[str, str]]:
    """What an MTA does with the changes, one after another (an independent model)."""
    headers = list(original)
    for change in changes:
        if isinstance(change, m.AddHeader):
            headers.append((change.name, change.value))
        elif isinstance(change, m.InsertHeader):
            headers.insert(change.index, (change.name, change.value))
        elif isinstance(change, m.ChangeHeader):
            positions = [i for i, (n, _) in enumerate(headers) if n.lower() == change.name.lower()]
            position = positions[change.index - 1]
            if change.value:
                headers[position] = (headers[position][0], change.value)
            else:
                del headers[position]
    return headers


ORIGINAL = [("Received", "r1"), ("Subject", "s"), ("Received", "r2"), ("X-A", "a")]


@pytest.mark.parametrize(
    "edit",
    [
        lambda w: w.add("X-New", "1"),
        lambda w: w.insert(0, "X-Top", "t"),
        lambda w: w.insert(2, "X-Mid", "m"),
        lambda w: w.change("Received", 2, ""),
        lambda w: (w.change("Received", 1, ""), w.change("Received", 1, "")),
        lambda w: w.change("Subject", 1, "[SPAM] s"),
        lambda w: (w.insert(1, "Received", "r0"), w.change("Received", 3, "")),
        lambda w: (w.add("X-B", "b"), w.change("X-B", 1, "bb"), w.change("X-A", 1, "")),
        lambda w: (w.insert(0, "X-1", "1"), w.insert(0, "X-2", "2"), w.add("X-3", "3")),
    ],
)
def test_net_changes_reproduce_the_working_list(edit: object) -> None:
    working = WorkingHeaders(list(ORIGINAL))
    edit(working)  # type: ignore[operator]
    assert apply_to(ORIGINAL, working.net_changes()) == working.items()


def test_unchanged_value_gives_no_change() -> None:
    working = WorkingHeaders(list(ORIGINAL))
    working.change("Subject", 1, "s")
    assert working.net_changes() == []


def test_deleting_a_missing_header_is_an_error() -> None:
    with pytest.raises(HeaderError):
        WorkingHeaders([]).change("X-Nope", 1, "")


def test_changing_a_missing_header_adds_it() -> None:
    working = WorkingHeaders([])
    working.change("X-New", 1, "v")
    assert working.net_changes() == [m.AddHeader("X-New", "v")]


@pytest.mark.parametrize("store", [MemoryBody, lambda: SpooledBody(8)])
def test_body_stores_give_back_what_they_got_in_chunks(store: object) -> None:
    body = store()  # type: ignore[operator]
    for piece in (b"hello ", b"spooled ", b"world"):
        body.append(piece)
    assert body.size == 19
    assert list(body.chunks(7)) == [b"hello s", b"pooled ", b"world"]
    body.close()


def test_a_limit_of_zero_keeps_no_body_in_memory() -> None:
    body = SpooledBody(0)
    body.append(b"x" * 100)
    assert not isinstance(body._file._file, io.BytesIO)  # type: ignore[attr-defined]
    assert list(body.chunks(64)) == [b"x" * 64, b"x" * 36]
    body.close()
