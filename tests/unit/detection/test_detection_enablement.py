"""What systemd's answers mean for installed/enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmd.detection.catalog import CATALOG, entry, markdown_table
from mmd.detection.units import UnitState, decide


def _state(
    file_state: str,
    load: str = "loaded",
    wanted_by_target: bool = False,
    socket_enabled: bool = False,
) -> UnitState:
    return UnitState(
        name="m.service",
        load_state=load,
        unit_file_state=file_state,
        wanted_by_target=wanted_by_target,
        socket_enabled=socket_enabled,
    )


@pytest.mark.parametrize("file_state", ["enabled", "enabled-runtime", "alias", "linked"])
def test_enabled_states(file_state: str) -> None:
    assert decide(_state(file_state)) == decide(_state(file_state, wanted_by_target=False))
    assert decide(_state(file_state)).enabled is True


@pytest.mark.parametrize("file_state", ["static", "indirect", "generated", ""])
def test_indirect_states_need_a_target_or_a_socket(file_state: str) -> None:
    assert decide(_state(file_state)).enabled is False
    assert decide(_state(file_state)).installed is True
    assert decide(_state(file_state, wanted_by_target=True)).enabled is True
    assert decide(_state(file_state, socket_enabled=True)).enabled is True


def test_masked_is_never_enabled() -> None:
    for state in (
        _state("masked", wanted_by_target=True, socket_enabled=True),
        _state("", load="masked", wanted_by_target=True),
        _state("masked-runtime"),
    ):
        result = decide(state)
        assert (result.installed, result.enabled, result.reason) == (True, False, "masked")


def test_disabled() -> None:
    assert decide(_state("disabled", wanted_by_target=True)).enabled is False
    # socket activation still starts it: systemd does, so do we
    assert decide(_state("disabled", socket_enabled=True)).enabled is True


def test_not_found() -> None:
    result = decide(_state("", load="not-found"))
    assert (result.installed, result.enabled) == (False, False)


def test_catalog_is_well_formed() -> None:
    names = [e.name for e in CATALOG]
    assert len(names) == len(set(names))
    for item in CATALOG:
        assert item.units and all(u.endswith(".service") for u in item.units)
        assert all(s.endswith(".socket") for s in item.socket_units)
        assert bool(item.config_files) == (item.parser is not None), item.name
        assert item.description
        for packaged in item.packaged_sockets:
            assert packaged.spec.startswith(("unix:/", "inet:", "inet6:"))
    assert entry("milter-greylist").default_conditions == (
        "S25R",
        "Remote Network",
        "Unauthenticated",
        "Trusted Domain",
        "Stress Notify",
    )
    for name in ("spamass-milter", "rspamd"):
        assert entry(name).default_conditions == ("Remote Network", "Unauthenticated", "No Stress")
    others = set(names) - {"milter-greylist", "spamass-milter", "rspamd"}
    assert all(entry(name).default_conditions == () for name in others)
    with pytest.raises(KeyError):
        entry("nonexistent")


def test_docs_table_matches_catalog() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "detection.md"
    text = docs.read_text()
    begin, end = "<!-- catalog-table:begin -->\n", "<!-- catalog-table:end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == markdown_table()
