"""The provider registry through the API, on both storage adapters."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.domain.providers import provider_id_for
from energy_client.rpc_client import RpcError
from tests.support import BLOCK, MarketHarness, registration_params


def test_registering_moves_the_stake_from_balance_to_provider(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=12_000)
    provider = market.provider(alice, meter_address="solar_meter_alice")
    assert provider["provider_id"] == provider_id_for("alice.theblock", "solar_meter_alice")
    assert provider["status"] == "active"
    assert provider["stake"] == 10_000 * BLOCK
    assert provider["price_per_kwh"] == Decimal("0.08")
    assert provider["price_micro_block_per_kwh"] == 80_000
    assert provider["capacity_wh"] == 15_000_000
    assert provider["latitude"] == Decimal("37.7749")
    assert provider["longitude"] == Decimal("-122.4194")
    assert provider["rating"] is None and provider["uptime_percent"] is None
    account = market.client.call("energy.getAccount", {"name": "alice.theblock"})
    assert account["balance"] == 2_000 * BLOCK
    assert account["stake"] == 10_000 * BLOCK
    assert account["roles"] == ["buyer", "provider"]
    assert account["providers"] == [provider["provider_id"]]
    assert (
        market.client.call("energy.getProvider", {"provider_id": provider["provider_id"]})
        == provider
    )


def test_registration_refusals_change_nothing(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=5_000)
    bob = market.funded_account("bob.theblock", block=5_000)
    market.provider(bob, meter_address="taken_meter", stake=1_000 * BLOCK)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stake": 999 * BLOCK}, "insufficient_stake"),
        ({"stake": 6_000 * BLOCK}, "insufficient_balance"),
        ({"meter_address": "taken_meter", "stake": 1_000 * BLOCK}, "already_exists"),
    ]
    for overrides, reason in cases:
        before = market.snapshot()
        with pytest.raises(RpcError) as refused:
            market.provider(alice, **overrides)
        assert refused.value.reason == reason, overrides
        assert market.snapshot() == before


def test_registering_twice_finds_the_first_registration(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=30_000)
    params = registration_params("alice.theblock", meter_address="solar_meter_twice")
    market.client.call("energy.registerProvider", params, alice)
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.registerProvider", params, alice)
    assert refused.value.reason == "already_exists"
    account = market.client.call("energy.getAccount", {"name": "alice.theblock"})
    assert account["balance"] == 20_000 * BLOCK


def test_the_owner_updates_price_capacity_and_pauses(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=10_000)
    pid = market.provider(alice)["provider_id"]
    updated = market.client.call(
        "energy.updateProvider",
        {
            "provider_id": pid,
            "updates": {
                "price_per_kwh": 0.095,
                "capacity_kwh": "20000.5",
                "display_name": "Bigger Roof",
            },
        },
        alice,
    )
    assert updated["price_micro_block_per_kwh"] == 95_000
    assert updated["capacity_wh"] == 20_000_500
    assert updated["display_name"] == "Bigger Roof"
    paused = market.client.call(
        "energy.updateProvider", {"provider_id": pid, "updates": {"paused": True}}, alice
    )
    assert paused["status"] == "paused"
    assert paused["price_micro_block_per_kwh"] == 95_000  # untouched members stay


def test_stake_top_up_and_withdrawal(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=12_000)
    pid = market.provider(alice, stake=1_000 * BLOCK)["provider_id"]
    topped = market.client.call(
        "energy.topUpStake", {"provider_id": pid, "amount_micro_block": 500 * BLOCK}, alice
    )
    assert topped["stake"] == 1_500 * BLOCK
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call(
            "energy.withdrawStake", {"provider_id": pid, "amount_micro_block": 2_000 * BLOCK}, alice
        )
    assert refused.value.reason == "insufficient_stake"
    assert market.snapshot() == before
    # Withdrawing below the minimum suspends; topping up again reactivates.
    left = market.client.call(
        "energy.withdrawStake", {"provider_id": pid, "amount_micro_block": 600 * BLOCK}, alice
    )
    assert (left["stake"], left["status"]) == (900 * BLOCK, "suspended")
    back = market.client.call(
        "energy.topUpStake", {"provider_id": pid, "amount_micro_block": 100 * BLOCK}, alice
    )
    assert back["status"] == "active"
    account = market.client.call("energy.getAccount", {"name": "alice.theblock"})
    assert account["balance"] == 12_000 * BLOCK - 1_000 * BLOCK


def test_unknown_provider_is_not_found(market: MarketHarness) -> None:
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.getProvider", {"provider_id": "energy-0x0000000000000000"})
    assert refused.value.code == 2001


def _register_fleet(market: MarketHarness) -> dict[str, str]:
    owner = market.funded_account("fleet.theblock", block=100_000)
    fleet = [
        ("solar", "US_CA", "0.08", 15000),
        ("solar", "US_CA", "0.05", 500),
        ("solar", "DE_BY", "0.12", 3000),
        ("wind", "US_CA", "0.07", 20000),
        ("wind", "DK", "0.06", 8000),
        ("hydro", "NO", "0.03", 50000),
        ("battery", "US_TX", "0.15", 1000),
        ("hydro", "US_CA", "0.08", 2500),
    ]
    names = {}
    for n, (energy_type, jurisdiction, price, capacity) in enumerate(fleet):
        provider = market.provider(
            owner,
            energy_type=energy_type,
            jurisdiction=jurisdiction,
            price_per_kwh=price,
            capacity_kwh=capacity,
            stake=1_000 * BLOCK,
            meter_address=f"fleet_meter_{n}",
        )
        names[provider["provider_id"]] = f"{energy_type}/{jurisdiction}/{price}"
    return names


def _list_all(market: MarketHarness, limit: int, **filters: Any) -> list[dict[str, Any]]:
    found, cursor = [], None
    while True:
        page = market.client.call(
            "energy.listProviders", {**filters, "limit": limit, "cursor": cursor}
        )
        assert len(page["providers"]) <= limit
        found.extend(page["providers"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            {},
            [
                "hydro/NO/0.03",
                "solar/US_CA/0.05",
                "wind/DK/0.06",
                "wind/US_CA/0.07",
                "hydro/US_CA/0.08",
                "solar/US_CA/0.08",
                "solar/DE_BY/0.12",
                "battery/US_TX/0.15",
            ],
        ),
        ({"energy_type": "solar"}, ["solar/US_CA/0.05", "solar/US_CA/0.08", "solar/DE_BY/0.12"]),
        (
            {"jurisdiction": "US_CA"},
            ["solar/US_CA/0.05", "wind/US_CA/0.07", "hydro/US_CA/0.08", "solar/US_CA/0.08"],
        ),
        (
            {
                "energy_type": "solar",
                "jurisdiction": "US_CA",
                "max_price": 0.10,
                "min_capacity": 1000,
            },
            ["solar/US_CA/0.08"],
        ),
        (
            {"max_price": "0.07"},
            ["hydro/NO/0.03", "solar/US_CA/0.05", "wind/DK/0.06", "wind/US_CA/0.07"],
        ),
        ({"min_capacity": 10000}, ["hydro/NO/0.03", "wind/US_CA/0.07", "solar/US_CA/0.08"]),
        ({"energy_type": "wind", "max_price": 0.01}, []),
    ],
)
@pytest.mark.parametrize("limit", [1, 3, 100])
def test_list_providers_filters_and_pages_in_price_order(
    market: MarketHarness, filters: dict[str, Any], expected: list[str], limit: int
) -> None:
    names = _register_fleet(market)
    listed = [names[p["provider_id"]] for p in _list_all(market, limit, **filters)]
    # Equal prices are ordered by provider id; compare prices in order, then the set.
    assert [n.rsplit("/", 1)[1] for n in listed] == [n.rsplit("/", 1)[1] for n in expected]
    assert sorted(listed) == sorted(expected)


def test_list_providers_hides_paused_unless_asked(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=10_000)
    pid = market.provider(alice)["provider_id"]
    market.client.call(
        "energy.updateProvider", {"provider_id": pid, "updates": {"paused": True}}, alice
    )
    assert market.client.call("energy.listProviders", {})["providers"] == []
    listed = market.client.call("energy.listProviders", {"include_inactive": True})
    assert [p["status"] for p in listed["providers"]] == ["paused"]


def test_a_forged_cursor_is_invalid_params(market: MarketHarness) -> None:
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.listProviders", {"cursor": "bm90LWEtY3Vyc29y"})
    assert (refused.value.code, refused.value.reason) == (-32602, "invalid_cursor")
