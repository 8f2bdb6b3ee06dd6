"""The accepted reading's write path: a conditional update of the provider's item
(the meter's last reading, carrying its credit), then the credit's conditional
put, each a plain write; its guarantees under races, faults (the function dying
between the two included) and redelivery, and the readers of what it writes."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import observability
from chalicelib.adapters.dynamodb.layout import meter_key, provider_key
from chalicelib.domain.errors import ConcurrentUpdate, StorageBusy
from chalicelib.services.ingest import Outcome, Status, record_payload
from chalicelib.streams.live_events import registry_events
from chalicelib.streams.market_analytics import contributions
from chalicelib.streams.meter_watch import events_from_records
from chalicelib.streams.minted_credits import credits_from_records
from tests.emf_spec import emf_violations
from tests.support import (
    NOW,
    MarketHarness,
    SimulatedMeter,
    assert_conserved,
    buy,
    dynamodb_market,
    memory_market,
    metered_provider,
    provider_item_as_ingest_reads,
    racing_dynamodb_market,
    registry_stream,
    restore_lost_credits,
    tables_from_environment,
)

T0 = NOW * 1000 - 3_600_000
MINUTE = 60_000


def ingest(market: MarketHarness, payload: bytes) -> Outcome:
    return record_payload(market.deps, payload, topic_meter_address=None, received_at_ms=NOW * 1000)


def chain_holds(market: MarketHarness, meter: SimulatedMeter, first_counter: int) -> None:
    """The credits of one meter form a chain: intervals that touch and never overlap,
    every Wh the meter counted minted once, and the provider's counter agreeing."""
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    credits = []
    cursor = None
    while True:
        params: dict[str, Any] = {"provider_id": meter.provider_id, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = market.client.call("energy.getCredits", params)
        credits += page["credits"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    credits.sort(key=lambda c: c["interval_end_ms"])
    for earlier, later in itertools.pairwise(credits):
        assert earlier["interval_end_ms"] == later["interval_start_ms"], (earlier, later)
    assert sum(c["amount_wh"] for c in credits) == state["last_counter_wh"] - first_counter
    assert state["accepted_readings"] == len(credits) + 1  # and the baseline
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["available_wh"] == sum(c["amount_wh"] for c in credits)
    assert_conserved(market)


# -- what one accepted reading writes -------------------------------------------


class RecordingClient:
    """The moto client, recording each write request it passes on."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in ("transact_write_items", "put_item", "update_item", "delete_item"):
            return call

        def recorded(**request: Any) -> Any:
            self.writes.append((name, request))
            return call(**request)

        return recorded


def test_an_accepted_reading_is_an_update_of_the_provider_item_then_the_credits_put(
    dynamodb: Any,
) -> None:
    recording = RecordingClient(dynamodb)
    market = dynamodb_market(recording, tables_from_environment(dict(os.environ)))
    meter = metered_provider(market, capacity_kwh=10_000)
    baseline = ingest(market, meter.payload(1_000, T0))
    assert baseline.status == Status.ACCEPTED
    recording.writes.clear()
    outcome = ingest(market, meter.payload(2_000, T0 + MINUTE))
    assert outcome.status == Status.ACCEPTED and outcome.credit is not None

    [(first, update), (second, put)] = recording.writes
    assert (first, second) == ("update_item", "put_item")  # no transaction: half the units
    assert update["Key"] == provider_key(meter.provider_id)
    # Decided by the last reading as read: a racing reading cannot move it too.
    assert "last_reading_hash = :previous" in update["ConditionExpression"]
    assert update["ExpressionAttributeValues"][":previous"] == {"S": baseline.reading_hash}
    # The provider's item carries the credit: all it takes to write it again.
    signature = update["ExpressionAttributeValues"][":signature"]["S"]
    assert base64.b64decode(signature).hex() == outcome.credit.signature
    assert put["Item"]["pk"] == {"S": f"CREDIT#{outcome.reading_hash}"}
    assert put["ConditionExpression"] == "attribute_not_exists(pk)"
    # The credit on sale is in the on-sale indexes, not (yet) in CreditsByProvider.
    assert "provider_id" not in put["Item"]
    assert "available_provider_id" in put["Item"]
    # The meter's own item is not written: its last reading lives on the provider's.
    tables = tables_from_environment(dict(os.environ))
    meter_item = dynamodb.get_item(TableName=tables.registry, Key=meter_key(meter.meter_address))
    assert "last_reading_hash" not in meter_item["Item"]


def test_after_a_meters_first_reading_ingest_reads_one_item(dynamodb: Any) -> None:
    """The provider's item holds what ingest needs of its meter: one strongly
    consistent GetItem (1 RCU) a reading, the meter's own item no more."""
    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    meter = metered_provider(market, capacity_kwh=10_000)
    reads: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("GetItem", "BatchGetItem", "Query"):
            reads.append((model.name, params))

    dynamodb.meta.events.register("provide-client-params.dynamodb.*", record)
    assert ingest(market, meter.payload(1_000, T0)).status == Status.ACCEPTED
    # The first: the provider's item has no last reading yet, so the meter's is read.
    assert [(n, p["Key"]) for n, p in reads] == [
        ("GetItem", provider_key(meter.provider_id)),
        ("GetItem", meter_key(meter.meter_address)),
    ]
    for n, counter in enumerate((2_000, 3_000)):
        reads.clear()
        outcome = ingest(market, meter.payload(counter, T0 + (n + 1) * MINUTE))
        assert outcome.status == Status.ACCEPTED
        [(name, params)] = reads
        assert (name, params["Key"], params["ConsistentRead"]) == (
            "GetItem",
            provider_key(meter.provider_id),
            True,
        )
    reads.clear()
    assert ingest(market, meter.payload(3_000, T0 + 2 * MINUTE)).status == Status.DUPLICATE
    assert [n for n, _ in reads] == ["GetItem"]


def test_the_provider_item_stays_within_one_write_unit_with_its_credit_and_a_full_day(
    dynamodb: Any,
) -> None:
    """The provider's item carries the last reading's credit and the uptime
    window, and each accepted reading updates it: under 1 KB, that update is
    one write unit. With a 40-character name and a 24-character meter address
    (docs/architecture.md gives the margin), a full day of slots included."""
    from bench._capacity import WRITE_UNIT_BYTES, item_size

    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    meter = metered_provider(
        market,
        capacity_kwh=10_000,
        display_name="Sunny Rooftop Cooperative, North Field A",
        meter_address="coop_north_field_meter_a",
    )
    assert ingest(market, meter.payload(1_000, T0)).status == Status.ACCEPTED
    dynamodb.update_item(
        TableName=tables.registry,
        Key=provider_key(meter.provider_id),
        UpdateExpression="SET reading_slot_bits = :full",
        ExpressionAttributeValues={":full": {"N": str((1 << 96) - 1)}},
    )
    assert ingest(market, meter.payload(99_000, T0 + MINUTE)).status == Status.ACCEPTED
    item = dynamodb.get_item(
        TableName=tables.registry, Key=provider_key(meter.provider_id), ConsistentRead=True
    )["Item"]
    assert "last_signature" in item
    assert item_size(item) <= WRITE_UNIT_BYTES, item_size(item)


def test_the_cpu_floor_benchmark_sends_exactly_what_ingest_sends(dynamodb: Any) -> None:
    """bench/ingest.py times bench/_floor.py as the floor of ingest's CPU; that is
    only a floor while it does the same work, so a change to ingest's requests
    that the floor does not follow fails here, not in a benchmark nobody runs."""
    from bench.ingest import check_floor

    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    meter = metered_provider(market, capacity_kwh=10_000)
    assert ingest(market, meter.payload(1_000, T0)).status == Status.ACCEPTED
    provider_item = provider_item_as_ingest_reads(dynamodb, tables, meter.provider_id)
    check_floor(
        market, tables, provider_item, meter.payload(2_000, T0 + MINUTE), meter.meter_address
    )


# -- races ------------------------------------------------------------------------


@pytest.fixture(params=["memory", "dynamodb"])
def racing_market(request: pytest.FixtureRequest) -> MarketHarness:
    """The in-memory adapter's lock, or DynamoDB's conditions evaluated by a moto
    server over HTTP (in-process moto does not serialise requests from threads:
    its conditions would race, not ours; tests/integration/test_concurrency.py
    does the same)."""
    if request.param == "memory":
        return memory_market()
    moto_server: str = request.getfixturevalue("moto_server")
    request.getfixturevalue("aws_credentials")
    return racing_dynamodb_market(moto_server, "ingest-race", 16)


def test_racing_deliveries_mint_each_interval_once(racing_market: MarketHarness) -> None:
    """Eight threads deliver twelve readings, each three times, in random order:
    whichever wins each race, the credits chain and nothing is minted twice."""
    market = racing_market
    meter = metered_provider(market, capacity_kwh=10_000)
    assert ingest(market, meter.payload(10_000, T0)).status == Status.ACCEPTED
    readings = [meter.payload(10_000 + 500 * n, T0 + n * MINUTE) for n in range(1, 13)]
    deliveries = readings * 3
    random.Random(15).shuffle(deliveries)
    outcomes: list[Outcome] = []
    gave_up: list[bytes] = []
    lock = threading.Lock()

    def deliver(payloads: list[bytes]) -> None:
        for payload in payloads:
            try:
                outcome = ingest(market, payload)
            except ConcurrentUpdate:
                with lock:
                    gave_up.append(payload)  # flooded: the sender delivers it again
                continue
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=deliver, args=(deliveries[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for payload in gave_up:
        outcomes.append(ingest(market, payload))

    accepted = [o for o in outcomes if o.status == Status.ACCEPTED]
    assert len({o.reading_hash for o in accepted}) == len(accepted)  # each once
    assert {o.reason for o in outcomes if o.status == Status.REJECTED} <= {
        "counter_not_increasing",
        "timestamp_not_increasing",
    }
    chain_holds(market, meter, 10_000)


# -- faults -------------------------------------------------------------------------


class LambdaDied(Exception):
    """The function was killed after a DynamoDB call returned, before it answered."""


class FaultyClient:
    """The moto client; its next call of ``operation`` is refused for capacity,
    refused for a transaction holding the item, or the function dies before
    it is made or after it returned."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.fault: tuple[str, str] | None = None  # (operation, what goes wrong)

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if self.fault is None or self.fault[0] != name:
            return call

        def faulty(**request: Any) -> Any:
            assert self.fault is not None
            what, self.fault = self.fault[1], None
            if what in ("throttled", "conflict"):
                code = (
                    "ProvisionedThroughputExceededException"
                    if what == "throttled"
                    else "TransactionConflictException"
                )
                raise ClientError({"Error": {"Code": code, "Message": what}}, name)
            if what == "died after":
                call(**request)
            raise LambdaDied(f"killed: {what} {name}")

        return faulty


@pytest.fixture
def faulty(dynamodb: Any) -> tuple[FaultyClient, MarketHarness, SimulatedMeter]:
    client = FaultyClient(dynamodb)
    market = dynamodb_market(client, tables_from_environment(dict(os.environ)))
    meter = metered_provider(market, capacity_kwh=10_000)
    assert ingest(market, meter.payload(1_000, T0)).status == Status.ACCEPTED
    return client, market, meter


def restore_from_stream(market: MarketHarness, dynamodb: Any) -> int:
    return restore_lost_credits(dynamodb, market.deps, tables_from_environment(dict(os.environ)))


def test_a_throttled_first_write_changes_nothing_and_the_redelivery_mints(
    faulty: tuple[FaultyClient, MarketHarness, SimulatedMeter],
) -> None:
    client, market, meter = faulty
    payload = meter.payload(3_000, T0 + MINUTE)
    before = market.snapshot()
    client.fault = ("update_item", "throttled")
    with pytest.raises(StorageBusy):  # the topic rule's Lambda fails; IoT redelivers
        ingest(market, payload)
    assert market.snapshot() == before
    assert ingest(market, payload).status == Status.ACCEPTED
    chain_holds(market, meter, 1_000)


def test_a_transaction_holding_the_provider_item_is_waited_out_and_mints_once(
    faulty: tuple[FaultyClient, MarketHarness, SimulatedMeter],
) -> None:
    client, market, meter = faulty
    client.fault = ("update_item", "conflict")  # a purchase's transaction, say
    outcome = ingest(market, meter.payload(3_000, T0 + MINUTE))
    assert (outcome.status, outcome.credit and outcome.credit.wh) == (Status.ACCEPTED, 2_000)
    chain_holds(market, meter, 1_000)


@pytest.mark.parametrize("fault", ["died before", "throttled"])
def test_a_credit_lost_between_the_two_writes_is_restored_from_the_stream_once(
    faulty: tuple[FaultyClient, MarketHarness, SimulatedMeter],
    dynamodb: Any,
    fault: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, market, meter = faulty
    payload = meter.payload(3_000, T0 + MINUTE)
    client.fault = ("put_item", fault)  # the provider's item written, the credit's put not made
    with pytest.raises(LambdaDied if fault == "died before" else StorageBusy):
        ingest(market, payload)
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["available_wh"] == 2_000  # the provider's item moved...
    with pytest.raises(AssertionError):
        chain_holds(market, meter, 1_000)  # ...and the credit is not listed yet
    # IoT delivers again: the meter has moved on to this very reading.
    assert ingest(market, payload).status == Status.DUPLICATE
    observability.configure()  # metric lines on, as in every function
    capsys.readouterr()
    assert restore_from_stream(market, dynamodb) == 1
    [line] = [line for line in capsys.readouterr().out.splitlines() if "CreditsRestored" in line]
    assert emf_violations(line) == [] and json.loads(line)["CreditsRestored"] == 1
    chain_holds(market, meter, 1_000)
    # The stream delivered again, and the redelivery: nothing minted twice.
    assert restore_from_stream(market, dynamodb) == 0
    assert ingest(market, payload).status == Status.DUPLICATE
    assert ingest(market, meter.payload(4_000, T0 + 2 * MINUTE)).status == Status.ACCEPTED
    chain_holds(market, meter, 1_000)


def test_a_crash_after_both_writes_then_redelivery_mints_once(
    faulty: tuple[FaultyClient, MarketHarness, SimulatedMeter],
) -> None:
    client, market, meter = faulty
    payload = meter.payload(3_000, T0 + MINUTE)
    client.fault = ("put_item", "died after")
    with pytest.raises(LambdaDied):
        ingest(market, payload)
    chain_holds(market, meter, 1_000)  # written whole: provider and credit
    assert ingest(market, payload).status == Status.DUPLICATE
    assert ingest(market, meter.payload(4_000, T0 + 2 * MINUTE)).status == Status.ACCEPTED
    chain_holds(market, meter, 1_000)


def test_a_restored_credit_is_the_credit_ingest_would_have_written(
    faulty: tuple[FaultyClient, MarketHarness, SimulatedMeter], dynamodb: Any
) -> None:
    _, market, meter = faulty
    outcome = ingest(market, meter.payload(3_000, T0 + MINUTE))
    assert outcome.credit is not None
    lifetime = market.deps.settings.credit_lifetime_ms
    # Every credit the stream shows, baseline included, rebuilt exactly.
    tables = tables_from_environment(dict(os.environ))
    rebuilt = credits_from_records(registry_stream(dynamodb, tables), lifetime)
    assert [c.credit_id for c in rebuilt][-1] == outcome.credit.credit_id
    uow = market.deps.unit_of_work()
    for credit in rebuilt:
        assert uow.credits.get(credit.credit_id) == credit


# -- a meter item written before the last reading moved -------------------------------


def test_a_meter_whose_last_reading_is_on_its_own_item_moves_on(dynamodb: Any) -> None:
    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    meter = metered_provider(market, capacity_kwh=10_000)
    earlier = meter.payload(5_000, T0)
    baseline = ingest(market, earlier)
    # Move the baseline back onto the meter's item, as the old layout kept it.
    provider = dynamodb.get_item(
        TableName=tables.registry, Key=provider_key(meter.provider_id), ConsistentRead=True
    )["Item"]
    head = {k: provider[k] for k in ("last_counter_wh", "last_timestamp_ms", "last_reading_hash")}
    dynamodb.update_item(
        TableName=tables.registry,
        Key=provider_key(meter.provider_id),
        UpdateExpression="REMOVE last_counter_wh, last_timestamp_ms, last_reading_hash",
    )
    dynamodb.update_item(
        TableName=tables.registry,
        Key=meter_key(meter.meter_address),
        UpdateExpression="SET last_counter_wh = :c, last_timestamp_ms = :t, last_reading_hash = :h",
        ExpressionAttributeValues={
            ":c": head["last_counter_wh"],
            ":t": head["last_timestamp_ms"],
            ":h": head["last_reading_hash"],
        },
    )
    assert ingest(market, earlier).status == Status.DUPLICATE
    outcome = ingest(market, meter.payload(6_500, T0 + MINUTE))
    assert (outcome.status, outcome.credit and outcome.credit.wh) == (Status.ACCEPTED, 1_500)
    assert baseline.reading_hash is not None
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert (state["last_counter_wh"], state["last_reading_hash"]) == (6_500, outcome.reading_hash)


# -- readers of what ingest writes ---------------------------------------------------


def test_a_providers_credits_list_those_on_sale_and_those_sold_page_by_page(
    market: MarketHarness,
) -> None:
    meter = metered_provider(market, capacity_kwh=10_000)
    for n in range(7):
        payload = meter.payload(1_000 + 1_000 * n, T0 + n * MINUTE)
        assert ingest(market, payload).status == Status.ACCEPTED
    buyer = market.funded_account("bob.theblock", block=100)
    buy(market, buyer, meter.provider_id, "2.5", max_price="1")  # 2 whole, 1 split
    listed: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"provider_id": meter.provider_id, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = market.client.call("energy.getCredits", params)
        assert len(page["credits"]) <= 2
        listed += page["credits"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    ids = [c["credit_id"] for c in listed]
    assert len(ids) == len(set(ids)) == 7  # 6 readings' credits and the split-off part
    ends = [c["interval_end_ms"] for c in listed]
    assert ends == sorted(ends, reverse=True)  # newest first, across both indexes
    assert {c["state"] for c in listed} == {"available", "reserved"}
    assert sum(c["amount_wh"] for c in listed if c["state"] == "reserved") == 2_500


def _records(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "eventName": "MODIFY",
            "dynamodb": {
                "Keys": {"pk": after["pk"], "sk": after["sk"]},
                "OldImage": before,
                "NewImage": after,
                "SequenceNumber": "100",
                "ApproximateCreationDateTime": NOW,
            },
        }
    ]


def test_the_stream_readers_find_a_reading_on_the_provider_record(dynamodb: Any) -> None:
    tables = tables_from_environment(dict(os.environ))
    market = dynamodb_market(dynamodb, tables)
    meter = metered_provider(market, capacity_kwh=10_000)

    def provider_item() -> dict[str, Any]:
        item: dict[str, Any] = dynamodb.get_item(
            TableName=tables.registry, Key=provider_key(meter.provider_id), ConsistentRead=True
        )["Item"]
        return item

    images = [provider_item()]
    for counter, at_ms in ((1_000, T0), (2_200, T0 + MINUTE)):
        assert ingest(market, meter.payload(counter, at_ms)).status == Status.ACCEPTED
        images.append(provider_item())
    buyer = market.funded_account("bob.theblock", block=100)
    buy(market, buyer, meter.provider_id, "1", max_price="1")
    images.append(provider_item())  # a purchase: no reading

    def seen(before: dict[str, Any], after: dict[str, Any]) -> tuple[Any, ...]:
        records = _records(before, after)
        watch = [e.reading for e in events_from_records(records)]
        live = [
            (e.data["readings"], e.data["wh"])
            for e in registry_events(records)
            if e.topic == "new_reading"
        ]
        buckets = _buckets()
        counted = [c.delta.counters.get("readings", 0) for c in contributions(records, buckets)]
        return watch, live, sum(counted)

    baseline, reading, purchase = (seen(a, b) for a, b in itertools.pairwise(images))
    assert baseline[0][0] is not None and baseline[0][0].wh == 0  # the baseline: no energy
    assert baseline[1:] == ([(1, 0)], 2)  # meters aggregate and totals, once each
    assert reading[0][0] is not None and reading[0][0].wh == 1_200
    assert reading[1:] == ([(1, 1_200)], 2)
    assert purchase == ([], [], 0)


def _buckets() -> Any:
    from chalicelib.services.analytics import buckets_of

    return buckets_of(memory_market().deps)
