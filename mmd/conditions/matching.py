"""Name, domain and address lists shared by the conditions.

One spelling for every list, so an operator learns it once:

- ``example.com``   that name exactly (case-insensitive, a trailing dot ignored)
- ``.example.com``  any name ending in ``.example.com`` (subdomains, not the name itself)
- ``/regex/``       a Python regular expression searched in the name, case-insensitive
- ``user@example.com`` (address lists only) that address exactly, case-insensitive

Everything is normalised and compiled when the list is built, so matching a
session costs a dict lookup, one ``str.endswith`` and the regexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mmd.conditions.errors import ConditionConfigError


def is_regex_entry(entry: str) -> bool:
    return len(entry) >= 3 and entry.startswith("/") and entry.endswith("/")


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a user regex; all user regexes in conditions ignore case."""
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"bad regular expression /{pattern}/: {error}") from None


def normalize_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def check_name_entry(entry: str) -> None:
    """Raise ValueError when ``entry`` is not a valid name-list entry."""
    if is_regex_entry(entry):
        compile_regex(entry[1:-1])
        return
    if not entry or any(c.isspace() for c in entry) or "/" in entry:
        raise ValueError(f"bad entry {entry!r}: expected NAME, .SUFFIX or /REGEX/")
    if entry.startswith(".") and not normalize_name(entry[1:]):
        raise ValueError(f"bad entry {entry!r}: empty suffix")
    if "@" in entry:
        raise ValueError(f"bad entry {entry!r}: a name list holds no addresses")


def check_address_entry(entry: str) -> None:
    """Raise ValueError when ``entry`` is not a valid address-list entry."""
    if not is_regex_entry(entry) and "@" in entry:
        local, _, domain = entry.partition("@")
        if not local or not domain or any(c.isspace() for c in entry) or "@" in domain:
            raise ValueError(f"bad entry {entry!r}: expected USER@DOMAIN")
        return
    check_name_entry(entry)


class NameMatcher:
    """A list of host or domain names (see the module docstring)."""

    __slots__ = ("_exact", "_regexes", "_suffix_entries", "_suffixes", "entries")

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries: tuple[str, ...] = tuple(entries)
        self._exact: dict[str, str] = {}
        suffixes: list[tuple[str, str]] = []
        self._regexes: list[tuple[re.Pattern[str], str]] = []
        for entry in self.entries:
            check_name_entry(entry)
            if is_regex_entry(entry):
                self._regexes.append((compile_regex(entry[1:-1]), entry))
            elif entry.startswith("."):
                suffixes.append(("." + normalize_name(entry[1:]), entry))
            else:
                self._exact.setdefault(normalize_name(entry), entry)
        self._suffixes = tuple(suffix for suffix, _ in suffixes)
        self._suffix_entries = tuple(suffixes)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, name: str) -> str | None:
        """The entry that matches ``name``, or None."""
        normalized = name.lower().rstrip(".")
        entry = self._exact.get(normalized)
        if entry is not None:
            return entry
        if self._suffixes and normalized.endswith(self._suffixes):
            for suffix, entry in self._suffix_entries:
                if normalized.endswith(suffix):
                    return entry
        for regex, entry in self._regexes:
            if regex.search(normalized):
                return entry
        return None


def bare_address(address: str) -> str:
    """``<user@example.com>`` -> ``user@example.com`` (the MTA sends brackets)."""
    if address[:1] == "<" and address[-1:] == ">" and address.find(">") == len(address) - 1:
        return address[1:-1]
    address = address.strip()
    if address.startswith("<"):
        end = address.find(">")
        address = address[1:end] if end >= 0 else address[1:]
    return address


def domain_of(address: str) -> str:
    """The lower-case domain of an envelope address, "" for ``<>`` or no domain."""
    bare = bare_address(address)
    at = bare.rfind("@")
    if at < 0:
        return ""
    return bare[at + 1 :].lower().rstrip(".")


class AddressMatcher:
    """A list of addresses, domains and regexes over whole addresses.

    Results are remembered per address (bounded): the same recipients come
    back in every message, and Restrict Accounts asks again at DATA.
    """

    __slots__ = ("_addresses", "_cache", "_domains", "_regexes", "cache_size", "entries")

    def __init__(self, entries: Iterable[str], *, cache_size: int = 4096) -> None:
        self.entries: tuple[str, ...] = tuple(entries)
        self.cache_size = cache_size
        self._addresses: dict[str, str] = {}
        domains: list[str] = []
        self._regexes: list[tuple[re.Pattern[str], str]] = []
        for entry in self.entries:
            check_address_entry(entry)
            if is_regex_entry(entry):
                self._regexes.append((compile_regex(entry[1:-1]), entry))
            elif "@" in entry:
                self._addresses.setdefault(bare_address(entry).lower(), entry)
            else:
                domains.append(entry)
        self._domains = NameMatcher(domains)
        self._cache: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, address: str) -> str | None:
        """The entry that matches the envelope ``address``, or None."""
        try:
            return self._cache[address]
        except KeyError:
            pass
        entry = self._find(address)
        if len(self._cache) >= self.cache_size:
            if not self.cache_size:
                return entry
            self._cache.clear()
        self._cache[address] = entry
        return entry

    def _find(self, address: str) -> str | None:
        bare = bare_address(address)
        lowered = bare.lower()
        entry = self._addresses.get(lowered)
        if entry is not None:
            return entry
        at = lowered.rfind("@")
        if at >= 0 and self._domains:
            entry = self._domains.find(lowered[at + 1 :])
            if entry is not None:
                return entry
        for regex, entry in self._regexes:
            if regex.search(bare):
                return entry
        return None


def read_list_file(path: str | Path) -> list[tuple[str, str]]:
    """Entries of a list file as ``(FILE:LINE, entry)``.

    One entry a line; blank lines and lines starting with ``#`` are skipped.
    A regex line may carry spaces inside its slashes. Reading happens when the
    conditions are built (start and reload), never per session.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConditionConfigError(str(path), f"cannot read list file: {error}") from None
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entries.append((f"{path}:{number}", stripped))
    return entries
