from __future__ import annotations

from pathlib import Path

import pytest

from mmd.conditions.errors import ConditionConfigError
from mmd.conditions.matching import (
    AddressMatcher,
    NameMatcher,
    bare_address,
    domain_of,
    read_list_file,
)

# (entries, name, entry expected to match or None)
NAME_CASES: list[tuple[list[str], str, str | None]] = [
    (["example.com"], "example.com", "example.com"),
    (["example.com"], "EXAMPLE.com.", "example.com"),
    (["example.com"], "mx.example.com", None),
    ([".example.com"], "mx.example.com", ".example.com"),
    ([".example.com"], "example.com", None),
    ([".example.com"], "badexample.com", None),
    (["/^mx[0-9]+\\./"], "MX12.example.com", "/^mx[0-9]+\\./"),
    (["/^mx[0-9]+\\./"], "amx12.example.com", None),
    (["/example/"], "www.example.net", "/example/"),  # searched, not anchored
    (["a.example", ".b.example", "/c/"], "x.b.example", ".b.example"),
    ([], "example.com", None),
]


@pytest.mark.parametrize(("entries", "name", "entry"), NAME_CASES)
def test_name_matcher(entries: list[str], name: str, entry: str | None) -> None:
    assert NameMatcher(entries).find(name) == entry


ADDRESS_CASES: list[tuple[list[str], str, str | None]] = [
    (["alice@example.com"], "<Alice@Example.COM>", "alice@example.com"),
    (["alice@example.com"], "<bob@example.com>", None),
    (["example.com"], "<bob@example.com>", "example.com"),
    (["example.com"], "<bob@sub.example.com>", None),
    ([".example.com"], "bob@sub.example.com", ".example.com"),
    (["/^postmaster@/"], "<PostMaster@x.example>", "/^postmaster@/"),
    (["example.com"], "<>", None),
    (["example.com"], "postmaster", None),
]


@pytest.mark.parametrize(("entries", "address", "entry"), ADDRESS_CASES)
def test_address_matcher(entries: list[str], address: str, entry: str | None) -> None:
    assert AddressMatcher(entries).find(address) == entry


@pytest.mark.parametrize("entry", ["", "two words", ".", "/(/", "a@b.example", "//"])
def test_bad_name_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        NameMatcher([entry])


@pytest.mark.parametrize("entry", ["@example.com", "alice@", "a@b@c", "a b@c.example"])
def test_bad_address_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        AddressMatcher([entry])


@pytest.mark.parametrize(
    ("address", "bare", "domain"),
    [
        ("<a@Example.COM>", "a@Example.COM", "example.com"),
        ("a@example.com", "a@example.com", "example.com"),
        (" <a@example.com> ", "a@example.com", "example.com"),
        ("<>", "", ""),
        ("<postmaster>", "postmaster", ""),
        ('<"odd@local"@example.com>', '"odd@local"@example.com', "example.com"),
    ],
)
def test_addresses(address: str, bare: str, domain: str) -> None:
    assert bare_address(address) == bare
    assert domain_of(address) == domain


def test_list_file(tmp_path: Path) -> None:
    path = tmp_path / "x.list"
    path.write_text("# comment\n\n  gmail.com  \n   # indented comment\n/a b/\n", encoding="utf-8")
    assert read_list_file(path) == [(f"{path}:3", "gmail.com"), (f"{path}:5", "/a b/")]


def test_list_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.list"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConditionConfigError, match="cannot read list file"):
        read_list_file(path)
