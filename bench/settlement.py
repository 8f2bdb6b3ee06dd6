"""Settlement benchmark: what one run of each scheduled job costs as history grows.

Run from the repository root: ``.venv/bin/python bench/settlement.py`` (or
``make bench``). It prints figures; it asserts only that the runs it measures
do their work (100 purchases settled, 100 credits expired, nothing failed).

The question (the issue): one settlement run and one expiry run with 100
purchases (100 credits) due must read and request the same whatever the
history behind them: 1,000, 5,000 or 10,000 settled purchases. Both jobs read
only the hours from their watermark to now in sparse indexes (PurchasesDue,
ExpiringBySlot) that settled purchases and sold or expired credits have left
(see chalicelib/adapters/due_work.py).

Each history size gets a fresh market (moto in-process, ``mock_aws``, tables
from infra/template.yaml via ``infra.emulation``):

1. Due work, through the real code paths: 10 providers registered through
   the API, each with 20 one-kWh credits minted from signed meter readings
   (``services.ingest.record_payload``); 10 buyers each buy 1 kWh from each
   provider through ``energy.purchaseEnergy`` (100 purchases: the oldest 10
   credits of every provider). The other 100 credits stay on sale.
   Settings: dispute window 24 h (the default), credit lifetime 24 h (so the
   purchases and the unsold credits fall due in the same hour), market fee
   1 % (so settlement writes the treasury, as it would in production).
2. History, written directly with the adapter's own item mapping
   (``purchase_to_item``, ``credit_to_item``, ``receipt_to_item``,
   ``entry_to_item``) and BatchWriteItem: N settled purchases of the same
   providers and buyers, each with its held credit, its PURCHASE and SALE
   ledger entries and its signed receipt, linked into the providers' receipt
   chains (whose heads the due settlements then extend); plus N expired
   credits. Their due and expiry times are spread over the 50 hours the two
   runs of each job read, so an index that kept them would show it. Going
   through the API instead would take hours at these sizes: moto's
   TransactWriteItems deep-copies every table it touches.
3. Two runs of each job, every DynamoDB request recorded on the app's client
   (``bench/_capacity.py``): one an hour before the work falls due (the run
   before; the first run of a job, with no watermark yet, reads the 48 hours
   behind now and the current one), and the measured one, an hour later,
   with the 100 purchases and 100 credits due.

Capacity units are computed from item sizes by AWS's on-demand rules, as in
the other benchmarks (moto's ConsumedCapacity is a constant per operation).

moto speed-ups (emulator only; what is stored, what is returned and what is
recorded are unchanged):

- moto's TransactWriteItems deep-copies every table it touches so that it can
  roll back a cancelled transaction: with 30,000 items in one table, about
  6 s per transaction here. ``infra.moto_server.install_item_level_rollback``
  (what the local moto server runs) makes it undo only the items the
  transaction names.
- moto's Query and Scan sort the whole table by key, comparing its own
  attribute objects, at every request: about 0.2 s per Query with 2,000
  credits stored. Every key of our tables is a string, so this script sorts
  by the strings themselves: the same order.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/settlement.py`: sys.path[0] is bench/

import boto3
import moto
from moto import mock_aws
from moto.dynamodb.models.table import Table as MotoTable

from bench._capacity import CapacityMeter, DynamoRequest, RequestTotals, fmt_units
from bench._fake_aws import REGION, use_fake_aws_environment
from bench._printing import print_table, say
from chalicelib.adapters.due_work import HOUR_MS
from chalicelib.adapters.dynamodb import Item, Tables, to_item
from chalicelib.adapters.dynamodb.credits import credit_to_item
from chalicelib.adapters.dynamodb.layout import chain_head_key
from chalicelib.adapters.dynamodb.ledger import entry_to_item
from chalicelib.adapters.dynamodb.purchases import purchase_to_item
from chalicelib.adapters.dynamodb.receipts import receipt_to_item
from chalicelib.domain import units
from chalicelib.domain.credits import Credit, CreditState
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import Provider
from chalicelib.domain.readings import reading_message
from chalicelib.domain.receipts import ChainHead, settlement_receipt
from chalicelib.domain.signing import sign
from chalicelib.domain.trading import (
    DEFAULT_DISPUTE_WINDOW_MS,
    Purchase,
    PurchaseStatus,
    SettledBy,
    market_fee,
    purchase_id_for,
)
from chalicelib.services.expiry import run_expiry
from chalicelib.services.ingest import Status, record_payload
from chalicelib.services.ports import JobRun
from chalicelib.services.settlement import run_settlement
from energy_client.rpc_client import Signer
from infra.emulation import create_tables
from infra.moto_server import install_item_level_rollback
from tests.support import (
    NOW,
    Clock,
    MarketHarness,
    SimulatedMeter,
    dynamodb_market,
    tables_from_environment,
    with_settings,
)

STACK: Final = "energy-marketplace-bench"
HISTORY_SIZES: Final = (1_000, 5_000, 10_000)
PROVIDERS: Final = 10
BUYERS: Final = 10
CREDIT_WH: Final = 1_000  # every credit and every purchase: 1 kWh
UNSOLD_PER_PROVIDER: Final = 10
DUE: Final = PROVIDERS * BUYERS  # purchases due, and credits due to expire
MINUTE_MS: Final = 60_000
LIFETIME_MS: Final = 24 * HOUR_MS
DISPUTE_WINDOW_MS: Final = DEFAULT_DISPUTE_WINDOW_MS  # 24 h
FEE_BPS: Final = 100  # 1 %
SEED: Final = 20_260_101

# The timeline (ms). T0 = 2026-01-01 00:10 UTC: the readings arrive and the
# credits are minted; the purchases follow 5 minutes later. Both the purchases
# (minted + dispute window) and the unsold credits (minted + lifetime) fall due
# at T0 + 24 h, in hour H0 + 24.
T0: Final = NOW * 1000 + 10 * MINUTE_MS
H0: Final = T0 // HOUR_MS
PURCHASES_AT: Final = T0 + 5 * MINUTE_MS
RUN_BEFORE_AT: Final = T0 + 23 * HOUR_MS + 20 * MINUTE_MS  # H0+23:30, nothing due yet
MEASURED_AT: Final = T0 + 24 * HOUR_MS + 20 * MINUTE_MS  # H0+24:30, all 100 due
HISTORY_HOURS: Final = range(H0 - 25, H0 + 25)  # the hours the two runs read
HISTORY_SETTLED_BY: Final = (H0 + 23) * HOUR_MS  # later-due history was settled early


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- moto speed-ups (the emulator only) ---------------------------------------------


def install_string_key_sort() -> None:
    """moto sorts the whole table by key, with its own attribute comparisons,
    at every Query and Scan; sort string keys as strings: the same order."""
    table_class: Any = MotoTable
    if getattr(table_class, "_string_key_sort", False):
        return
    original: Callable[[Any], list[Any]] = table_class.all_items

    def all_items(table: Any) -> list[Any]:
        if table.hash_key_type != "S" or table.range_key_type not in (None, "S"):
            return original(table)
        items: list[Any] = []
        for hash_set in table.items.values():
            items.extend(hash_set.values() if table.range_key_attr else [hash_set])
        return sorted(
            items,
            key=lambda i: (i.hash_key.value, i.range_key.value if i.range_key else ""),
        )

    setattr(table_class, "all_items", all_items)  # noqa: B010
    setattr(table_class, "_string_key_sort", True)  # noqa: B010


# -- the market and its due work ---------------------------------------------------


@dataclass(frozen=True)
class DueWork:
    sellers: list[SimulatedMeter]
    providers: dict[str, Provider]  # by provider id, as stored after the purchases
    buyers: list[str]


def market_under_bench_settings(client: Any, tables: Tables, clock: Clock) -> MarketHarness:
    """The test harness's market on DynamoDB, with this benchmark's settings."""
    return with_settings(
        dynamodb_market(client, tables, clock),
        credit_lifetime_ms=LIFETIME_MS,
        market_fee_bps=FEE_BPS,
    )


def create_due_work(harness: MarketHarness) -> DueWork:
    """10 providers with 20 credits each; 10 buyers buy 1 kWh from each (real paths)."""
    harness.clock.now = T0 // 1000
    sellers = []
    for n in range(PROVIDERS):
        owner = harness.funded_account(f"seller{n:02d}.theblock", block=20_000)
        key = Signer.generate("meter")
        registered = harness.provider(
            owner,
            meter_address=f"bench_meter_{n:02d}",  # fixed, so credit ids are the same every run
            meter_public_key=key.public_key,
            capacity_kwh=10_000,
        )
        meter = SimulatedMeter(registered["meter_address"], registered["provider_id"], key, owner)
        credits = BUYERS + UNSOLD_PER_PROVIDER
        for reading in range(credits + 1):  # the first is the baseline: it mints nothing
            at_ms = T0 - (credits - reading) * MINUTE_MS
            outcome = record_payload(
                harness.deps,
                meter.payload(1_000 + reading * CREDIT_WH, at_ms),
                topic_meter_address=meter.meter_address,
                received_at_ms=T0,
            )
            assert outcome.status == Status.ACCEPTED, outcome
        sellers.append(meter)
    buyers = [harness.funded_account(f"buyer{n:02d}.theblock", block=10) for n in range(BUYERS)]
    harness.clock.now = PURCHASES_AT // 1000
    for b, buyer in enumerate(buyers):
        for p, seller in enumerate(sellers):
            bought = harness.client.call(
                "energy.purchaseEnergy",
                {
                    "provider_id": seller.provider_id,
                    "kwh_amount": str(CREDIT_WH // 1_000),
                    "max_price_per_kwh": "0.10",
                    "idempotency_key": f"bench-{b:02d}-{p:02d}",  # same purchase ids every run
                },
                buyer,
            )
            assert bought["status"] == "open", bought
    uow = harness.uow()
    providers = {}
    for seller in sellers:
        provider = uow.providers.get(seller.provider_id)
        assert provider is not None
        providers[provider.provider_id] = provider
    return DueWork(sellers, providers, [b.account for b in buyers])


# -- history, written directly -------------------------------------------------------


@dataclass
class _Settled:
    order: int
    seller: SimulatedMeter
    buyer: str
    credit: Credit
    purchase: Purchase


def _signed_credit(
    seller: SimulatedMeter,
    provider: Provider,
    counter_wh: int,
    minted_at_ms: int,
    state: CreditState,
    **extra: Any,
) -> Credit:
    """A credit as ingest mints it, from a reading the seller's meter really signed."""
    at_ms = minted_at_ms - 30_000
    message = reading_message(provider.provider_id, seller.meter_address, counter_wh, at_ms)
    return Credit(
        credit_id=hashlib.sha256(message).hexdigest(),
        provider_id=provider.provider_id,
        meter_address=seller.meter_address,
        energy_type=provider.energy_type,
        jurisdiction=provider.jurisdiction,
        interval_start_ms=at_ms - 15 * MINUTE_MS,
        interval_end_ms=at_ms,
        wh=CREDIT_WH,
        counter_wh=counter_wh,
        signature=sign(seller.key.key, message),
        minted_at_ms=minted_at_ms,
        expires_at_ms=minted_at_ms + LIFETIME_MS,
        state=state,
        **extra,
    )


def history_items(
    harness: MarketHarness, tables: Tables, due: DueWork, size: int
) -> tuple[dict[str, list[Item]], dict[str, tuple[int, int, int]]]:
    """Items by table: ``size`` settled purchases (with their credits, entries and
    receipts) and ``size`` expired credits; and per provider, the counters to add."""
    rng = random.Random(SEED + size)
    price = next(iter(due.providers.values())).price_micro_block_per_kwh
    cost = units.cost_micro_block(CREDIT_WH, price)
    fee = market_fee(cost, FEE_BPS)
    items: dict[str, list[Item]] = defaultdict(list)
    settled: list[_Settled] = []
    for n in range(size):
        seller = due.sellers[n % PROVIDERS]
        provider = due.providers[seller.provider_id]
        buyer = due.buyers[(n // PROVIDERS) % BUYERS]
        due_ms = rng.choice(HISTORY_HOURS) * HOUR_MS + rng.randrange(50 * MINUTE_MS)
        minted_ms = due_ms - DISPUTE_WINDOW_MS
        purchase_id = purchase_id_for(buyer, f"history-{n:06d}")
        credit = _signed_credit(
            seller,
            provider,
            10_000_000 + n * CREDIT_WH,
            minted_ms,
            CreditState.HELD,
            purchase_id=purchase_id,
            holder=buyer,
        )
        purchase = Purchase(
            purchase_id=purchase_id,
            buyer=buyer,
            provider_id=provider.provider_id,
            wh=CREDIT_WH,
            price_micro_block_per_kwh=price,
            escrow_micro_block=cost,
            credit_ids=(credit.credit_id,),
            created_at_ms=minted_ms + 5 * MINUTE_MS,
            settles_at_ms=due_ms,
            status=PurchaseStatus.SETTLED,
            settled_at_ms=min(due_ms + MINUTE_MS, HISTORY_SETTLED_BY),
        )
        settled.append(_Settled(n, seller, buyer, credit, purchase))
        # An unsold credit of the same provider that expired in one of those hours.
        expired_ms = rng.choice(HISTORY_HOURS[:-2]) * HOUR_MS + rng.randrange(50 * MINUTE_MS)
        expired = _signed_credit(
            seller,
            provider,
            50_000_000 + n * CREDIT_WH,
            expired_ms - LIFETIME_MS,
            CreditState.EXPIRED,
        )
        items[tables.credits] += [credit_to_item(credit), credit_to_item(expired)]
    # Receipts chain per provider in settlement order, as settlement appends them.
    key = harness.deps.receipt_signing_key()
    heads: dict[str, ChainHead] = {}
    counters: dict[str, tuple[int, int, int]] = {}
    settled.sort(key=lambda s: (s.purchase.settled_at_ms or 0, s.order))
    for record in settled:
        purchase, provider = record.purchase, due.providers[record.purchase.provider_id]
        settled_at = purchase.settled_at_ms or 0
        receipt = settlement_receipt(
            harness.deps.settings.marketplace_id,
            purchase,
            provider.owner,
            fee,
            heads.get(provider.provider_id),
            settled_at,
            SettledBy.SCHEDULE if settled_at >= purchase.settles_at_ms else SettledBy.BUYER,
            key,
        )
        heads[provider.provider_id] = ChainHead(
            receipt.chain, receipt.sequence, receipt.receipt_hash
        )
        stored = replace(
            purchase,
            receipt_chain=receipt.chain,
            receipt_sequence=receipt.sequence,
            receipt_hash=receipt.receipt_hash,
        )
        items[tables.ledger] += [
            purchase_to_item(stored),
            entry_to_item(
                LedgerEntry(
                    purchase.purchase_id,
                    EntryKind.PURCHASE,
                    purchase.buyer,
                    cost,
                    purchase.purchase_id,
                    purchase.created_at_ms // 1000,
                )
            ),
            entry_to_item(
                LedgerEntry(
                    purchase.purchase_id,
                    EntryKind.SALE,
                    provider.owner,
                    cost - fee,
                    purchase.purchase_id,
                    settled_at // 1000,
                )
            ),
        ]
        items[tables.receipts].append(receipt_to_item(receipt))
        done, earned, sold = counters.get(provider.provider_id, (0, 0, 0))
        counters[provider.provider_id] = (done + 1, earned + cost - fee, sold + purchase.wh)
    for head in heads.values():
        items[tables.receipts].append(
            chain_head_key(head.chain)
            | to_item({"sequence": head.sequence, "receipt_hash": head.receipt_hash})
        )
    return items, counters


def write_history(
    writer: Any,
    tables: Tables,
    items: dict[str, list[Item]],
    counters: dict[str, tuple[int, int, int]],
) -> None:
    for table, table_items in items.items():
        for start in range(0, len(table_items), 25):  # BatchWriteItem takes 25 items
            request: dict[str, Any] = {
                table: [{"PutRequest": {"Item": item}} for item in table_items[start : start + 25]]
            }
            while request:
                request = writer.batch_write_item(RequestItems=request).get("UnprocessedItems")
    for provider_id, (done, earned, sold) in counters.items():
        writer.update_item(
            TableName=tables.registry,
            Key=to_item({"pk": f"PROVIDER#{provider_id}", "sk": "PROVIDER"}),
            UpdateExpression="ADD settled_purchases :n, earned_micro_block :e, sold_wh :w",
            ExpressionAttributeValues=to_item({":n": done, ":e": earned, ":w": sold}),
        )


def count(client: Any, table: str, index: str | None = None, **scan: Any) -> int:
    """Items in a table or index (a Scan: this is the benchmark checking, not the product)."""
    if index is not None:
        scan["IndexName"] = index
    return sum(
        page["Count"]
        for page in client.get_paginator("scan").paginate(TableName=table, Select="COUNT", **scan)
    )


# -- measuring -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobCost(RequestTotals):
    run: JobRun

    @property
    def query_items(self) -> int:
        return sum(r.read for r in self.requests if r.operation == "Query")

    def signature(self) -> tuple[object, ...]:
        """What must not depend on the history (the flatness check)."""
        return (
            sorted(self.operations.items()),
            self.query_items,
            self.items_read,
            self.rcu,
            self.wcu_table,
            self.wcu_index,
            self.run.hours_read,
            self.run.queries,
            self.run.items_read,
            self.run.done,
        )


@dataclass(frozen=True)
class SizeResult:
    history: int
    stored: dict[str, int]  # items per table before the measured runs
    due_before: tuple[int, int]  # entries in PurchasesDue, ExpiringBySlot
    due_after: tuple[int, int]
    settlement_before: JobCost
    expiry_before: JobCost
    settlement: JobCost
    expiry: JobCost
    seconds: dict[str, float]


def measure(meter: CapacityMeter, job: Callable[[], JobRun]) -> JobCost:
    with meter.measuring() as requests:
        run = job()
    assert not any(r.error for r in requests), [r.error for r in requests if r.error]
    return JobCost(list(requests), run)


def run_size(history: int) -> SizeResult:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)  # the app's: recorded
        inspector = boto3.client("dynamodb", region_name=REGION)  # the benchmark's own
        tables = tables_from_environment(create_tables(client, STACK))
        clock = Clock()
        harness = market_under_bench_settings(client, tables, clock)
        due = create_due_work(harness)
        seconds["due work"] = time.perf_counter() - started
        log(f"  {history:,}: due work created through the API in {seconds['due work']:.0f} s")

        started = time.perf_counter()
        items, counters = history_items(harness, tables, due, history)
        write_history(inspector, tables, items, counters)
        seconds["history"] = time.perf_counter() - started
        written = sum(len(table_items) for table_items in items.values())
        log(f"  {history:,}: {written:,} history items written in {seconds['history']:.0f} s")

        stored = {
            name: count(inspector, table)
            for name, table in (
                ("ledger", tables.ledger),
                ("credits", tables.credits),
                ("receipts", tables.receipts),
                ("registry", tables.registry),
            )
        }
        settled = count(
            inspector,
            tables.ledger,
            FilterExpression="sk = :s AND #status = :settled",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item({":s": "PURCHASE", ":settled": "settled"}),
        )
        assert settled == history, (settled, history)

        def due_now() -> tuple[int, int]:
            return (
                count(inspector, tables.ledger, "PurchasesDue"),
                count(inspector, tables.credits, "ExpiringBySlot"),
            )

        due_before = due_now()
        assert due_before == (DUE, DUE), due_before

        meter = CapacityMeter(client, inspector)
        deps = harness.deps
        started = time.perf_counter()
        clock.now = RUN_BEFORE_AT // 1000
        settlement_before = measure(meter, lambda: run_settlement(deps))
        expiry_before = measure(meter, lambda: run_expiry(deps))
        assert settlement_before.run.done == expiry_before.run.done == 0
        seconds["runs before"] = time.perf_counter() - started
        log(f"  {history:,}: the runs before (nothing due) in {seconds['runs before']:.0f} s")

        started = time.perf_counter()
        clock.now = MEASURED_AT // 1000
        settlement = measure(meter, lambda: run_settlement(deps))
        expiry = measure(meter, lambda: run_expiry(deps))
        for cost in (settlement, expiry):
            assert (cost.run.done, cost.run.failed) == (DUE, 0), cost.run
        due_after = due_now()
        assert due_after == (0, 0), due_after
        seconds["measured runs"] = time.perf_counter() - started
        log(f"  {history:,}: the measured runs in {seconds['measured runs']:.0f} s")
    return SizeResult(
        history,
        stored,
        due_before,
        due_after,
        settlement_before,
        expiry_before,
        settlement,
        expiry,
        seconds,
    )


# -- printing ------------------------------------------------------------------------


_SHORT_OPERATION: Final = {"TransactWriteItems": "TransactWrite", "UpdateItem": "Update"}


def operations_text(operations: Counter[str]) -> str:
    by_name = sorted(operations.items())
    return ", ".join(f"{n} {_SHORT_OPERATION.get(op, op)}" for op, n in by_name)


_SIGNATURE_FIELDS: Final = (
    "operations",
    "index items read",
    "items read",
    "RCU",
    "WCU table",
    "WCU GSI",
    "hours read",
    "queries",
    "job items read",
    "done",
)


def flat(costs: Sequence[JobCost]) -> str:
    signatures = [cost.signature() for cost in costs]
    if all(s == signatures[0] for s in signatures):
        return "flat: yes (requests, items read, RCU and WCU identical at every history size)"
    differing = [
        name
        for position, name in enumerate(_SIGNATURE_FIELDS)
        if len({repr(s[position]) for s in signatures}) > 1
    ]
    return "flat: no (differs: " + ", ".join(differing) + ")"


def print_job_table(
    title: str, results: Sequence[SizeResult], pick: Callable[[SizeResult], JobCost]
) -> None:
    print(title)
    print()
    rows = []
    for result in results:
        cost = pick(result)
        rows.append(
            [
                f"{result.history:,}",
                str(len(cost.requests)),
                operations_text(cost.operations),
                str(cost.run.hours_read),
                str(cost.query_items),
                str(cost.items_read),
                fmt_units(cost.rcu),
                f"{fmt_units(cost.wcu_table)} + {fmt_units(cost.wcu_index)}",
                str(cost.run.done),
            ]
        )
    print_table(
        [
            "history",
            "requests",
            "by operation",
            "hours",
            "index items read",
            "items read",
            "RCU",
            "WCU table + GSI",
            "done",
        ],
        rows,
        right={0, 1, 3, 4, 5, 6, 7, 8},
    )
    print(flat([pick(result) for result in results]))
    print()


def print_per_unit(result: SizeResult) -> None:
    print("Per item of due work (the measured runs above, divided by the 100 items they did):")
    print()
    rows = []
    fixed = []
    jobs: list[tuple[str, JobCost]] = [
        ("settlement, per purchase settled", result.settlement),
        ("expiry, per credit expired", result.expiry),
    ]
    for label, cost in jobs:
        done = cost.run.done
        rows.append(
            [
                label,
                f"{len(cost.requests) / done:.2f}",
                f"{cost.items_read / done:.2f}",
                f"{cost.rcu / done:.2f}",
                f"{cost.wcu_table / done:.2f} + {cost.wcu_index / done:.2f}",
            ]
        )
        queries = [r for r in cost.requests if r.operation == "Query"]
        fixed.append(
            f"{label.split(',')[0]}: {len(queries)} index queries "
            f"({fmt_units(sum(r.read_units for r in queries))} RCU) and the watermark's "
            "GetItem and UpdateItem"
        )
    print_table(["", "requests", "items read", "RCU", "WCU table + GSI"], rows, right={1, 2, 3, 4})
    say("Included, once per run: " + "; ".join(fixed) + ".")
    print()


def print_breakdown(result: SizeResult) -> None:
    print(f"Request by request, history {result.history:,} (grouped by operation and target):")
    jobs: list[tuple[str, JobCost]] = [
        ("settlement run, 100 due", result.settlement),
        ("expiry run, 100 due", result.expiry),
    ]
    for label, cost in jobs:
        print(f"  {label}")
        groups: dict[tuple[str, str], list[DynamoRequest]] = defaultdict(list)
        for request in cost.requests:
            groups[(request.operation, request.target)].append(request)
        rows = [
            [
                f"    {len(requests)} x {operation}",
                target,
                str(sum(r.read for r in requests)),
                str(sum(r.writes for r in requests)),
                fmt_units(sum(r.read_units for r in requests)),
                f"{fmt_units(sum(r.table_write_units for r in requests))} + "
                f"{fmt_units(sum(r.index_write_units for r in requests))}",
            ]
            for (operation, target), requests in groups.items()
        ]
        print_table(
            ["", "target", "items read", "items written", "RCU", "WCU table + GSI"],
            rows,
            right={2, 3, 4, 5},
        )
    say(
        "A TransactWriteItems target lists the items it writes per table. GetItem registry: the "
        "provider (eventually consistent) and the job's watermark (strongly consistent); ledger: "
        "the purchase, receipts: the chain head (both strongly consistent)."
    )
    print()


def print_setup(results: Sequence[SizeResult]) -> None:
    say(
        f"moto {moto.__version__}, in-process (mock_aws). RCU and WCU are computed from item "
        "sizes by AWS's on-demand rules (bench/_capacity.py): moto's ConsumedCapacity is a "
        "constant per operation. Index reads are eventually consistent; GetItem as the code asks."
    )
    print()
    say(
        f"Due work, through the real code paths and the same in every row: {DUE} open purchases "
        f"of 1 kWh ({BUYERS} buyers x {PROVIDERS} providers, energy.purchaseEnergy) and {DUE} "
        "unsold 1 kWh credits (minted by services.ingest from signed readings). Times are hours "
        "after H = 2026-01-01 00:00 UTC: credits minted at H+0:10, purchases at H+0:15; dispute "
        "window 24 h and credit lifetime 24 h, so all of it falls due at H+24:10. Market fee "
        f"{FEE_BPS / 100:g} %."
    )
    print()
    say(
        "History N, written directly with the adapter's item mapping and BatchWriteItem: N "
        "settled purchases of the same providers and buyers, each with its held credit, its "
        "PURCHASE and SALE ledger entries and its signed receipt (chained per provider; the due "
        "settlements extend those chains), plus N expired credits. Their due and expiry times "
        "are spread over hours H-25 .. H+24: the hours the runs below read."
    )
    print()
    print_table(
        [
            "history N",
            "ledger",
            "credits",
            "receipts",
            "registry",
            "due entries (PurchasesDue, ExpiringBySlot)",
        ],
        [
            [
                f"{r.history:,}",
                f"{r.stored['ledger']:,}",
                f"{r.stored['credits']:,}",
                f"{r.stored['receipts']:,}",
                f"{r.stored['registry']:,}",
                f"{r.due_before[0]}, {r.due_before[1]} before -> "
                f"{r.due_after[0]}, {r.due_after[1]} after",
            ]
            for r in results
        ],
        right={0, 1, 2, 3, 4},
    )
    say(
        "Items per table before the runs; the last column counts the entries of the two job "
        "indexes before the measured runs and after them."
    )
    print()
    say(
        "The runs: at H+23:30, one run of each job with nothing due yet (the run before; the "
        "first run of a job, with no watermark, reads the 48 hours before the current one). It "
        "leaves the watermark at H+23: an hour is passed only 10 minutes after it ended. Then at "
        "H+24:30 the measured runs, with the 100 purchases and the 100 credits due."
    )
    print()


def main() -> None:
    started = time.perf_counter()
    use_fake_aws_environment()
    install_item_level_rollback()
    install_string_key_sort()
    results = []
    for history in HISTORY_SIZES:
        log(f"history of {history:,} settled purchases")
        results.append(run_size(history))

    print("Settlement benchmark: one settlement run and one expiry run as history grows")
    print("=" * 77)
    print()
    print_setup(results)
    print_job_table(
        "1. Settlement run at H+24:30, 100 purchases due (services.settlement.run_settlement)",
        results,
        lambda r: r.settlement,
    )
    print_job_table(
        "2. Expiry run at H+24:30, 100 credits due (services.expiry.run_expiry)",
        results,
        lambda r: r.expiry,
    )
    say(
        "history: settled purchases behind the due work. hours: hours read, from the watermark "
        "(H+23) to now. index items read: entries the Query requests read (PurchasesDue, "
        "ExpiringBySlot). items read: those plus the items GetItem found. WCU table + GSI: "
        "TransactWriteItems doubles the table writes; index upkeep is counted once."
    )
    print()
    print_per_unit(results[-1])
    print_job_table(
        "3. The settlement run before, at H+23:30: nothing due, no watermark yet",
        results,
        lambda r: r.settlement_before,
    )
    print_job_table(
        "4. The expiry run before, at H+23:30: nothing due, no watermark yet (16 shards an hour)",
        results,
        lambda r: r.expiry_before,
    )
    print_breakdown(results[-1])
    say(
        "moto speed-ups, emulator only (see the module docstring): TransactWriteItems rolls back "
        "the items it names instead of deep-copying whole tables, and Query and Scan sort string "
        "keys as strings. Same results, same requests."
    )
    for result in results:
        spent = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        print(f"Wall time, history {result.history:,}: {spent}")
    print(f"Total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
