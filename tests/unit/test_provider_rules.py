"""Provider rules that need no storage: status, rating, uptime, stake, ids."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.providers import (
    MIN_STAKE_MICRO_BLOCK,
    UPTIME_SLOT_SECONDS,
    UPTIME_WINDOW_SLOTS,
    EnergyType,
    Location,
    Provider,
    ProviderStatus,
    ReadingWindow,
    provider_id_for,
)

NOW = 1_767_225_600


def provider(**overrides: object) -> Provider:
    base = Provider(
        provider_id=provider_id_for("alice.theblock", "meter_1"),
        owner="alice.theblock",
        display_name="Roof",
        energy_type=EnergyType.SOLAR,
        jurisdiction="US_CA",
        location=Location(37_774_900, -122_419_400),
        capacity_wh=5_000,
        price_micro_block_per_kwh=80_000,
        stake_micro_block=MIN_STAKE_MICRO_BLOCK,
        meter_address="meter_1",
        meter_public_key="00" * 32,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_status_follows_stake_then_pause() -> None:
    assert provider().status == ProviderStatus.ACTIVE
    assert provider(paused=True).status == ProviderStatus.PAUSED
    below = provider(stake_micro_block=MIN_STAKE_MICRO_BLOCK - 1, paused=True)
    assert below.status == ProviderStatus.SUSPENDED  # suspension outranks a pause


def test_rating_is_the_share_of_clean_settlements_out_of_five() -> None:
    assert provider().rating is None
    assert provider(settled_purchases=10).rating == 5.0
    assert provider(settled_purchases=10, upheld_disputes=3).rating == 3.5
    assert provider(settled_purchases=2, upheld_disputes=5).rating == 0.0


def test_uptime_counts_the_last_96_quarter_hours() -> None:
    current = NOW // 900
    assert provider().uptime_percent(NOW) is None
    slots = frozenset(range(current - 47, current + 1))  # the last 12 hours
    assert provider(reading_window=ReadingWindow.of(slots)).uptime_percent(NOW) == 50.0
    stale = frozenset({current - 96, current - 200})
    assert provider(reading_window=ReadingWindow.of(stale)).uptime_percent(NOW) == 0.0


def test_restaking_bumps_the_version_and_never_goes_negative() -> None:
    changed = provider().restaked(-MIN_STAKE_MICRO_BLOCK, now=NOW)
    assert (changed.stake_micro_block, changed.version) == (0, 2)
    with pytest.raises(ValueError, match="negative"):
        changed.restaked(-1, now=NOW)


def test_provider_ids_are_stable_and_distinct() -> None:
    assert provider_id_for("a.theblock", "m1") == provider_id_for("a.theblock", "m1")
    assert provider_id_for("a.theblock", "m1") != provider_id_for("b.theblock", "m1")
    assert provider_id_for("a.theblock", "m1").startswith("energy-0x")


@given(st.lists(st.integers(1, 3 * UPTIME_SLOT_SECONDS * 1000), max_size=300))
def test_the_reading_window_keeps_the_slots_of_the_last_day_of_readings(gaps: list[int]) -> None:
    """Readings come in order; the window moved by each holds exactly the slots
    with a reading among the 96 ending at the newest, and survives its two
    numbers (what the provider's item stores)."""
    window, at_ms, slots = ReadingWindow(), 1_767_225_600_000, set()
    for gap in gaps:
        at_ms += gap
        window = window.with_reading(at_ms)
        slots.add(at_ms // 1000 // UPTIME_SLOT_SECONDS)
        newest = max(slots)
        expected = {s for s in slots if newest - UPTIME_WINDOW_SLOTS < s}
        assert window.slots() == expected
        assert window.bits < 1 << UPTIME_WINDOW_SLOTS
        assert ReadingWindow.of(window.slots()) == window
