"""One spelling of the journal's fields and events for the writers and the report (issue 15)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mmd import journal_schema
from mmd.journal_schema import Event, Field, extra, names
from mmd.report.aggregate import EVENTS, FIELDS

REPO = Path(__file__).resolve().parents[3]
MMD = REPO / "mmd"
FIELD_NAME = re.compile(r"^MMD_[A-Z0-9_]+$")


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_module_spells_a_field_name_itself() -> None:
    schema = Path(journal_schema.__file__).resolve()
    found = [
        f"{path.relative_to(REPO)}:{line}: {value}"
        for path in sorted(MMD.rglob("*.py"))
        if path.resolve() != schema
        for line, value in _string_constants(path)
        if FIELD_NAME.match(value)
    ]
    assert found == []


def test_no_module_builds_the_fields_extra_itself() -> None:
    """``extra={"fields": ...}`` is written by ``journal_schema.extra`` only (the journal
    handler in mmd/adapters/journal.py reads it back)."""
    found = []
    for path in sorted(MMD.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Dict) and any(
                isinstance(key, ast.Constant) and key.value == "fields" for key in node.keys
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == [f"mmd/journal_schema.py:{_extra_line()}"]


def _extra_line() -> int:
    source = Path(journal_schema.__file__).read_text().splitlines()
    return next(n for n, text in enumerate(source, 1) if 'return {"fields"' in text)


def test_the_report_reads_what_the_daemon_writes() -> None:
    assert set(EVENTS) <= set(names(Event))
    assert {name for name in FIELDS if not name.startswith("_")} <= set(names(Field))


def test_every_name_is_documented() -> None:
    docs = "\n".join(path.read_text() for path in sorted((REPO / "docs").glob("*.md")))
    missing = [name for name in (*names(Field), *names(Event)) if f"`{name}" not in docs
               and f"={name}" not in docs and f" {name}," not in docs]
    assert missing == []


def test_names_are_unique_and_the_values_written_unchanged() -> None:
    assert len(set(names(Field))) == len(names(Field))
    assert len(set(names(Event))) == len(names(Event))
    # a sample of what the report and the docs depend on, spelled out once more here
    assert (Field.EVENT, Field.ELAPSED, Event.SESSION_END, Event.HEADER_ADD) == (
        "MMD_EVENT", "MMD_ELAPSED", "session-end", "header-add"
    )
    assert extra(Event.RELOAD, {Field.STATUS: "failed"}) == {
        "fields": {"MMD_EVENT": "reload", "MMD_STATUS": "failed"}
    }
