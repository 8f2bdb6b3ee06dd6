"""Analytics benchmark: what the market's figures cost to read as history grows, and
what folding the streams into them costs per reading and per purchase.

Run from the repository root: ``.venv/bin/python bench/analytics.py`` (``make
bench`` runs it with the others). It prints figures; it asserts only that what
it measures did its work. moto runs in-process; every DynamoDB request the app
makes is recorded and costed by AWS's on-demand rules from item sizes
(``bench/_capacity.py``), as in the other benchmarks.

1. **Reads as history grows.** A market of 20 providers registered through the
   API (4 energy types, 4 jurisdictions), then a history of 1,000, 10,000,
   100,000 or 1,000,000 stream records spread evenly over 30 days: half of them accepted
   meter readings (the 20 meters in turn), the other half purchases (each
   purchase is 3 records: the purchase made, the buyer's balance with its
   purchase time, the purchase settled; 50 buyers). The records become the
   contributions the stream decoder makes of them (``chalicelib.domain.analytics``:
   ``meter_change``, ``purchase_change``, ``buyer_change``, ``provider_change``),
   on 2 shards per stream, in batches of up to 100 records of a shard and of a
   day, and are folded by the service's own fold (``chalicelib.services.analytics.fold``),
   with the clock at each batch's last record.

   For 1,000 records the history is folded on moto directly. Going through moto
   at 10,000 and more would take most of an hour (moto serialises every item
   it returns slowly), so there the same fold runs on the in-memory adapter and
   its aggregates are written to moto with the DynamoDB adapter's own item
   mapping (``aggregate_to_item``, with the time of each aggregate's last write,
   which its newest shard mark holds). For 1,000 records the script does both
   and checks that the items are identical.

   Then, 30 seconds after the last record, each read method is called once
   through the JSON-RPC dispatcher on the DynamoDB adapter.

2. **Writes per record, from the real streams.** 100 providers registered
   through the API, each meter with two readings already folded. Then, three
   times, one reading from each of the 100 meters (through the ingest use case,
   ``services.ingest.record_payload``), and the registry's stream folded by
   ``tests.support.StreamPump`` (moto's stream, ``contributions``, ``fold``)
   in Lambda batches of 100, 10 and 1 records. Then 100 purchases of 0.1 kWh by
   20 buyers across 10 providers (``energy.purchaseEnergy``), the ledger's and
   the registry's streams folded, and the 100 purchases settled by their buyers
   (``energy.settle``) and folded again: at batches of 100, 10 and 1.

Costs do not depend on the machine; the wall times at the end do.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final

import boto3
from moto import mock_aws

from bench._capacity import CapacityMeter, RequestTotals, item_size
from bench._fake_aws import REGION, use_fake_aws_environment
from bench._printing import print_table, say
from bench.settlement import install_string_key_sort
from chalicelib.adapters.dynamodb.analytics import aggregate_from_item, aggregate_to_item
from chalicelib.adapters.dynamodb.codec import Item
from chalicelib.adapters.memory import MemoryState, memory_unit_of_work_factory
from chalicelib.domain import analytics as domain
from chalicelib.domain.analytics import (
    Aggregate,
    AggregateKey,
    Contribution,
    Delta,
    Mark,
    MeterFacts,
    ProviderFacts,
    TradeFacts,
)
from chalicelib.services import analytics
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ingest import Status, record_payload
from infra.emulation import create_tables
from infra.moto_server import install_item_level_rollback
from tests.support import (
    NOW,
    Clock,
    MarketHarness,
    SimulatedMeter,
    StreamPump,
    dynamodb_market,
    metered_provider,
    tables_from_environment,
)

HISTORY_SIZES: Final = (1_000, 10_000, 100_000, 1_000_000)
HISTORY_DAYS: Final = 30
DAY_MS: Final = 86_400_000
PROVIDERS: Final = 20
BUYERS: Final = 50
SHARDS_PER_STREAM: Final = 2
BATCH: Final = 100  # the consumers' Lambda batch size (app.py)
ENERGY_TYPES: Final = ("solar", "wind", "hydro", "battery")
JURISDICTIONS: Final = ("US_CA", "US_TX", "DE_BY", "ES_MD")
# A history record's kind, in turn: half readings, half purchases (3 records each).
KINDS: Final = ("reading", "reading", "reading", "made", "bought", "settled")
START_MS: Final = NOW * 1000  # 2026-01-01T00:00:00Z
MEASURED_AT_MS: Final = START_MS + HISTORY_DAYS * DAY_MS + 30_000

WRITE_METERS: Final = 100
WRITE_BUYERS: Final = 20
WRITE_SELLERS: Final = 10
WRITE_BATCHES: Final = (100, 10, 1)
QUARTER_S: Final = 900
READING_WH: Final = 2_500  # each reading mints 2.5 kWh: enough on sale for the purchases


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Cost(RequestTotals):
    label: str = ""

    def by_operation(self) -> str:
        return ", ".join(f"{n} {op}" for op, n in sorted(self.operations.items()))


@contextmanager
def measured(meter: CapacityMeter, label: str, into: list[Cost]) -> Iterator[None]:
    with meter.measuring() as requests:
        yield
    failed = [r.error for r in requests if r.error]
    assert not failed, failed
    into.append(Cost(list(requests), label))


@dataclass(frozen=True)
class Seller:
    provider_id: str
    energy_type: str
    jurisdiction: str
    price: int  # micro-BLOCK per kWh


def register_sellers(market: MarketHarness, count: int) -> list[tuple[Seller, SimulatedMeter]]:
    """``count`` providers registered through the API, each with its meter."""
    sellers = []
    for n in range(count):
        energy_type = ENERGY_TYPES[n % len(ENERGY_TYPES)]
        jurisdiction = JURISDICTIONS[n // len(ENERGY_TYPES) % len(JURISDICTIONS)]
        price = 50_000 + 5_000 * (n % 11)
        meter = metered_provider(
            market,
            f"seller-{n:03d}.theblock",
            energy_type=energy_type,
            jurisdiction=jurisdiction,
            price_per_kwh=str(Decimal(price) / 1_000_000),
            capacity_kwh=1_000,
        )
        sellers.append((Seller(meter.provider_id, energy_type, jurisdiction, price), meter))
    return sellers


# -- 1. a synthetic history ------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    shard: str
    last_at_ms: int
    contributions: list[Contribution]
    records: int


@dataclass
class HistoryWriter:
    """Stream records of a market's history, as contributions, on their shards."""

    sellers: Sequence[Seller]
    buckets: domain.Buckets
    sequence: int = 10**20  # stream sequence numbers have 21 digits or more
    by_shard: dict[str, list[tuple[int, str, list[tuple[AggregateKey, Delta]]]]] = field(
        default_factory=dict
    )
    meters: dict[int, MeterFacts] = field(default_factory=dict)
    bought: dict[int, int] = field(default_factory=dict)
    made: dict[int, tuple[str, TradeFacts]] = field(default_factory=dict)
    sold: dict[int, int] = field(default_factory=dict)  # by seller index
    origins: dict[int, dict[tuple[str, str], int]] = field(default_factory=dict)  # by buyer

    def add(self, shard: str, at_ms: int, changes: list[tuple[AggregateKey, Delta]]) -> None:
        self.sequence += 1
        record = (at_ms, domain.padded_sequence(str(self.sequence)), changes)
        self.by_shard.setdefault(shard, []).append(record)

    def providers(self) -> None:
        for n, seller in enumerate(self.sellers):
            facts = self._seller_facts(n)
            shard = f"registry-{n % SHARDS_PER_STREAM}"
            self.add(shard, START_MS, domain.provider_change(seller.provider_id, None, facts))

    def _seller_facts(self, index: int, sold_at_ms: int | None = None) -> ProviderFacts:
        seller = self.sellers[index]
        return ProviderFacts(
            seller.energy_type,
            "active",
            1_000_000,
            seller.price,
            0,
            sold_wh=self.sold.get(index, 0),
            sold_at_ms=sold_at_ms,
        )

    def record(self, number: int, at_ms: int) -> None:
        kind = KINDS[number % len(KINDS)]
        round_number = number // len(KINDS)
        if kind == "reading":
            reading = round_number * 3 + number % len(KINDS)
            index = reading % len(self.sellers)
            seller = self.sellers[index]
            before = self.meters.get(index, MeterFacts(seller.energy_type, None, None, None))
            wh = 200 + (reading * 37) % 500
            after = MeterFacts(
                seller.energy_type, (before.counter_wh or 1_000) + wh, at_ms, f"reading-{reading}"
            )
            self.meters[index] = after
            changes = domain.meter_change(before, after, self.buckets)
            self.add(f"registry-{index % SHARDS_PER_STREAM}", at_ms, changes)
        elif kind == "made":
            index = (round_number * 7) % len(self.sellers)
            seller = self.sellers[index]
            wh = 1_000 * (1 + index % 5) + 100 * (round_number % 7)
            trade = TradeFacts(
                purchase_id=f"pur-{round_number:032x}",
                provider_id=seller.provider_id,
                energy_type=seller.energy_type,
                jurisdiction=seller.jurisdiction,
                wh=wh,
                micro_block=math.ceil(seller.price * wh / 1000),
                price_micro_block_per_kwh=seller.price,
                status="open",
                created_at_ms=at_ms,
                closed_at_ms=None,
            )
            shard = f"ledger-{round_number % SHARDS_PER_STREAM}"
            self.made[round_number] = (shard, trade)
            self.add(shard, at_ms, domain.purchase_change(None, trade, self.buckets))
        elif kind == "bought":
            buyer = round_number % BUYERS
            changes = domain.buyer_change(self.bought.get(buyer), at_ms, self.buckets)
            self.bought[buyer] = at_ms
            self.add(f"ledger-{(buyer + 1) % SHARDS_PER_STREAM}", at_ms, changes)
        else:
            shard, trade = self.made.pop(round_number)
            settled = replace(trade, status="settled", closed_at_ms=at_ms)
            self.add(shard, at_ms, domain.purchase_change(trade, settled, self.buckets))
            # A settlement also moves its seller's sales (registry) and its
            # buyer's bought energy (ledger), as the real records do.
            index = next(
                n for n, s in enumerate(self.sellers) if s.provider_id == trade.provider_id
            )
            unsold = self._seller_facts(index)
            self.sold[index] = self.sold.get(index, 0) + trade.wh
            sold = self._seller_facts(index, sold_at_ms=at_ms)
            self.add(
                f"registry-{index % SHARDS_PER_STREAM}",
                at_ms,
                domain.provider_change(trade.provider_id, unsold, sold),
            )
            buyer = round_number % BUYERS
            held = self.origins.setdefault(buyer, {})
            origin = (trade.energy_type, trade.jurisdiction)
            now_held = {**held, origin: held.get(origin, 0) + trade.wh}
            self.add(
                f"ledger-{(buyer + 1) % SHARDS_PER_STREAM}",
                at_ms,
                domain.bought_change(held, now_held, at_ms, self.buckets),
            )
            self.origins[buyer] = now_held

    def batches(self) -> list[Batch]:
        """The records added since the last call: each shard's in order, up to BATCH a
        batch; the batches in the order of their last record."""
        found = []
        for shard, records in self.by_shard.items():
            for start in range(0, len(records), BATCH):
                chunk = records[start : start + BATCH]
                contributions = [
                    Contribution(sequence, key, delta)
                    for _, sequence, changes in chunk
                    for key, delta in changes
                ]
                found.append(Batch(shard, chunk[-1][0], contributions, len(chunk)))
        self.by_shard.clear()
        return sorted(found, key=lambda b: (b.last_at_ms, b.shard))


def history(size: int, sellers: Sequence[Seller], buckets: domain.Buckets) -> Iterator[Batch]:
    """The batches of a history of ``size`` records, a day at a time (a batch holds
    records of one day: the history is never all in memory at once)."""
    writer = HistoryWriter(sellers, buckets)
    writer.providers()
    span = HISTORY_DAYS * DAY_MS - 60_000
    day_ends = START_MS + DAY_MS
    for number in range(size):
        at_ms = START_MS + 60_000 + number * span // size
        if at_ms >= day_ends:
            yield from writer.batches()
            day_ends = domain.start_of(at_ms, DAY_MS) + DAY_MS
        writer.record(number, at_ms)
    yield from writer.batches()


def fold_history(deps: Dependencies, clock: Clock, batches: Iterable[Batch]) -> int:
    """Fold the batches in turn, the clock at each one's last record; how many."""
    folded = 0
    for batch in batches:
        clock.now = batch.last_at_ms // 1000 + 1
        run = analytics.fold(deps, batch.shard, batch.contributions)
        assert run.conflicts == 0, run
        folded += 1
    return folded


def last_write_ms(aggregate: Aggregate) -> int:
    """When the fold last wrote an aggregate: the newest of its shard marks was set then."""
    return max(mark.set_at_ms for mark in aggregate.marks.values())


def items_of(state: MemoryState) -> list[Item]:
    """The in-memory aggregates as the DynamoDB adapter would have stored them."""
    return [
        aggregate_to_item(
            replace(aggregate, version=aggregate.version - 1), last_write_ms(aggregate)
        )
        for aggregate, _ in state.aggregates.values()
    ]


def stored_items(client: Any, table: str) -> list[Item]:
    # Scan: the script checking what the fold stored, not the product reading.
    pages = client.get_paginator("scan").paginate(TableName=table)
    return [item for page in pages for item in page["Items"]]


def decoded(items: Sequence[Item]) -> dict[tuple[str, str], Any]:
    return {(i["pk"]["S"], i["sk"]["S"]): aggregate_from_item(i) for i in items}


def write_items(client: Any, table: str, items: Sequence[Item]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        left: dict[str, Any] = {table: requests}
        while left:
            left = client.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}


READS: Final[Sequence[tuple[str, str, dict[str, Any]]]] = (
    ("getMarketStats", "energy.getMarketStats", {}),
    ("getPriceHistory, 24 h", "energy.getPriceHistory", {"hours": 24}),
    ("getPriceHistory, 30 days", "energy.getPriceHistory", {"hours": 720}),
    (
        "getPriceHistory, 30 days, one type",
        "energy.getPriceHistory",
        {"hours": 720, "energy_type": "wind"},
    ),
    ("getMarketActivity, 24 h", "energy.getMarketActivity", {"hours": 24}),
    (
        "getMarketActivity, 30 days by day",
        "energy.getMarketActivity",
        {"hours": 720, "daily": True},
    ),
    ("getTopProviders, 24 h", "energy.getTopProviders", {"window": "24h", "limit": 10}),
    ("getTopProviders, 7 days", "energy.getTopProviders", {"window": "7d", "limit": 10}),
    ("getTopProviders, all time", "energy.getTopProviders", {"window": "all", "limit": 10}),
)


@dataclass
class HistoryRun:
    size: int
    batches: int
    aggregates: int
    how: str
    reads: dict[str, Cost]
    answers: dict[str, Any]
    seconds: dict[str, float]


def run_history(size: int) -> HistoryRun:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        inspector = boto3.client("dynamodb", region_name=REGION)
        tables = tables_from_environment(create_tables(client, f"bench-analytics-{size}"))
        clock = Clock(NOW)
        market = dynamodb_market(client, tables, clock)
        meter = CapacityMeter(client, inspector)
        sellers = [s for s, _ in register_sellers(market, PROVIDERS)]
        buckets = analytics.buckets_of(market.deps)
        seconds["setup"] = time.perf_counter() - started

        started = time.perf_counter()
        state = MemoryState()
        in_memory = replace(market.deps, unit_of_work=memory_unit_of_work_factory(state))
        batches = fold_history(in_memory, clock, history(size, sellers, buckets))
        expected = items_of(state)
        seconds["fold in memory"] = time.perf_counter() - started
        started = time.perf_counter()
        if size == HISTORY_SIZES[0]:
            fold_history(market.deps, clock, history(size, sellers, buckets))
            stored = stored_items(inspector, tables.analytics)
            # Compared as aggregates: an ADD leaves a counter that fell to zero
            # in the item, where a put of the same aggregate leaves it out.
            assert decoded(stored) == decoded(expected), "the two folds stored different items"
            how = "folded on moto (and in memory: the same items)"
            seconds["fold on moto"] = time.perf_counter() - started
        else:
            write_items(inspector, tables.analytics, expected)
            how = "folded in memory, written with aggregate_to_item"
            seconds["write to moto"] = time.perf_counter() - started

        started = time.perf_counter()
        clock.now = MEASURED_AT_MS // 1000
        reads: dict[str, Cost] = {}
        answers: dict[str, Any] = {}
        for label, method, params in READS:
            costs: list[Cost] = []
            with measured(meter, label, costs):
                answers[label] = market.client.call(method, params)
            reads[label] = costs[0]
        seconds["reads"] = time.perf_counter() - started
    stats = answers["getMarketStats"]
    assert stats["energy_traded"]["wh_24h"] > 0 and stats["top_providers"], stats
    assert answers["getPriceHistory, 30 days"]["buckets"], "no price history"
    return HistoryRun(size, batches, len(expected), how, reads, answers, seconds)


def print_history(runs: Sequence[HistoryRun]) -> None:
    print("1. Reads as history grows (each method called once, 30 s after the last record)")
    print()
    rows = []
    for run in runs:
        buckets = len(run.answers["getPriceHistory, 30 days"]["buckets"])
        rows.append(
            [
                f"{run.size:,}",
                f"{run.batches:,}",
                f"{run.aggregates:,}",
                f"{buckets}",
                run.how,
            ]
        )
    print_table(
        ["history", "batches folded", "aggregates stored", "hours with trades (30 d)", "how"],
        rows,
        right={0, 1, 2, 3},
    )
    print()
    rows = []
    for label, _, _ in READS:
        for run in runs:
            cost = run.reads[label]
            rows.append(
                [
                    label if run is runs[0] else "",
                    f"{run.size:,}",
                    str(len(cost.requests)),
                    cost.by_operation(),
                    str(cost.items_read),
                    f"{cost.rcu:g}",
                ]
            )
    print_table(
        ["call", "history", "requests", "by operation", "items read", "RCU"],
        rows,
        right={1, 2, 4, 5},
    )
    print()
    varying = []
    for label, _, _ in READS:
        counts = [len(run.reads[label].requests) for run in runs]
        if len(set(counts)) > 1:
            varying.append(f"{label} ({' -> '.join(map(str, counts))})")
    before, last = runs[-2], runs[-1]
    same_items = all(
        before.reads[label].items_read == last.reads[label].items_read for label, _, _ in READS
    )
    rcu_growth = max(last.reads[label].rcu / before.reads[label].rcu - 1 for label, _, _ in READS)
    but = (
        f" but {', '.join(varying)}: one GetItem per leader listed, and a sparse history has "
        "fewer sellers in a window"
        if varying
        else ""
    )
    say(
        f"Requests the same at every history size for every call{but}. From {before.size:,} "
        f"to {last.size:,} records: items read the same for every call: "
        f"{'yes' if same_items else 'NO'}; RCU at most {rcu_growth:.1%} more (the sums have "
        "more digits). Below that, the window's buckets are not all there yet, or hold fewer "
        "kinds of counters (a bucket of trades keeps one per energy type and per origin, type "
        "and jurisdiction, settled in its hour): a sparse history reads less, never more."
    )
    print()
    say(
        "items read: the items the requests returned or read (a COUNT Query reads index entries "
        "it does not return). RCU by AWS's on-demand rules from the items' sizes: a Query 0.5 "
        "per 4 KB of all it read and a GetItem 0.5 per 4 KB, eventually consistent; a "
        "BatchGetItem 1 per 4 KB of each item, strongly consistent. getMarketStats reads: the "
        "state and the totals (one BatchGetItem, the fold's own read), the 24 hourly buckets of trades, meters and buyers and the 96 "
        "reporting slots (a Query each), the open disputes (a COUNT Query), the leaderboard's "
        "two day partitions (a Query each) and each leader's provider (a GetItem)."
    )
    print()


# -- 2. the fold's writes per reading and per purchase ------------------------------------------


@dataclass
class FoldCost:
    label: str
    batch_size: int
    work: int  # readings or purchases
    records: int
    folds: int
    aggregates: int
    cost: Cost


def pump_measured(
    pump: StreamPump, meter: CapacityMeter, label: str, batch_size: int, work: int
) -> FoldCost:
    runs_before = len(pump.runs)
    costs: list[Cost] = []
    with measured(meter, label, costs):
        records = pump(batch_size)
    runs = pump.runs[runs_before:]
    assert records > 0 and all(r.conflicts == 0 for r in runs), runs
    return FoldCost(
        label,
        batch_size,
        work,
        records,
        sum(1 for r in runs if r.contributions),
        sum(r.aggregates for r in runs),
        costs[0],
    )


@dataclass
class WriteRun:
    folds: list[FoldCost]
    marks_bytes: int
    seconds: dict[str, float]


def run_writes() -> WriteRun:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    results: list[FoldCost] = []
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        inspector = boto3.client("dynamodb", region_name=REGION)
        tables = tables_from_environment(create_tables(client, "bench-analytics-writes"))
        clock = Clock(NOW)
        market = dynamodb_market(client, tables, clock)
        meter = CapacityMeter(client, inspector)
        pump = StreamPump(client, market.deps, tables)
        sellers = register_sellers(market, WRITE_METERS)
        counters = dict.fromkeys(range(WRITE_METERS), 1_000)

        def read_all(at_s: int) -> None:
            clock.now = at_s
            for n, (_, simulated) in enumerate(sellers):
                counters[n] += READING_WH
                outcome = record_payload(
                    market.deps,
                    simulated.payload(counters[n], at_s * 1000),
                    topic_meter_address=simulated.meter_address,
                    received_at_ms=at_s * 1000,
                )
                assert outcome.status == Status.ACCEPTED, outcome

        at_s = NOW + QUARTER_S
        for _ in range(2):  # a baseline and a first credit, folded before measuring
            read_all(at_s)
            at_s += QUARTER_S
        pump()
        seconds["setup"] = time.perf_counter() - started

        started = time.perf_counter()
        for batch_size in WRITE_BATCHES:
            read_all(at_s)
            at_s += QUARTER_S
            label = f"{WRITE_METERS} readings, one from each of {WRITE_METERS} meters"
            results.append(pump_measured(pump, meter, label, batch_size, WRITE_METERS))

        buyers = [
            market.funded_account(f"buyer-{n:02d}.theblock", block=100) for n in range(WRITE_BUYERS)
        ]
        pump()
        for batch_size in WRITE_BATCHES:
            clock.now = at_s
            made = []
            for n in range(100):
                params = {
                    "provider_id": sellers[n % WRITE_SELLERS][0].provider_id,
                    "kwh_amount": "0.1",
                    "max_price_per_kwh": "1",
                }
                made.append(
                    (
                        buyers[n % WRITE_BUYERS],
                        market.client.call(
                            "energy.purchaseEnergy", params, buyers[n % WRITE_BUYERS]
                        ),
                    )
                )
            label = f"100 purchases made, {WRITE_BUYERS} buyers, {WRITE_SELLERS} providers"
            results.append(pump_measured(pump, meter, label, batch_size, 100))
            clock.now = at_s + 60
            for buyer, purchase in made:
                market.client.call(
                    "energy.settle", {"transaction_id": purchase["transaction_id"]}, buyer
                )
            results.append(pump_measured(pump, meter, "the same 100 settled", batch_size, 100))
            at_s += QUARTER_S
        seconds["measured"] = time.perf_counter() - started

        one = Aggregate(domain.TOTALS, marks={"0123456789abcdef": Mark("9" * 40, MEASURED_AT_MS)})
        marks_bytes = item_size(aggregate_to_item(one, MEASURED_AT_MS)) - item_size(
            aggregate_to_item(Aggregate(domain.TOTALS), MEASURED_AT_MS)
        )
    return WriteRun(results, marks_bytes, seconds)


def print_writes(run: WriteRun) -> None:
    print("2. Writes: folding the streams, per accepted reading and per purchase")
    print()
    rows = []
    for fold in run.folds:
        cost, work = fold.cost, fold.work
        rows.append(
            [
                fold.label,
                str(fold.batch_size),
                str(fold.records),
                str(fold.folds),
                str(len(cost.requests)),
                f"{cost.rcu:g}",
                f"{cost.wcu_table:g} + {cost.wcu_index:g}",
                f"{len(cost.requests) / work:.2f}",
                f"{cost.rcu / work:.2f}",
                f"{(cost.wcu_table + cost.wcu_index) / work:.2f}",
            ]
        )
    print_table(
        [
            "what the streams carried",
            "batch",
            "records",
            "folds",
            "requests",
            "RCU",
            "WCU table + GSI",
            "requests each",
            "RCU each",
            "WCU each",
        ],
        rows,
        right=set(range(1, 10)),
    )
    print()
    for fold in run.folds:
        if fold.batch_size == BATCH:
            say(f"{fold.label}, batch {BATCH}: {fold.cost.by_operation()}", indent="  ")
    print()
    say(
        "records: stream records the consumers read (a reading changes its meter and its "
        "provider's energy on sale; a purchase its buyer's balance, the purchase, the provider, "
        "and a nonce and ledger entries the analytics skip). folds: batches with something to "
        "count. Each fold writes each aggregate it touches once: counters with one UpdateItem "
        "that ADDs (no read), trade buckets and sellers read in one strongly consistent "
        "BatchGetItem and put whole (a PutItem conditional on the version read). "
        '"each": per reading or per purchase. A seller\'s aggregate is in the three leaderboard '
        f"indexes (the GSI WCU). A shard's mark adds {run.marks_bytes} bytes to every aggregate "
        "the shard wrote in the last 25 hours."
    )
    print()


def main() -> int:
    started = time.perf_counter()
    use_fake_aws_environment()
    install_item_level_rollback()
    install_string_key_sort()
    runs = []
    for size in HISTORY_SIZES:
        log(f"history of {size:,} records")
        runs.append(run_history(size))
    log("writes per reading and per purchase")
    writes = run_writes()

    print("Analytics: what the figures cost to read as history grows, and to keep")
    print("=" * 70)
    print()
    say(
        "moto in-process (mock_aws). RCU and WCU are computed from item sizes by AWS's on-demand "
        "rules (bench/_capacity.py). Default settings: hourly buckets, 15-minute reporting slots."
    )
    print()
    print_history(runs)
    print_writes(writes)
    for run in runs:
        spent = ", ".join(f"{k} {v:.0f} s" for k, v in run.seconds.items())
        print(f"Wall time, history {run.size:,}: {spent}")
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in writes.seconds.items())
    print(f"Wall time, writes: {spent}")
    print(f"Total run time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
