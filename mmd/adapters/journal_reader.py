"""Reading mmd's entries back from the journal, streaming, from where the last run stopped.

The only module that runs journalctl. ``journalctl -o export`` prints each entry as
``NAME=value`` lines and a blank line, with its ``__CURSOR``; the caller keeps the last cursor
and passes it as ``--after-cursor`` next time. Export, not JSON: journalctl spends half the CPU
on it (measured, bench/report.py) and it is the slower side of the pipe. Values with newlines
or control characters come as ``NAME`` newline, a 64-bit little-endian length, the bytes and a
newline. Only the fields the report reads are printed (``--output-fields``), and the match
(same field repeated = OR, different fields = AND) leaves out everything but mmd's statistics
entries, so journalctl does the filtering and Python never holds more than one entry.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mmd.adapters.journal import SYSLOG_IDENTIFIER
from mmd.journal_schema import Field

JOURNALCTL = "journalctl"


class JournalReadError(RuntimeError):
    pass


@dataclass(frozen=True)
class JournalQuery:
    after_cursor: str | None = None
    since: str | None = None  # only used without a cursor
    directory: Path | None = None  # journalctl -D (tests, copied journals)
    events: Sequence[str] = ()
    fields: Sequence[str] = ()
    identifier: str = SYSLOG_IDENTIFIER


def command(query: JournalQuery) -> list[str]:
    # no --quiet: it also hides "No journal files were found.", which must reach the user
    args = [JOURNALCTL, "--output=export", "--no-pager"]
    if query.directory is not None:
        args.append(f"--directory={query.directory}")
    if query.after_cursor:
        args.append(f"--after-cursor={query.after_cursor}")
    elif query.since:
        args.append(f"--since={query.since}")
    if query.fields:
        args.append("--output-fields=" + ",".join(query.fields))
    args.append(f"SYSLOG_IDENTIFIER={query.identifier}")
    args.extend(f"{Field.EVENT}={event}" for event in query.events)
    return args


NO_FILES = "No journal files were found."
SYSTEM_JOURNALS = (Path("/var/log/journal"), Path("/run/log/journal"))


def journal_files_exist(directory: Path | None) -> bool:
    """journalctl -o export says nothing when there is no journal at all: look ourselves."""
    folders = SYSTEM_JOURNALS if directory is None else (directory,)
    for folder in folders:
        try:
            if any(folder.rglob("*.journal")) or any(folder.rglob("*.journal~")):
                return True
        except OSError:
            continue
    return False


def _location(query: JournalQuery) -> str:
    if query.directory is not None:
        return f"the journal files in {query.directory}"
    return "the system journal"


def describe(query: JournalQuery) -> str:
    """Where the entries come from, in words (for the summary and the page)."""
    return f"{_location(query)} (SYSLOG_IDENTIFIER={query.identifier})"


def parse_export(stream: IO[bytes]) -> Iterator[dict[str, str]]:
    """Entries of journal export format (systemd's JOURNAL_EXPORT_FORMATS)."""
    entry: dict[str, str] = {}
    readline = stream.readline
    while True:
        line = readline()
        if not line:
            break
        if line == b"\n":
            if entry:
                yield entry
                entry = {}
            continue
        name, separator, value = line.partition(b"=")
        if separator:
            entry[name.decode()] = value[:-1].decode(errors="replace")
            continue
        size_bytes = stream.read(8)
        if len(size_bytes) != 8:
            raise JournalReadError("journal export cut short in a binary field")
        (size,) = struct.unpack("<Q", size_bytes)
        data = stream.read(size + 1)  # and the closing newline
        if len(data) != size + 1:
            raise JournalReadError("journal export cut short in a binary field")
        entry[line[:-1].decode()] = data[:-1].decode(errors="replace")
    if entry:
        yield entry


@contextmanager
def read_entries(
    query: JournalQuery, notes: list[str] | None = None
) -> Iterator[Iterator[dict[str, Any]]]:
    """Entries in journal order as dicts of strings. Raises JournalReadError when journalctl
    fails (bad cursor, unreadable journal) or finds no journal file at all, after the entries
    it did print; its other messages (e.g. the hint about missing group rights) go to
    ``notes``."""
    # a file, not a pipe: a full pipe would stall journalctl while we read stdout
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    try:
        process = subprocess.Popen(
            command(query), stdout=subprocess.PIPE, stderr=stderr, bufsize=1 << 20
        )
    except OSError as error:
        stderr.close()
        raise JournalReadError(f"cannot run {JOURNALCTL}: {error}") from error
    finished = False

    def entries() -> Iterator[dict[str, Any]]:
        nonlocal finished
        assert process.stdout is not None
        count = 0
        for entry in parse_export(process.stdout):
            count += 1
            yield entry
        code = process.wait()
        finished = True
        stderr.seek(0)
        error = stderr.read().decode(errors="replace").strip()
        if code != 0:
            raise JournalReadError(f"journalctl failed (exit status {code}): {error}")
        if NO_FILES in error or (count == 0 and not journal_files_exist(query.directory)):
            where = ("/var/log/journal or /run/log/journal" if query.directory is None
                     else str(query.directory))
            raise JournalReadError(
                f"no journal to read: journalctl found no journal files in {where} "
                "(is journald running, and does it keep a journal: Storage=?). "
                "Without journald, read the daemon's log with --from-file"
            )
        if notes is not None and error:
            notes.extend(line for line in error.splitlines() if line.strip())

    try:
        yield entries()
    finally:
        if not finished:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
        stderr.close()
