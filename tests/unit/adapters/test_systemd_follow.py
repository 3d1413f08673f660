"""Following systemd: which changes count, and how a burst becomes one refresh."""

from __future__ import annotations

import asyncio

from mmd.adapters.systemd_follow import SystemdFollower, catalogued_units, unit_from_path


def test_unit_names_from_object_paths() -> None:
    assert unit_from_path("/org/freedesktop/systemd1/unit/opendkim_2eservice") == (
        "opendkim.service"
    )
    assert unit_from_path("/org/freedesktop/systemd1/unit/spamass_2dmilter_2eservice") == (
        "spamass-milter.service"
    )


def test_the_catalogued_units_are_followed() -> None:
    units = catalogued_units()
    assert {"opendkim.service", "clamav-milter.service", "spamass-milter.service"} <= units


def run_burst(events: list[tuple[float, str]], quiet: float, longest: float) -> list[str]:
    """Feed (delay, unit) events; the refreshes' reasons, in order."""
    refreshes: list[str] = []

    async def refresh(why: str) -> None:
        refreshes.append(why)

    async def feed() -> None:
        follower = SystemdFollower(refresh, units={"opendkim.service"}, quiet=quiet,
                                   longest=longest)  # fmt: skip
        for delay, unit in events:
            await asyncio.sleep(delay)
            follower.unit_changed(unit)
        await asyncio.sleep(longest + quiet + 0.1)
        follower.close()

    asyncio.run(feed())
    return refreshes


def test_a_burst_is_one_refresh() -> None:
    burst = [(0.0, "opendkim.service")] + [(0.01, "opendkim.service"), (0.0, "")] * 20
    assert run_burst(burst, quiet=0.1, longest=1.0) == ["opendkim.service, unit files"]


def test_a_long_burst_refreshes_at_least_every_longest() -> None:
    burst = [(0.05, "opendkim.service")] * 30  # 1.5 s of changes, never quiet
    refreshes = run_burst(burst, quiet=0.2, longest=0.5)
    assert 2 <= len(refreshes) <= 4, refreshes


def test_other_units_do_not_count() -> None:
    assert run_burst([(0.0, "cron.service"), (0.0, "ssh.service")], 0.05, 0.2) == []
