"""The analytics fed by moto's real streams: a market's records become its figures.

A market driven through the API (providers of three types in three places,
buyers, purchases at several prices, settlements, a dispute that revokes a
purchase, refused and duplicate readings) is read back from the registry's and
the ledger's streams and folded as Lambda would; every figure is checked by
hand. Then the failure paths: an event without its shard (an event source
without a tumbling window) is refused by the deployed handler before any write,
and two folds racing on one aggregate both count, once each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest

from chalicelib.services import analytics
from chalicelib.streams.market_analytics import MissingShard, contributions, shard_of
from energy_client.rpc_client import Signer
from infra.stream_poller import lambda_event
from tests.analytics_model import interrupted, invoke
from tests.support import (
    MarketHarness,
    SimulatedMeter,
    buy,
    dynamodb_market,
    flag,
    selling_provider,
    tables_from_environment,
    validators,
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


# -- a market of several providers and buyers, through the API ---------------------------

WIND_PRICE, HYDRO_PRICE, SOLAR_PRICE = 120_000, 100_000, 80_000  # micro-BLOCK per kWh
BUYERS = ("bob", "erin", "dave")


@dataclass
class Market:
    """Three providers of different types and places, four buyers, five validators."""

    solar: SimulatedMeter
    wind: SimulatedMeter
    hydro: SimulatedMeter
    bob: Signer
    erin: Signer
    dave: Signer
    carol: Signer
    judges: dict[str, Signer]


@pytest.fixture
def scene(market: MarketHarness) -> Market:
    solar = selling_provider(market, [5_000, 5_000], owner="sol.theblock")
    wind = selling_provider(
        market,
        [3_000, 3_000],
        owner="aeolus.theblock",
        energy_type="wind",
        jurisdiction="DE",
        price_per_kwh="0.12",
    )
    hydro = selling_provider(
        market,
        [2_000, 2_000],
        owner="river.theblock",
        energy_type="hydro",
        jurisdiction="GB",
        price_per_kwh="0.10",
    )
    bob, erin, dave = (market.funded_account(f"{n}.theblock", block=100) for n in BUYERS)
    carol = market.funded_account("carol.theblock", block=1_000)
    judges = {s.account: s for s in validators(market, *(f"val-{n}.theblock" for n in range(5)))}
    return Market(solar, wind, hydro, bob, erin, dave, carol, judges)


def later(market: MarketHarness, seconds: int = 60) -> None:
    market.clock.now += seconds


def test_a_market_of_several_providers_buyers_and_a_dispute_shows_in_every_figure(
    dynamodb: Any, market: MarketHarness, scene: Market
) -> None:
    from chalicelib.services.ingest import Status, record_payload

    pump = StreamPump(dynamodb, market)
    # Four purchases in one hour, at three prices: open 0.12, low 0.08, close 0.10.
    later(market)
    wind_sale = buy(market, scene.bob, scene.wind.provider_id, "2", max_price="0.20")
    market.client.call("energy.settle", {"transaction_id": wind_sale["transaction_id"]}, scene.bob)
    later(market)
    hydro_sale = buy(market, scene.erin, scene.hydro.provider_id, "1")
    market.client.call(
        "energy.settle", {"transaction_id": hydro_sale["transaction_id"]}, scene.erin
    )
    later(market)
    doomed = buy(market, scene.dave, scene.solar.provider_id, "1")
    later(market)
    buy(market, scene.bob, scene.hydro.provider_id, "1")  # stays open
    # The hydro meter: a reading accepted, then delivered twice more (one
    # duplicate kept), and one with a signature that does not match.
    later(market)
    now_ms = market.clock.now * 1000

    def deliver(payload: bytes) -> Status:
        return record_payload(
            market.deps,
            payload,
            topic_meter_address=scene.hydro.meter_address,
            received_at_ms=now_ms,
        ).status

    reading = scene.hydro.payload(5_000 + 1_500, now_ms)
    assert [deliver(reading) for _ in range(3)] == [Status.ACCEPTED] + [Status.DUPLICATE] * 2
    forged = scene.hydro.payload(5_000 + 2_000, now_ms + 1, kwh_reading=Decimal("9.000"))
    assert deliver(forged) == Status.REJECTED
    # Carol flags the reading dave's purchase took its energy from.
    dispute = flag(market, scene.carol, credit_id=doomed["credit_ids"][0])
    assert pump() > 0
    assert market.client.call("energy.getMarketStats", {})["open_disputes"] == 1
    for judge in dispute["panel"][:3]:
        market.client.call(
            "energy.voteOnDispute",
            {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "major"},
            scene.judges[judge],
        )
    assert (
        market.client.call("energy.getPurchase", {"transaction_id": doomed["transaction_id"]})[
            "status"
        ]
        == "revoked"
    )
    assert pump() > 0

    stats = market.client.call("energy.getMarketStats", {})
    volume, notional = 5_000, 2 * WIND_PRICE + 2 * HYDRO_PRICE + SOLAR_PRICE
    assert stats["providers"] == {
        "registered": 3,
        "listed": 3,  # the slash left the solar provider above the minimum stake
        "active_24h": 3,
        "meters_on_time": 3,
    }
    assert stats["total_capacity_wh"] == 30_000_000
    assert stats["energy_mix"] == {
        "generated_wh_24h": {"hydro": 5_500, "solar": 10_000, "wind": 6_000},
        "traded_wh_24h": {"hydro": 2_000, "solar": 1_000, "wind": 2_000},
        "capacity_wh": {"hydro": 10_000_000, "solar": 10_000_000, "wind": 10_000_000},
    }
    assert stats["energy_traded"] == {
        "wh_24h": volume,
        "wh_all_time": volume,
        "gwh_all_time": Decimal("0.000005"),
        "trades_24h": 4,
        "settled_wh_24h": 3_000,
        "settled_wh_all_time": 3_000,
    }
    assert stats["revenue"] == {
        "micro_block_24h": 2 * WIND_PRICE + HYDRO_PRICE,
        "micro_block_all_time": 2 * WIND_PRICE + HYDRO_PRICE,
    }
    assert stats["average_price"]["vwap_24h_micro_block_per_kwh"] == notional * 1000 // volume
    assert stats["average_price"]["listed_micro_block_per_kwh"] == 100_000
    assert stats["active_buyers"] == 3  # dave's purchase was revoked, but he bought
    assert stats["readings_24h"] == 10
    assert stats["refused_24h"] == {"bad_signature": 1, "duplicate": 1}
    accepted_bps = 10_000 * 10 // 11  # a duplicate is not a refusal of the meter
    assert stats["grid_health"]["score"] == (50 * 10_000 + 30 * accepted_bps + 20 * 10_000) // (
        10_000
    )
    assert stats["open_disputes"] == 0
    on_sale = sum(
        market.client.call("energy.getProvider", {"provider_id": m.provider_id})["available_wh"]
        for m in (scene.solar, scene.wind, scene.hydro)
    )
    assert stats["on_sale_wh"] == on_sale
    # The market's carbon is what its buyers' own figures add up to.
    bought = market.client.call("energy.getCarbonOffset", {})
    assert stats["carbon_offset"]["total_g_co2"] == bought["total_g_co2"] > 0
    assert bought["bought_wh"] == {"wind": 2_000, "hydro": 1_000}
    assert [
        (p["provider_id"], p["sold_wh"], p["jurisdiction"]) for p in stats["top_providers"]
    ] == [
        (scene.wind.provider_id, 2_000, "DE"),
        (scene.hydro.provider_id, 1_000, "GB"),
    ]
    totals = analytics.market_stats(market.deps).totals
    assert (totals["revoked"], totals["revoked_wh"]) == (1, 1_000)

    def prices(**scope: str) -> list[tuple[int, ...]]:
        history = market.client.call("energy.getPriceHistory", scope)
        return [
            (b["open"], b["high"], b["low"], b["close"], b["vwap"], b["volume_wh"], b["trades"])
            for b in history["buckets"]
        ]

    assert prices() == [
        (WIND_PRICE, WIND_PRICE, SOLAR_PRICE, HYDRO_PRICE, notional * 1000 // volume, volume, 4)
    ]
    assert prices(energy_type="wind") == [(WIND_PRICE,) * 5 + (2_000, 1)]
    assert prices(jurisdiction="GB") == [(HYDRO_PRICE,) * 5 + (2_000, 2)]
    assert prices(jurisdiction="US_CA") == [(SOLAR_PRICE,) * 5 + (1_000, 1)]
    assert prices(energy_type="battery") == []

    activity = market.client.call("energy.getMarketActivity", {"daily": True})["buckets"]
    # The meters' first readings came just before midnight; the trading after it.
    assert [(b["readings"], b["trades"], b["settled_wh"]) for b in activity] == [
        (9, 0, 0),
        (1, 4, 3_000),
    ]
    assert activity[1]["volume_micro_block"] == notional
    assert activity[1]["revenue_micro_block"] == 2 * WIND_PRICE + HYDRO_PRICE
    leaders = market.client.call("energy.getTopProviders", {"window": "all", "limit": 1})
    assert [p["provider_id"] for p in leaders["providers"]] == [scene.wind.provider_id]

    # Every batch again, each shard's in reverse: nothing moves.
    deps = market.deps
    for event in reversed(pump.delivered):
        run = analytics.fold(
            deps, shard_of(event), contributions(event["Records"], analytics.buckets_of(deps))
        )
        assert run.written == 0
    assert market.client.call("energy.getMarketStats", {}) == stats


# -- a poison event, and two folds racing ------------------------------------------------


def analytics_items(client: Any) -> list[dict[str, Any]]:
    table = tables_from_environment(dict(os.environ)).analytics
    return [
        i for page in client.get_paginator("scan").paginate(TableName=table) for i in page["Items"]
    ]


def unread_batches(client: Any, table: str) -> list[dict[str, Any]]:
    """A table's stream, read from the start: one Lambda event per shard."""
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    events = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
        events.append(lambda_event(records, arn, shard["ShardId"]))
    return events


def test_an_event_without_its_shard_is_refused_and_folds_nothing(
    dynamodb: Any, market: MarketHarness, lambda_client: Any
) -> None:
    """Given the registry's records in an event whose source has no tumbling window
    (no ``shardId``), the meters' handler refuses it with MissingShard before any
    write (Lambda retries it; the template's windows are the fix), and the same
    records with their shard fold."""
    selling_provider(market, [2_500, 2_500])
    tables = tables_from_environment(dict(os.environ))
    (event,) = unread_batches(dynamodb, tables.registry)
    registry_before = market.snapshot()[tables.registry]
    poison = {k: v for k, v in event.items() if k != "shardId"}

    with pytest.raises(MissingShard, match="tumbling window"):
        lambda_client.lambda_.invoke("watch_meters", poison)
    assert analytics_items(dynamodb) == []
    assert market.snapshot()[tables.registry] == registry_before  # nor did the fraud watch run

    answer = lambda_client.lambda_.invoke("watch_meters", event).payload
    assert answer == {"state": {}, "batchItemFailures": []}
    stats = analytics.market_stats(market.deps)
    assert (stats.providers_registered, stats.readings_24h) == (1, 3)


def test_two_folds_racing_on_the_same_aggregate_count_both_batches_once(
    dynamodb: Any, market: MarketHarness
) -> None:
    """Given two ledger batches from two shards, each with a purchase, both of
    which add to the market's trade bucket (read and put whole), when one fold
    lands entirely while the other is about to write, then the other's write
    fails its version condition (ConcurrentUpdate), it reads the bucket again
    and retries, and each batch is counted once; delivering both again counts
    nothing. (Counters are ADDed without a read: they cannot race.)"""
    meter = selling_provider(market, [2_500, 2_500])
    bob = market.funded_account("bob.theblock", block=100)
    buy(market, bob, meter.provider_id, "1")
    buy(market, bob, meter.provider_id, "2")
    tables = tables_from_environment(dict(os.environ))
    (ledger,) = unread_batches(dynamodb, tables.ledger)
    records = ledger["Records"]
    second = [n for n, r in enumerate(records) if r["dynamodb"]["Keys"]["sk"]["S"] == "PURCHASE"][1]
    first_half = {**ledger, "Records": records[:second], "shardId": "shardId-a"}
    second_half = {**ledger, "Records": records[second:], "shardId": "shardId-b"}
    deps = market.deps
    rival_runs: list[analytics.FoldRun] = []

    def rival_lands() -> None:
        if not rival_runs:
            rival_runs.append(invoke(deps, second_half))

    run = invoke(interrupted(deps, rival_lands), first_half)

    assert rival_runs and rival_runs[0].written == rival_runs[0].aggregates
    assert run.conflicts >= 1 and run.written == run.aggregates
    stats = analytics.market_stats(deps)
    assert (stats.trades_24h, stats.energy_traded_wh_24h) == (2, 3_000)
    assert stats.totals["trades"] == 2
    (bucket,) = analytics.price_history(deps, 24)
    assert (bucket.trades, bucket.volume_wh) == (2, 3_000)
    again = [invoke(deps, first_half), invoke(deps, second_half)]
    assert [r.written for r in again] == [0, 0]
    assert analytics.market_stats(deps).totals == stats.totals


@pytest.mark.parametrize("function", ["PublishMarketEvents", "WatchMeters"])
def test_each_analytics_consumer_reads_a_shard_one_batch_at_a_time_with_its_shard_named(
    function: str,
) -> None:
    """The marks count a shard's records once only if its batches come one at a
    time, in order (ParallelizationFactor 1: with more, two batches of one shard
    run at once and the later one's mark hides the earlier one's records), and
    only a tumbling window makes Lambda name the shard in the event."""
    from infra.emulation import load_template

    source = load_template()["Resources"][function]["Properties"]["Events"][
        f"{function}DynamodbEventSource"
    ]["Properties"]
    assert source["TumblingWindowInSeconds"] > 0
    assert source.get("ParallelizationFactor", 1) == 1
