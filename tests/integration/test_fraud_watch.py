"""The fraud detectors at work: a lying meter is flagged automatically, once.

Readings go through the real ingest path; the detectors get them as the
registry's stream delivers them (built from the same readings here, and from
moto's stream of the registry table in the stream test).
"""

from __future__ import annotations

import os
from typing import Any

import boto3

from chalicelib.domain.fraud import MintedReading
from chalicelib.services.fraud_watch import MeterEvent, watch_meters
from chalicelib.services.ingest import Status, record_payload
from chalicelib.streams.meter_watch import events_from_records
from infra.stream_poller import lambda_event
from tests.support import (
    MarketHarness,
    SimulatedMeter,
    assert_conserved,
    metered_provider,
    validators,
)

# 2026-01-01 08:00 UTC: midnight in San Francisco, where the provider is.
NIGHT_MS = 1_767_254_400_000
QUARTER_MS = 15 * 60_000
VALIDATORS = tuple(f"val-{n}.theblock" for n in range(1, 6))


def night_readings(market: MarketHarness, meter: SimulatedMeter, quarters: int) -> list[MeterEvent]:
    """A 10 kW solar meter claiming 1 kWh every 15 minutes after midnight, ingested."""
    events = []
    counter, previous = 5_000, None
    for n in range(quarters + 1):
        at_ms = NIGHT_MS + n * QUARTER_MS
        market.clock.now = at_ms // 1000
        outcome = record_payload(
            market.deps,
            meter.payload(counter, at_ms),
            topic_meter_address=meter.meter_address,
            received_at_ms=at_ms,
        )
        assert outcome.status == Status.ACCEPTED, outcome
        start = previous if previous is not None else at_ms
        wh = 1_000 if previous is not None else 0
        reading = MintedReading(start, at_ms, wh)
        # As the registry's stream delivers it: the meter's image names its provider.
        events.append(MeterEvent(meter.meter_address, at_ms, reading, meter.provider_id))
        previous, counter = at_ms, counter + 1_000
    return events


def solar_meter(market: MarketHarness) -> SimulatedMeter:
    validators(market, *VALIDATORS)
    return metered_provider(
        market, capacity_kwh=10, energy_type="solar", latitude="37.7749", longitude="-122.4194"
    )


def test_solar_at_night_is_flagged_by_its_detector_once(market: MarketHarness) -> None:
    meter = solar_meter(market)
    events = night_readings(market, meter, quarters=4)

    run = watch_meters(market.deps, events)

    assert run.readings == 5 and run.flags == {"opened": 1}, run.as_log()
    (dispute,) = market.client.call("energy.getDisputes", {"provider_id": meter.provider_id})[
        "disputes"
    ]
    (flag,) = dispute["flags"]
    assert flag["flagged_by"] == "detector:solar_at_night"
    assert flag["bond_micro_block"] == 0 and flag["evidence"]
    assert dispute["subject"]["kind"] == "meter_window"
    assert dispute["subject"]["meter_address"] == meter.meter_address
    # The reading it caught (the first quarter after midnight) is frozen; the
    # detector flags a meter once a day, so the later quarters wait for its verdict.
    assert (dispute["subject"]["window_start_ms"], dispute["subject"]["window_end_ms"]) == (
        NIGHT_MS + 1,
        NIGHT_MS + QUARTER_MS + 1,
    )
    (offer,) = market.client.call("energy.getOffers", {})["offers"]
    assert offer["available_wh"] == 3_000

    # The stream delivers the batch again: nothing new is flagged or changed.
    before = market.snapshot()
    again = watch_meters(market.deps, events)
    assert again.flags == {} and market.snapshot() == before
    assert_conserved(market)


def test_a_flag_throttled_is_raised_when_the_stream_delivers_the_batch_again(
    market: MarketHarness, monkeypatch: Any
) -> None:
    """Throttling is not a refusal of the flag: the batch fails (its stream
    retries it) with the watch where it was, and the retry raises the flag."""
    import pytest

    from chalicelib.domain.errors import StorageBusy
    from chalicelib.services import fraud_watch

    meter = solar_meter(market)
    events = night_readings(market, meter, quarters=4)
    before = market.snapshot()

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise StorageBusy("the database is busy; try again shortly")

    monkeypatch.setattr(fraud_watch, "flag_by_detector", throttled)
    with pytest.raises(StorageBusy):
        watch_meters(market.deps, events)
    assert market.snapshot() == before  # the watch did not move on

    monkeypatch.undo()
    run = watch_meters(market.deps, events)
    assert run.flags == {"opened": 1}, run.as_log()


def test_repeated_bad_signatures_on_the_meters_channel_are_flagged(
    market: MarketHarness,
) -> None:
    meter = solar_meter(market)
    night_readings(market, meter, quarters=1)
    bad = [MeterEvent(meter.meter_address, NIGHT_MS + n * 60_000) for n in range(2, 6)]

    run = watch_meters(market.deps, bad)

    assert run.bad_signatures == 4 and run.flags == {"opened": 1}, run.as_log()
    (dispute,) = market.client.call("energy.getDisputes", {"provider_id": meter.provider_id})[
        "disputes"
    ]
    assert [f["flagged_by"] for f in dispute["flags"]] == ["detector:bad_signatures"]


def test_an_honest_meter_is_not_flagged(market: MarketHarness) -> None:
    meter = solar_meter(market)
    # Noon in San Francisco, 2 kWh a quarter from a 10 kW array.
    noon_ms = NIGHT_MS + 12 * 3_600_000
    events, counter = [], 5_000
    for n in range(9):
        at_ms = noon_ms + n * QUARTER_MS
        market.clock.now = at_ms // 1000
        outcome = record_payload(
            market.deps,
            meter.payload(counter + n * 2_000, at_ms),
            topic_meter_address=meter.meter_address,
            received_at_ms=at_ms,
        )
        assert outcome.status == Status.ACCEPTED
        start = at_ms - QUARTER_MS if n else at_ms
        events.append(
            MeterEvent(meter.meter_address, at_ms, MintedReading(start, at_ms, 2_000 if n else 0))
        )
    run = watch_meters(market.deps, events)
    assert run.suspicions == 0 and run.flags == {}
    assert (
        market.client.call("energy.getDisputes", {"provider_id": meter.provider_id})["disputes"]
        == []
    )


def test_the_registry_stream_carries_each_meters_readings_and_bad_signatures_in_order(
    market: MarketHarness,
) -> None:
    if market.backend != "dynamodb":
        return  # the stream is DynamoDB's
    meter = solar_meter(market)
    expected = night_readings(market, meter, quarters=3)
    record_payload(
        market.deps,
        meter.payload(10_000, NIGHT_MS + 4 * QUARTER_MS, signature="00" * 64),
        topic_meter_address=meter.meter_address,
        received_at_ms=NIGHT_MS + 4 * QUARTER_MS,
    )

    events = events_from_records(_registry_stream_records())

    mine = [e for e in events if e.meter_address == meter.meter_address]
    assert mine[:-1] == expected
    assert mine[-1].reading is None  # the refused signature


def _registry_stream_records() -> list[dict[str, Any]]:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = dynamodb.describe_table(TableName=os.environ["REGISTRY_TABLE"])["Table"][
        "LatestStreamArn"
    ]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=iterator, Limit=1000)["Records"])
    return list(lambda_event(records, arn)["Records"])
