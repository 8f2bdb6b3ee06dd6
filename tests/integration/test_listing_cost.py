"""A provider listing reads a bounded number of items, whatever its filters.

DynamoDB only: what it measures is the requests and items read of the
DynamoDB adapter (the in-memory one reads nothing).
"""

from __future__ import annotations

import os
from typing import Any

from chalicelib.adapters.dynamodb.providers import LIST_EXAMINE_BUDGET, provider_to_item
from chalicelib.domain.providers import EnergyType, Location, Provider, provider_id_for
from tests.support import BLOCK, dynamodb_market, tables_from_environment


def seed(client: Any, table: str, count: int, big_every: int) -> list[str]:
    """``count`` providers, dearer as n grows; every ``big_every``-th has 5 MW, the rest 1 kW.

    Returns the 5 MW providers' ids in price order."""
    big = []
    for n in range(count):
        provider = Provider(
            provider_id=provider_id_for("seed.theblock", f"seed_meter_{n}"),
            owner="seed.theblock",
            display_name=f"Seed {n}",
            energy_type=list(EnergyType)[n % 4],
            jurisdiction="US_CA",
            location=Location(0, 0),
            capacity_wh=5_000_000 if n % big_every == 0 else 1_000,
            price_micro_block_per_kwh=10_000 + n,
            stake_micro_block=1_000 * BLOCK,
            meter_address=f"seed_meter_{n}",
            meter_public_key="00" * 32,
        )
        client.put_item(TableName=table, Item=provider_to_item(provider))
        if n % big_every == 0:
            big.append(provider.provider_id)
    return big


def test_a_rare_filter_pages_through_the_registry_at_a_bounded_cost(dynamodb: Any) -> None:
    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    big = seed(dynamodb, tables.registry, count=600, big_every=60)  # 10 match
    scanned: list[int] = []

    def record(parsed: dict[str, Any], **_: Any) -> None:
        if "ScannedCount" in parsed:
            scanned.append(parsed["ScannedCount"])

    dynamodb.meta.events.register("after-call.dynamodb.Query", record)
    found: list[str] = []
    cursor, calls = None, 0
    while True:
        scanned.clear()
        page = market.client.call(
            "energy.listProviders", {"min_capacity": 1000, "limit": 5, "cursor": cursor}
        )
        calls += 1
        # Each partition reads at most one chunk past the budget.
        assert sum(scanned) <= LIST_EXAMINE_BUDGET + 4 * 2
        found.extend(p["provider_id"] for p in page["providers"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert found == big  # every match, once, cheapest first
    assert calls >= 600 // LIST_EXAMINE_BUDGET  # short pages, not one unbounded read
