"""The message as the MTA sent it, as children changed it, and the net difference.

The engine keeps one copy of the message per session: headers in memory, the
body in a ``BodyStore`` (the daemon's, ``mmd.adapters.spool.SpooledBody``,
spills to disk past a limit, so a 50 MB message is never held once per child).
Children's changes are applied to a working header list in which every entry
remembers which original header it was; at end-of-message the difference to
the original is turned into the fewest MTA changes that produce the same result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from mmd.protocol import messages as m


class BodyStore(Protocol):
    """Where a message body is kept: the engine never needs it whole in memory."""

    def append(self, chunk: bytes) -> None:
        """Add a chunk at the end."""
        ...

    def chunks(self, size: int) -> Iterator[bytes]:
        """Read back from the start in pieces of at most ``size`` bytes."""
        ...

    @property
    def size(self) -> int:
        """Bytes kept so far."""
        ...

    def close(self) -> None:
        """Give back what the body holds (memory, a file)."""
        ...


class MemoryBody:
    """Enough for tests and small messages."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def append(self, chunk: bytes) -> None:
        self._parts.append(chunk)
        self._size += len(chunk)

    def chunks(self, size: int) -> Iterator[bytes]:
        data = b"".join(self._parts)
        for start in range(0, len(data), size):
            yield data[start : start + size]

    @property
    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._parts = []


@dataclass(slots=True)
class HeaderEntry:
    """One header of the working list."""

    name: str
    value: str
    original: int | None  # position in the MTA's header list, None for an added header
    changed: bool = False


class HeaderError(ValueError):
    """A child named a header that is not there; the change is ignored and logged."""


class WorkingHeaders:
    """The header list as changed so far, each entry remembering its original place."""

    __slots__ = ("entries", "original")

    def __init__(self, original: list[tuple[str, str]]) -> None:
        self.original = original
        self.entries = [HeaderEntry(n, v, i) for i, (n, v) in enumerate(original)]

    def items(self) -> list[tuple[str, str]]:
        """The headers as they stand now, in order."""
        return [(e.name, e.value) for e in self.entries]

    def add(self, name: str, value: str) -> None:
        """SMFIR_ADDHEADER: append at the end."""
        self.entries.append(HeaderEntry(name, value, None))

    def insert(self, index: int, name: str, value: str) -> None:
        """SMFIR_INSHEADER: insert at ``index`` (clamped to the list)."""
        index = max(0, min(index, len(self.entries)))
        self.entries.insert(index, HeaderEntry(name, value, None))

    def change(self, name: str, occurrence: int, value: str) -> None:
        """``occurrence`` counts from 1 among headers called ``name``; empty value deletes."""
        wanted = name.lower()
        seen = 0
        for position, entry in enumerate(self.entries):
            if entry.name.lower() == wanted:
                seen += 1
                if seen == max(occurrence, 1):
                    if value == "":
                        del self.entries[position]
                    else:
                        entry.value = value
                        entry.changed = True
                    return
        if value != "":
            # libmilter semantics: changing a header that is not there adds it
            self.add(name, value)
            return
        raise HeaderError(f"no header {name!r} number {occurrence} to delete")

    def net_changes(self) -> list[m.Modification]:
        """MTA changes turning the original list into the current one.

        Order matters because the MTA applies them one by one: value changes
        first (original occurrence numbers are still valid), then deletions
        last-to-first, then new headers top to bottom (each insert index is
        right once the earlier ones are in).
        """
        changes: list[m.Modification] = []
        occurrence = _occurrences(self.original)
        kept = {e.original for e in self.entries if e.original is not None}
        for entry in self.entries:
            if entry.original is not None and entry.changed:
                name, value = self.original[entry.original]
                if value != entry.value:
                    changes.append(m.ChangeHeader(occurrence[entry.original], name, entry.value))
        for index in range(len(self.original) - 1, -1, -1):
            if index not in kept:
                name, _ = self.original[index]
                changes.append(m.ChangeHeader(occurrence[index], name, ""))
        last_original = max(
            (p for p, e in enumerate(self.entries) if e.original is not None), default=-1
        )
        for position, entry in enumerate(self.entries):
            if entry.original is None:
                if position > last_original:
                    changes.append(m.AddHeader(entry.name, entry.value))
                else:
                    changes.append(m.InsertHeader(position, entry.name, entry.value))
        return changes


def _occurrences(headers: list[tuple[str, str]]) -> list[int]:
    """For each header, its 1-based number among headers of the same name."""
    counts: dict[str, int] = {}
    result = []
    for name, _ in headers:
        key = name.lower()
        counts[key] = counts.get(key, 0) + 1
        result.append(counts[key])
    return result
