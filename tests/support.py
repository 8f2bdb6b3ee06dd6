"""Shared test helpers: a market on either storage adapter, and snapshots."""

from __future__ import annotations

import copy
import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.adapters.dynamodb import DynamoUnitOfWork, Tables, from_item
from chalicelib.adapters.memory import MemoryState, memory_unit_of_work_factory
from chalicelib.adapters.receipt_key import receipt_signing_key
from chalicelib.config import Settings
from chalicelib.domain.ledger import EntryKind
from chalicelib.domain.readings import signed_payload
from chalicelib.rpc.methods import registry
from chalicelib.rpc.protocol import Dispatcher
from chalicelib.services import analytics
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ingest import restore_credits
from chalicelib.services.ports import UnitOfWork
from chalicelib.streams.market_analytics import contributions, shard_of
from chalicelib.streams.minted_credits import credits_from_records
from energy_client.rpc_client import MarketplaceClient, Signer, encode
from infra.emulation import create_tables
from infra.stream_poller import lambda_event

MARKETPLACE_ID = "energy-marketplace-test"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BLOCK = 1_000_000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class MarketHarness:
    """A market wired to one storage adapter, with a client and an operator."""

    deps: Dependencies  # what the use cases receive: settings, storage, clock
    dispatcher: Dispatcher
    client: MarketplaceClient
    operator: Signer
    clock: Clock
    snapshot: Callable[[], Any]  # everything stored, for "changes nothing" checks
    audit: Callable[[], Totals]  # the money, summed straight from storage
    backend: str = "memory"

    def uow(self) -> UnitOfWork:
        return self.deps.unit_of_work()

    def funded_account(self, name: str, block: int = 0) -> Signer:
        signer = Signer.generate(name)
        self.client.create_account(signer)
        if block:
            self.client.deposit(self.operator, name, block * BLOCK, f"0xdeposit-{name}-{block}")
        return signer

    def provider(self, owner: Signer, **overrides: Any) -> dict[str, Any]:
        registration = registration_params(owner.account, **overrides)
        result: dict[str, Any] = self.client.call("energy.registerProvider", registration, owner)
        return result


@dataclass(frozen=True)
class Totals:
    balances: int
    stakes: int
    treasury: int
    deposits: int
    withdrawals: int
    minted_wh: int = 0  # energy in credits (baselines carry none)
    credits: int = 0  # credits minted, baselines excluded
    escrow: int = 0  # micro-BLOCK held by open purchases
    available_wh: int = 0  # energy in credits on sale
    reserved_wh: int = 0  # energy in credits reserved for open purchases
    held_wh: int = 0  # bought and settled, held by buyers
    retired_wh: int = 0
    expired_wh: int = 0
    revoked_wh: int = 0
    settled: int = 0  # purchases settled
    receipts: int = 0  # settlement receipts written
    bonds: int = 0  # micro-BLOCK posted by flags of disputes not yet resolved
    pots: int = 0  # slashes held by guilty disputes until their revocation pays them out

    @property
    def held(self) -> int:
        return self.balances + self.stakes + self.escrow + self.bonds + self.pots + self.treasury


_meters = itertools.count(1)


def registration_params(owner: str, **overrides: Any) -> dict[str, Any]:
    """The original description's example registration, plus what a real one needs."""
    params: dict[str, Any] = {
        "owner": owner,
        "display_name": "Sunny Rooftop",
        "capacity_kwh": 15000,
        "price_per_kwh": "0.08",
        "meter_address": f"solar_meter_{next(_meters):03d}",
        "jurisdiction": "US_CA",
        "stake": 10_000 * BLOCK,
        "energy_type": "solar",
        "latitude": "37.7749",
        "longitude": "-122.4194",
        "meter_public_key": Signer.generate("meter").public_key,
    }
    params.update(overrides)
    return params


# The marketplace's receipt signing key in tests (an Ed25519 seed, hex).
RECEIPT_SEED = bytes(range(160, 192)).hex()


def settings_for(operator: Signer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "marketplace_id": MARKETPLACE_ID,
        "operator_public_key": operator.public_key,
        "receipt_signing_key": RECEIPT_SEED,
    }
    return Settings(**(values | overrides))


def memory_market(clock: Clock | None = None) -> MarketHarness:
    state = MemoryState()

    def snapshot() -> Any:
        with state.lock:
            return copy.deepcopy({k: v for k, v in vars(state).items() if k != "lock"})

    def audit() -> Totals:
        with state.lock:
            entries = list(state.entries.values())
            return Totals(
                balances=sum(state.balances.values()),
                stakes=sum(p.stake_micro_block for p in state.providers.values())
                + sum(v.stake_micro_block for v in state.validators.values()),
                treasury=sum(state.treasury.values()),
                deposits=sum(e.micro_block for e in entries if e.kind == EntryKind.DEPOSIT),
                withdrawals=sum(e.micro_block for e in entries if e.kind == EntryKind.WITHDRAWAL),
                minted_wh=sum(c.wh for c in state.credits.values()),
                credits=sum(1 for c in state.credits.values() if c.state != "baseline"),
                escrow=sum(
                    p.escrow_micro_block for p in state.purchases.values() if p.status == "open"
                ),
                available_wh=sum(c.wh for c in state.credits.values() if c.state == "available"),
                reserved_wh=sum(c.wh for c in state.credits.values() if c.state == "reserved"),
                held_wh=sum(c.wh for c in state.credits.values() if c.state == "held"),
                retired_wh=sum(c.wh for c in state.credits.values() if c.state == "retired"),
                expired_wh=sum(c.wh for c in state.credits.values() if c.state == "expired"),
                revoked_wh=sum(c.wh for c in state.credits.values() if c.state == "revoked"),
                settled=sum(1 for p in state.purchases.values() if p.status == "settled"),
                receipts=len(state.receipts),
                bonds=sum(
                    d.bond_micro_block
                    for d in state.disputes.values()
                    if d.status in ("open", "revoking")
                ),
                pots=sum(
                    d.revocation.pot_micro_block
                    for d in state.disputes.values()
                    if d.status == "revoking" and d.revocation is not None
                ),
            )

    return _wire(memory_unit_of_work_factory(state), snapshot, audit, clock)


def racing_dynamodb_market(moto_server: str, stack_prefix: str, connections: int) -> MarketHarness:
    """A market on fresh tables of a moto *server*, for tests that race threads.

    In-process moto does not serialise requests from threads, so its own
    conditions would race, not ours; a server over HTTP evaluates each request
    whole. ``connections``: the client's pool, at least one per racing thread.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_server,
        region_name="us-east-1",
        config=Config(max_pool_connections=connections),
    )
    stack = f"{stack_prefix}-{uuid.uuid4().hex[:8]}"
    return dynamodb_market(client, tables_from_environment(create_tables(client, stack)))


def dynamodb_market(client: Any, tables: Tables, clock: Clock | None = None) -> MarketHarness:
    def snapshot() -> Any:
        # Scan is fine here: this is the test looking at everything, not the product.
        return {
            name: sorted(
                (
                    item
                    for page in client.get_paginator("scan").paginate(TableName=name)
                    for item in page["Items"]
                ),
                key=lambda item: (item["pk"]["S"], item["sk"]["S"]),
            )
            for name in (
                tables.registry,
                tables.ledger,
                tables.credits,
                tables.receipts,
                tables.disputes,
            )
        }

    def audit() -> Totals:
        tables_now = snapshot()
        registry = [from_item(i) for i in tables_now[tables.registry]]
        ledger = [from_item(i) for i in tables_now[tables.ledger]]
        credits = [from_item(i) for i in tables_now[tables.credits]]
        receipts = [from_item(i) for i in tables_now[tables.receipts]]
        disputes = [from_item(i) for i in tables_now[tables.disputes] if i["sk"]["S"] == "DISPUTE"]

        def energy(state: str) -> int:
            return sum(int(i["wh"]) for i in credits if i["state"] == state)

        def total(items: list[dict[str, Any]], **match: str) -> int:
            return sum(
                int(i["micro_block"]) for i in items if all(i.get(k) == v for k, v in match.items())
            )

        return Totals(
            balances=total(ledger, sk="BALANCE"),
            stakes=sum(
                int(i["stake_micro_block"])
                for i in registry
                if i["sk"] == "PROVIDER" or i["sk"].startswith("VALIDATOR#")
            ),
            treasury=total(ledger, pk="TREASURY"),
            deposits=total(ledger, kind="deposit"),
            withdrawals=total(ledger, kind="withdrawal"),
            minted_wh=sum(int(i["wh"]) for i in credits),
            credits=sum(1 for i in credits if i["state"] != "baseline"),
            escrow=sum(
                int(i["escrow_micro_block"])
                for i in ledger
                if i["sk"] == "PURCHASE" and i["status"] == "open"
            ),
            available_wh=energy("available"),
            reserved_wh=energy("reserved"),
            held_wh=energy("held"),
            retired_wh=energy("retired"),
            expired_wh=energy("expired"),
            revoked_wh=energy("revoked"),
            settled=sum(1 for i in ledger if i["sk"] == "PURCHASE" and i["status"] == "settled"),
            receipts=sum(
                1 for i in receipts if i["sk"].startswith("RECEIPT#") and i.get("kind") != "slash"
            ),
            bonds=sum(
                int(f["bond_micro_block"])
                for i in disputes
                if i["status"] in ("open", "revoking")
                for f in i["flags"]
            ),
            pots=sum(
                int(i["revocation"]["slash_micro_block"])
                - int(i["revocation"]["refunded_micro_block"])
                for i in disputes
                if i["status"] == "revoking"
            ),
        )

    harness = _wire(lambda: DynamoUnitOfWork(client, tables), snapshot, audit, clock)
    harness.backend = "dynamodb"
    return harness


def _wire(
    factory: Callable[[], Any],
    snapshot: Callable[[], Any],
    audit: Callable[[], Totals],
    clock: Clock | None,
) -> MarketHarness:
    clock = clock or Clock()
    operator = Signer.generate("operator")
    settings = settings_for(operator)
    deps = Dependencies(
        settings=settings,
        unit_of_work=factory,
        clock=clock,
        receipt_key=lambda: receipt_signing_key(settings),
    )
    dispatcher = Dispatcher(registry, deps)
    client = MarketplaceClient(dispatcher.handle, MARKETPLACE_ID, clock=clock)
    return MarketHarness(deps, dispatcher, client, operator, clock, snapshot, audit)


def tables_from_environment(env: dict[str, str]) -> Tables:
    return Tables(
        registry=env["REGISTRY_TABLE"],
        ledger=env["LEDGER_TABLE"],
        credits=env["CREDITS_TABLE"],
        receipts=env["RECEIPTS_TABLE"],
        disputes=env["DISPUTES_TABLE"],
        analytics=env["ANALYTICS_TABLE"],
        connections=env["CONNECTIONS_TABLE"],
    )


@dataclass
class SimulatedMeter:
    """A meter's signing side, as the protocol describes it (for tests)."""

    meter_address: str
    provider_id: str
    key: Signer
    owner: Signer | None = None  # the provider's owner, when the test made it

    def reading(self, counter_wh: int, timestamp_ms: int, **overrides: Any) -> dict[str, Any]:
        payload = signed_payload(
            self.key.key, self.provider_id, self.meter_address, counter_wh, timestamp_ms
        )
        payload.update(overrides)
        return payload

    def payload(self, counter_wh: int, timestamp_ms: int, **overrides: Any) -> bytes:
        return encode(self.reading(counter_wh, timestamp_ms, **overrides))


def metered_provider(
    harness: MarketHarness, owner: str = "alice.theblock", **overrides: Any
) -> SimulatedMeter:
    """A funded owner, a registered provider and the meter that signs for it."""
    signer = harness.funded_account(owner, block=20_000)
    key = Signer.generate("meter")
    provider = harness.provider(signer, meter_public_key=key.public_key, **overrides)
    return SimulatedMeter(provider["meter_address"], provider["provider_id"], key, signer)


def selling_provider(
    harness: MarketHarness,
    credits_wh: Sequence[int],
    owner: str = "seller.theblock",
    **overrides: Any,
) -> SimulatedMeter:
    """A provider whose meter has minted one credit per amount, oldest first."""
    from chalicelib.services.ingest import Status, record_payload

    meter = metered_provider(harness, owner, capacity_kwh=10_000, **overrides)
    start_ms = harness.clock.now * 1000 - (len(credits_wh) + 1) * 60_000
    counter = 1_000
    readings = [(counter, start_ms)]
    for n, wh in enumerate(credits_wh, start=1):
        counter += wh
        readings.append((counter, start_ms + n * 60_000))
    for counter_wh, at_ms in readings:
        outcome = record_payload(
            harness.deps,
            meter.payload(counter_wh, at_ms),
            topic_meter_address=meter.meter_address,
            received_at_ms=harness.clock.now * 1000,
        )
        assert outcome.status == Status.ACCEPTED, outcome
    return meter


def assert_conserved(harness: MarketHarness) -> Totals:
    """BLOCK and Wh are where the brief says they must be, summed from storage."""
    totals = harness.audit()
    assert totals.held == totals.deposits - totals.withdrawals, totals
    assert totals.minted_wh == (
        totals.available_wh
        + totals.reserved_wh
        + totals.held_wh
        + totals.retired_wh
        + totals.expired_wh
        + totals.revoked_wh
    ), totals
    assert totals.settled == totals.receipts, totals  # one receipt per settlement
    return totals


def buy(
    harness: MarketHarness,
    buyer: Signer,
    provider_id: str,
    kwh: Any,
    max_price: Any = "0.10",
    **extra: Any,
) -> dict[str, Any]:
    params = {
        "provider_id": provider_id,
        "kwh_amount": kwh,
        "max_price_per_kwh": max_price,
        **extra,
    }
    result: dict[str, Any] = harness.client.call("energy.purchaseEnergy", params, buyer)
    return result


def with_settings(harness: MarketHarness, **overrides: Any) -> MarketHarness:
    """The same market and storage under other settings (a fee, a window)."""
    settings = harness.deps.settings.model_copy(update=overrides)
    deps = replace(harness.deps, settings=settings)
    dispatcher = Dispatcher(registry, deps)
    client = MarketplaceClient(dispatcher.handle, MARKETPLACE_ID, clock=harness.clock)
    return replace(harness, deps=deps, dispatcher=dispatcher, client=client)


def validators(harness: MarketHarness, *names: str) -> list[Signer]:
    """Accounts with the validator role and the stake to sit on a panel (1,000 BLOCK)."""
    signers = []
    for name in names:
        signer = harness.funded_account(name, block=1_000)
        harness.client.call(
            "energy.grantRole", {"account": name, "role": "validator"}, harness.operator
        )
        harness.client.call(
            "energy.stakeAsValidator", {"amount_micro_block": 1_000 * BLOCK}, signer
        )
        signers.append(signer)
    return signers


def stream_records(client: Any, table_name: str) -> list[dict[str, Any]]:
    """Every record of a table's stream, as Lambda hands them to a function."""
    streams = boto3.client("dynamodbstreams", region_name=client.meta.region_name)
    arn = client.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            records += lambda_event(response["Records"], arn, shard["ShardId"])["Records"]
            iterator = response.get("NextShardIterator")
    return records


def registry_stream(client: Any, tables: Tables) -> list[dict[str, Any]]:
    return stream_records(client, tables.registry)


def provider_item_as_ingest_reads(client: Any, tables: Tables, provider_id: str) -> dict[str, Any]:
    """The provider's item, projected as ingest reads it once its meter has a reading."""
    from chalicelib.adapters.dynamodb.layout import provider_key
    from chalicelib.adapters.dynamodb.meters import INGEST_PROJECTION

    expression, names = INGEST_PROJECTION
    item: dict[str, Any] = client.get_item(
        TableName=tables.registry,
        Key=provider_key(provider_id),
        ProjectionExpression=expression,
        ExpressionAttributeNames=names,
    )["Item"]
    return item


def restore_lost_credits(client: Any, deps: Dependencies, tables: Tables) -> int:
    """What the registry stream's reader does for credits (``watch_meters``):
    writes each accepted reading's credit that has no record; how many."""
    lifetime = deps.settings.credit_lifetime_ms
    return restore_credits(deps, credits_from_records(registry_stream(client, tables), lifetime))


def flag(
    harness: MarketHarness, flagger: Signer, reason: str = "output at night", **subject: Any
) -> dict[str, Any]:
    params = {**subject, "reason": reason, "evidence": ["https://example.org/weather"]}
    result: dict[str, Any] = harness.client.call("energy.flagDispute", params, flagger)
    return result


class StreamPump:
    """The registry's and the ledger's streams on moto, folded into the analytics
    as the two stream consumers fold them in Lambda: every new record once, in
    stream order, a batch of at most ``batch_size`` records at a time, with its
    shard (``pump()`` folds what is new and returns how many records it read).

    Like Lambda, it keeps its place in each shard as the sequence number of
    the last record handled, and opens a fresh iterator after it at each call
    (moto's own rollback of a refused transaction replaces a table's stream
    shard, which an old iterator would go on reading).
    """

    def __init__(self, client: Any, deps: Dependencies, tables: Tables) -> None:
        self.deps = deps
        self.streams = boto3.client("dynamodbstreams", region_name=client.meta.region_name)
        self.arns = [
            client.describe_table(TableName=name)["Table"]["LatestStreamArn"]
            for name in (tables.registry, tables.ledger)
        ]
        self.handled_up_to: dict[tuple[str, str], str] = {}  # (stream, shard) -> sequence
        self.delivered: list[dict[str, Any]] = []  # the events, for redelivery
        self.runs: list[analytics.FoldRun] = []

    def __call__(self, batch_size: int = 100) -> int:
        handled = 0
        for arn in self.arns:
            description = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]
            for shard in description["Shards"]:
                handled += self._drain(arn, shard["ShardId"], batch_size)
        return handled

    def _drain(self, arn: str, shard_id: str, batch_size: int) -> int:
        key = (arn, shard_id)
        position: dict[str, str] = (
            {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": self.handled_up_to[key],
            }
            if key in self.handled_up_to
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **position)[
            "ShardIterator"
        ]
        handled = 0
        while True:
            response = self.streams.get_records(ShardIterator=iterator, Limit=batch_size)
            records = response["Records"]
            if not records:
                return handled
            iterator = response["NextShardIterator"]
            event = lambda_event(records, arn, shard_id)
            self.delivered.append(event)
            self.runs.append(self.fold(event))
            self.handled_up_to[key] = records[-1]["dynamodb"]["SequenceNumber"]
            handled += len(records)

    def fold(self, event: dict[str, Any]) -> analytics.FoldRun:
        """One stream event's records folded, as ``fold_event`` folds them in Lambda."""
        batch = contributions(event["Records"], analytics.buckets_of(self.deps))
        return analytics.fold(self.deps, shard_of(event), batch)
