"""The analytics fed by moto's real streams: a market's records become its figures."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest

from chalicelib.services import analytics
from chalicelib.streams.market_analytics import contributions, shard_of
from infra.stream_poller import lambda_event
from tests.support import (
    MarketHarness,
    buy,
    dynamodb_market,
    selling_provider,
    tables_from_environment,
)


class StreamPump:
    """Reads the registry's and the ledger's streams and folds every new batch, as Lambda would."""

    def __init__(self, client: Any, market: MarketHarness) -> None:
        self.market = market
        self.streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        tables = tables_from_environment(dict(os.environ))
        self.iterators: dict[tuple[str, str], str] = {}
        self.arns = [
            client.describe_table(TableName=t)["Table"]["LatestStreamArn"]
            for t in (tables.registry, tables.ledger)
        ]
        self.delivered: list[dict[str, Any]] = []

    def __call__(self, batch_size: int = 100) -> int:
        handled = 0
        for arn in self.arns:
            shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
            for shard in shards:
                key = (arn, shard["ShardId"])
                if key not in self.iterators:
                    self.iterators[key] = self.streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
                while True:
                    response = self.streams.get_records(
                        ShardIterator=self.iterators[key], Limit=batch_size
                    )
                    self.iterators[key] = response["NextShardIterator"]
                    if not response["Records"]:
                        break
                    event = lambda_event(response["Records"], arn, shard["ShardId"])
                    self.delivered.append(event)
                    deps = self.market.deps
                    analytics.fold(
                        deps,
                        shard_of(event),
                        contributions(event["Records"], analytics.buckets_of(deps)),
                    )
                    handled += len(response["Records"])
        return handled


@pytest.fixture
def market(dynamodb: Any) -> MarketHarness:
    return dynamodb_market(dynamodb, tables_from_environment(dict(os.environ)))


def test_a_settled_purchase_shows_in_every_figure_and_a_redelivery_changes_none(
    dynamodb: Any, market: MarketHarness
) -> None:
    pump = StreamPump(dynamodb, market)
    meter = selling_provider(market, [2_500, 2_500, 2_500], price_per_kwh="0.10")
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, "3")
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    assert pump() > 0

    stats = market.client.call("energy.getMarketStats", {})
    assert stats["energy_traded"]["wh_24h"] == 3_000
    assert stats["energy_traded"]["settled_wh_all_time"] == 3_000
    assert stats["average_price"]["vwap_24h_micro_block_per_kwh"] == 100_000
    assert stats["active_buyers"] == 1
    assert stats["providers"]["registered"] == 1
    assert stats["active_providers"] == 1
    assert stats["energy_mix"]["generated_wh_24h"] == {"solar": 7_500}
    assert [p["provider_id"] for p in stats["top_providers"]] == [meter.provider_id]
    assert stats["top_providers"][0]["sold_wh"] == 3_000

    history = market.client.call("energy.getPriceHistory", {})
    assert [(b["open"], b["close"], b["volume_wh"]) for b in history["buckets"]] == [
        (100_000, 100_000, 3_000)
    ]

    # Lambda delivers a batch again: nothing counts twice.
    before = market.client.call("energy.getMarketStats", {})
    for event in pump.delivered:
        deps = market.deps
        run = analytics.fold(
            deps, shard_of(event), contributions(event["Records"], analytics.buckets_of(deps))
        )
        assert run.written == 0
    assert market.client.call("energy.getMarketStats", {}) == before


def test_the_markets_carbon_is_the_sum_of_what_its_buyers_avoided(
    dynamodb: Any, market: MarketHarness
) -> None:
    pump = StreamPump(dynamodb, market)
    solar = selling_provider(market, [2_000, 2_000], owner="sun.theblock", jurisdiction="DE")
    wind = selling_provider(
        market, [3_000], owner="breeze.theblock", energy_type="wind", jurisdiction="FR"
    )
    buyers = []
    for name, provider, kwh in (
        ("bob.theblock", solar, "4"),
        ("carol.theblock", wind, "3"),
    ):
        buyer = market.funded_account(name, block=100)
        purchase = buy(market, buyer, provider.provider_id, kwh)
        market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, buyer)
        buyers.append(name)
    pump()

    whole = market.client.call("energy.getCarbonOffset", {})
    assert whole["scope"] == "market"
    parts = [market.client.call("energy.getCarbonOffset", {"account": b}) for b in buyers]
    assert whole["total_g_co2"] == sum(p["total_g_co2"] for p in parts) > 0
    assert whole["bought_wh"] == {"solar": 4_000, "wind": 3_000}
    stats = market.client.call("energy.getMarketStats", {})
    assert stats["carbon_offset"]["total_g_co2"] == whole["total_g_co2"]
    activity = market.client.call("energy.getMarketActivity", {})
    assert sum(b["carbon_g_co2"] for b in activity["buckets"]) >= whole["total_g_co2"] - 1


def test_a_guilty_verdict_takes_the_revoked_sales_off_the_leaderboard_and_the_carbon(
    dynamodb: Any, market: MarketHarness
) -> None:
    from tests.integration.test_carbon import found_guilty, two_jurisdictions

    pump = StreamPump(dynamodb, market)
    _, california, germany = two_jurisdictions(market)
    pump()
    leaders = market.client.call("energy.getTopProviders", {"window": "all"})["providers"]
    assert {p["provider_id"]: p["sold_wh"] for p in leaders} == {
        california.provider_id: 2_000,
        germany.provider_id: 2_000,
    }
    before = market.client.call("energy.getCarbonOffset", {})["total_g_co2"]

    found_guilty(market, california)
    pump()
    for window in ("24h", "7d", "all"):
        leaders = market.client.call("energy.getTopProviders", {"window": window})["providers"]
        assert [(p["provider_id"], p["sold_wh"]) for p in leaders] == [
            (germany.provider_id, 2_000)
        ], window
    whole = market.client.call("energy.getCarbonOffset", {})
    bob = market.client.call("energy.getCarbonOffset", {"account": "bob.theblock"})
    assert whole["total_g_co2"] == bob["total_g_co2"] < before
