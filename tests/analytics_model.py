"""A market's history as its tables' stream records, Lambda's delivery of them, and its figures.

Three parts, for the analytics' tests (tests/unit/test_analytics_properties.py,
tests/integration/test_analytics_adapters.py):

``MarketHistory``  builds a history from domain events (a provider registered or
    changed, a reading accepted or refused, a purchase opened, cut, settled or
    revoked, a balance moved). Every write becomes the stream record DynamoDB
    would emit, with the images made by the product's own item mappings
    (``provider_to_item``, ``purchase_to_item``, ``entry_to_item``, the keys of
    ``layout``, the meter and refusal attributes the adapters write). It also
    keeps the raw facts, from which ``expected_figures`` recomputes every figure
    plainly, without the analytics' code.

``delivery_plans``  splits the records into shards of the two streams (by
    partition key, with a shard generation rolling over as DynamoDB's do) and
    draws how Lambda delivers them, after AWS's documented semantics for
    functions with a tumbling window: each shard's records are processed in
    order the first time, in batches; shards interleave arbitrarily; a record
    may be processed again, and then out of order (whole batches again,
    bisected halves, shuffled subsets, long after the shard moved on); a
    failed invocation (the function crashed after some of its writes) is
    retried, whole or bisected, before the shard moves on. With a moving
    clock, records are first delivered within 24 hours of being written and
    redelivered only while the stream still keeps them (24 hours).

``run_plan``  executes a plan against a market's dependencies with the real
    ``chalicelib.services.analytics.fold``; ``actual_figures`` reads every
    figure back through the services.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from hypothesis import strategies as st

from chalicelib.adapters.dynamodb.codec import Item, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    balance_key,
    bought_key,
    meter_key,
    rejection_key,
)
from chalicelib.adapters.dynamodb.ledger import BY_ORIGIN, BY_TYPE, entry_to_item
from chalicelib.adapters.dynamodb.meters import meter_from_item, rejection_from_item
from chalicelib.adapters.dynamodb.providers import provider_from_item, provider_to_item
from chalicelib.adapters.dynamodb.purchases import purchase_from_item, purchase_to_item
from chalicelib.domain.credits import Freeze
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import (
    MIN_STAKE_MICRO_BLOCK,
    EnergyType,
    Location,
    Provider,
    ReadingWindow,
)
from chalicelib.domain.readings import Rejection, RejectionRecord
from chalicelib.domain.trading import Purchase, PurchaseStatus, without_credits
from chalicelib.services import analytics
from chalicelib.services.dependencies import Dependencies
from chalicelib.streams.market_analytics import contributions, shard_of
from infra.stream_poller import lambda_event

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
STREAM_RETENTION_MS: Final = 24 * HOUR_MS

REGISTRY_STREAM: Final = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/energy-marketplace-test-registry"
    "/stream/2026-01-01T00:00:00.000"
)
LEDGER_STREAM: Final = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/energy-marketplace-test-ledger"
    "/stream/2026-01-01T00:00:00.000"
)
JURISDICTIONS: Final = ("US_CA", "DE", "GB")
BUYERS: Final = ("bob.theblock", "carol.theblock", "dave.theblock")
UNKNOWN: Final = "unknown"  # a meter or purchase written before they kept their type and place
STAKE: Final = 10_000 * 1_000_000


def start_of(at_ms: int, size_ms: int) -> int:
    return at_ms - at_ms % size_ms


# -- the history ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One stream record, before its stream gives it a sequence number."""

    table: str  # "registry" or "ledger"
    pk: str
    at_ms: int  # when it was written (the record's creation)
    record: dict[str, Any]


@dataclass(frozen=True)
class Reading:
    meter_address: str
    energy_type: str
    at_ms: int
    wh: int  # the counter's increase; 0 for a meter's first (baseline) reading


@dataclass
class Trade:
    """A purchase as it was opened, and how it closed."""

    purchase_id: str
    provider_id: str
    energy_type: str
    jurisdiction: str
    price: int
    opened_wh: int
    opened_micro_block: int
    created_at_ms: int
    wh: int  # what it keeps (a dispute may take some of it while it is open)
    micro_block: int
    status: str = "open"
    closed_at_ms: int | None = None
    clawed_back: bool = False  # settled, then revoked by a guilty verdict


@dataclass
class MarketHistory:
    """The writes of a market, as stream records, and the raw facts they record."""

    changes: list[Change] = field(default_factory=list)
    items: dict[tuple[str, str, str], Item] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    meter_types: dict[str, str] = field(default_factory=dict)  # meter address -> energy type
    counters: dict[str, int] = field(default_factory=dict)  # meter address -> last counter
    last_read: dict[str, int] = field(default_factory=dict)  # meter address -> latest reading
    readings: list[Reading] = field(default_factory=list)
    refusals: list[tuple[str, int]] = field(default_factory=list)  # reason, received at
    purchases: dict[str, Purchase] = field(default_factory=dict)
    trades: dict[str, Trade] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    last_bought: dict[str, int] = field(default_factory=dict)  # buyer -> latest purchase
    # A seller's sales (provider, Wh, when: a settlement adds, a claw-back takes)
    # and the market's bought energy (type, jurisdiction, Wh, when), as they moved.
    sales: list[tuple[str, int, int]] = field(default_factory=list)
    bought: list[tuple[str, str, int, int]] = field(default_factory=list)
    sold_at: dict[str, int] = field(default_factory=dict)  # provider -> sold_at_ms
    # provider -> its meter's last reading (kept on the provider's item)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    bought_by: dict[str, dict[str, int]] = field(default_factory=dict)  # buyer -> counters
    serial: int = 0

    # -- writes ---------------------------------------------------------------------

    def _write(self, table: str, item: Item | None, key: Item, at_ms: int) -> None:
        """Put (or delete, with ``item`` None) one item: its stream record, as DynamoDB's."""
        index = (table, key["pk"]["S"], key["sk"]["S"])
        old = self.items.get(index)
        if item == old:
            return  # an unchanged item writes no stream record
        if item is None:
            self.items.pop(index)
        else:
            self.items[index] = item
        change: dict[str, Any] = {
            "ApproximateCreationDateTime": at_ms // 1000,
            "Keys": key,
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if item is not None:
            change["NewImage"] = item
        if old is not None:
            change["OldImage"] = old
        name = "REMOVE" if item is None else "INSERT" if old is None else "MODIFY"
        self.serial += 1
        record = {
            "eventID": f"{self.serial:032x}",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": change,
        }
        self.changes.append(Change(table, index[1], at_ms, record))

    def _put(self, table: str, item: Item, at_ms: int) -> None:
        self._write(table, item, {"pk": item["pk"], "sk": item["sk"]}, at_ms)

    def _item(self, table: str, key: Item) -> Item:
        return dict(self.items[(table, key["pk"]["S"], key["sk"]["S"])])

    def _save_provider(self, provider: Provider, at_ms: int) -> None:
        self.providers[provider.provider_id] = provider
        item = provider_to_item(provider)
        if provider.provider_id in self.sold_at:  # settle_obligation and revoke_energy SET it
            item |= to_item({"sold_at_ms": self.sold_at[provider.provider_id]})
        # The meter's last reading, which every other write of the item leaves alone.
        item |= to_item(self.heads.get(provider.provider_id, {}))
        self._put("registry", item, at_ms)

    # -- the registry ----------------------------------------------------------------

    def register(
        self,
        at_ms: int,
        energy_type: EnergyType,
        jurisdiction: str,
        capacity_wh: int,
        price: int,
        *,
        legacy_meter: bool = False,
    ) -> Provider:
        number = len(self.providers) + 1
        provider = Provider(
            provider_id=f"energy-0x{number:016x}",
            owner=f"owner{number}.theblock",
            display_name=f"Provider {number}",
            energy_type=energy_type,
            jurisdiction=jurisdiction,
            location=Location(37_774_900, -122_419_400),
            capacity_wh=capacity_wh,
            price_micro_block_per_kwh=price,
            stake_micro_block=STAKE,
            meter_address=f"meter_{number:03d}",
            meter_public_key=f"{number:064x}",
            created_at=at_ms // 1000,
            updated_at=at_ms // 1000,
        )
        self._save_provider(provider, at_ms)
        # The meter item, as DynamoProviders.add writes it in the same transaction.
        meter = {
            "meter_address": provider.meter_address,
            "provider_id": provider.provider_id,
            "public_key": provider.meter_public_key,
        }
        if not legacy_meter:
            meter["energy_type"] = str(energy_type)
        self._put("registry", meter_key(provider.meter_address) | to_item(meter), at_ms)
        self.meter_types[provider.meter_address] = UNKNOWN if legacy_meter else str(energy_type)
        return provider

    def change_provider(self, at_ms: int, provider_id: str, **changes: Any) -> None:
        before = self.providers[provider_id]
        after = replace(before, **changes, updated_at=at_ms // 1000, version=before.version + 1)
        self._save_provider(after, at_ms)

    def read(self, at_ms: int, provider_id: str, wh: int) -> None:
        """An accepted reading: one update of the provider's item (DynamoMeters.advance)
        moves the meter's last reading, which lives there, and grows the provider's
        energy on sale and reading slots."""
        provider = self.providers[provider_id]
        address = provider.meter_address
        if address in self.last_read and at_ms <= self.last_read[address]:
            return  # the ingest refuses a timestamp that does not increase
        first = address not in self.counters
        counter = 1_000 if first else self.counters[address] + wh
        accepted = int(self.heads.get(provider_id, {}).get("accepted_readings", 0)) + 1
        self.heads[provider_id] = {
            "last_counter_wh": counter,
            "last_timestamp_ms": at_ms,
            "last_reading_hash": f"{self.serial:064x}",
            "accepted_readings": accepted,
        }
        self.counters[address] = counter
        self.last_read[address] = at_ms
        gained = 0 if first else wh
        slot = at_ms // 900_000
        # Counted under the provider's type: the reading's record is the provider
        # item's (a legacy meter item without a type no longer matters).
        self.readings.append(Reading(address, str(provider.energy_type), at_ms, gained))
        # Not a profile change: no new version, as the adapter's update makes none.
        self._save_provider(
            replace(
                provider,
                available_wh=provider.available_wh + gained,
                # The provider keeps its last 96 slots (a day), as ingest does.
                reading_window=ReadingWindow.of(
                    s for s in provider.reading_window.slots() | {slot} if s > slot - 96
                ),
            ),
            at_ms,
        )

    def refuse(
        self, at_ms: int, meter_address: str, reason: Rejection, *, expires: bool = False
    ) -> None:
        """A refused reading, as DynamoMeters.record_rejection writes it: the refusal,
        and the meter's count of refusals by reason (when the meter is known)."""
        record = RejectionRecord(
            meter_address=meter_address,
            reason=reason,
            detail=f"refused: {reason}",
            at_ms=at_ms - 1_000,
            received_at_ms=at_ms,
            payload_hash=hashlib.sha256(f"payload {self.serial}".encode()).hexdigest(),
            reading_hash=None,
        )
        item = rejection_key(record) | to_item(
            {
                "meter_address": record.meter_address,
                "reason": str(record.reason),
                "detail": record.detail,
                "at_ms": record.at_ms,
                "received_at_ms": record.received_at_ms,
                "payload_hash": record.payload_hash,
                "reading_hash": record.reading_hash,
                "expires_at": record.received_at_ms // 1000 + 30 * 86_400,
            }
        )
        self._put("registry", item, at_ms)
        self.refusals.append((str(reason), at_ms))
        if meter_address in self.meter_types and reason != Rejection.DUPLICATE:
            values = from_item(self._item("registry", meter_key(meter_address)))
            counted = f"rejected_{reason}"
            values[counted] = int(values.get(counted, 0)) + 1
            self._put("registry", to_item(values), at_ms)
        if expires:  # the refusal's time to live ran out: a REMOVE that counts nothing
            self._write("registry", None, {"pk": item["pk"], "sk": item["sk"]}, at_ms)

    def rotate_key(self, at_ms: int, provider_id: str) -> None:
        """A meter's new key: a MODIFY of the meter item that is not a reading."""
        address = self.providers[provider_id].meter_address
        values = from_item(self._item("registry", meter_key(address)))
        values["public_key"] = f"{self.serial:064x}"
        self._put("registry", to_item(values), at_ms)

    # -- the ledger ------------------------------------------------------------------

    def _save_balance(self, buyer: str, at_ms: int) -> None:
        values: dict[str, Any] = {"micro_block": self.balances[buyer]}
        if buyer in self.last_bought:
            values["last_bought_ms"] = self.last_bought[buyer]
        self._put("ledger", balance_key(buyer) | to_item(values), at_ms)

    def deposit(self, at_ms: int, buyer: str, micro_block: int) -> None:
        self.balances[buyer] = self.balances.get(buyer, 0) + micro_block
        self._save_balance(buyer, at_ms)

    def _save_purchase(self, purchase: Purchase, at_ms: int) -> None:
        self.purchases[purchase.purchase_id] = purchase
        self._put("ledger", purchase_to_item(purchase), at_ms)

    def purchase(
        self, at_ms: int, buyer: str, provider_id: str, wh: int, *, legacy: bool = False
    ) -> None:
        """A purchase as purchase_energy writes it: the purchase, the provider's
        reservation, the buyer's debit (with ``last_bought_ms``) and the entry."""
        provider = self.providers[provider_id]
        price = provider.price_micro_block_per_kwh
        cost = wh * price // 1000 + 1
        if buyer not in self.balances:
            self.deposit(at_ms, buyer, 0)  # the account's balance item, opened
        number = len(self.purchases) + 1
        purchase = Purchase(
            purchase_id=f"pur-{number:032x}",
            buyer=buyer,
            provider_id=provider_id,
            wh=wh,
            price_micro_block_per_kwh=price,
            escrow_micro_block=cost,
            credit_ids=(f"c{number}a", f"c{number}b"),
            created_at_ms=at_ms,
            settles_at_ms=at_ms + DAY_MS,
            energy_type=None if legacy else str(provider.energy_type),
            jurisdiction=None if legacy else provider.jurisdiction,
        )
        self._save_purchase(purchase, at_ms)
        self.trades[purchase.purchase_id] = Trade(
            purchase_id=purchase.purchase_id,
            provider_id=provider_id,
            energy_type=UNKNOWN if legacy else str(provider.energy_type),
            jurisdiction=UNKNOWN if legacy else provider.jurisdiction,
            price=price,
            opened_wh=wh,
            opened_micro_block=cost,
            created_at_ms=at_ms,
            wh=wh,
            micro_block=cost,
        )
        self.change_provider(
            at_ms,
            provider_id,
            available_wh=max(0, provider.available_wh - wh),
            open_obligations=provider.open_obligations + 1,
        )
        self.balances[buyer] -= cost
        self.last_bought[buyer] = at_ms
        self._save_balance(buyer, at_ms)
        entry = LedgerEntry(
            purchase.purchase_id, EntryKind.PURCHASE, buyer, cost, purchase.purchase_id, at_ms
        )
        self._put("ledger", entry_to_item(entry), at_ms)

    def open_purchases(self) -> list[str]:
        return [p for p, t in self.trades.items() if t.status == "open"]

    def cut(self, at_ms: int, purchase_id: str) -> None:
        """A dispute revokes one of an open purchase's two credits: it keeps the rest."""
        before = self.purchases[purchase_id]
        if len(before.credit_ids) < 2 or before.wh < 2:
            return
        after = without_credits(before, {before.credit_ids[0]: before.wh // 2}, at_ms)
        self._save_purchase(after, at_ms)
        trade = self.trades[purchase_id]
        trade.wh, trade.micro_block = after.wh, after.escrow_micro_block

    def settle(self, at_ms: int, purchase_id: str) -> None:
        before = self.purchases[purchase_id]
        after = replace(
            before,
            status=PurchaseStatus.SETTLED,
            settled_at_ms=at_ms,
            receipt_chain=before.buyer,
            receipt_sequence=len(self.purchases),
            receipt_hash=f"{self.serial:064x}",
        )
        self._save_purchase(after, at_ms)
        trade = self.trades[purchase_id]
        trade.status, trade.closed_at_ms = "settled", at_ms
        provider = self.providers[before.provider_id]
        self.sold_at[provider.provider_id] = at_ms
        self.change_provider(
            at_ms,
            before.provider_id,
            open_obligations=max(0, provider.open_obligations - 1),
            settled_purchases=provider.settled_purchases + 1,
            sold_wh=provider.sold_wh + after.wh,
        )
        self.sales.append((provider.provider_id, after.wh, at_ms))
        self._record_bought(before.buyer, provider, after.wh, at_ms)

    def _record_bought(self, buyer: str, provider: Provider, wh: int, at_ms: int) -> None:
        """The buyer's BOUGHT item, as record_bought ADDs to it: by the provider's
        type and jurisdiction (the provider's record, whatever the purchase kept)."""
        kind, place = str(provider.energy_type), provider.jurisdiction
        counters = self.bought_by.setdefault(buyer, {})
        for name in (f"{BY_TYPE}{kind}", f"{BY_ORIGIN}{kind}#{place}"):
            counters[name] = counters.get(name, 0) + wh
        self._put("ledger", bought_key(buyer) | to_item({**counters, "last_at_ms": at_ms}), at_ms)
        self.bought.append((kind, place, wh, at_ms))

    def claw_back(self, at_ms: int, purchase_id: str) -> None:
        """A guilty verdict revokes a settled purchase's energy: its buyer is
        refunded and its provider's sales lose it (the purchase stays settled)."""
        trade = self.trades[purchase_id]
        provider = self.providers[trade.provider_id]
        if trade.clawed_back or provider.sold_wh < trade.wh:
            return
        trade.clawed_back = True
        self.sold_at[provider.provider_id] = at_ms
        self.change_provider(at_ms, provider.provider_id, sold_wh=provider.sold_wh - trade.wh)
        self.sales.append((provider.provider_id, -trade.wh, at_ms))
        self._record_bought(self.purchases[purchase_id].buyer, provider, -trade.wh, at_ms)

    def revoke(self, at_ms: int, purchase_id: str) -> None:
        before = self.purchases[purchase_id]
        # Every credit it still holds, their energy summing to the purchase's.
        first, *rest = before.credit_ids
        taken = {first: before.wh - len(rest)} | dict.fromkeys(rest, 1)
        after = without_credits(before, taken, at_ms)
        self._save_purchase(after, at_ms)
        trade = self.trades[purchase_id]
        trade.status, trade.closed_at_ms = "revoked", at_ms
        self.balances[before.buyer] += before.escrow_micro_block
        self._save_balance(before.buyer, at_ms)  # the refund: last_bought_ms unchanged

    def check_images(self) -> None:
        """Every image decodes with the product's own readers (the images are real items)."""
        for change in self.changes:
            for image in ("NewImage", "OldImage"):
                item = change.record["dynamodb"].get(image)
                if item is None:
                    continue
                sort_key = item["sk"]["S"]
                if sort_key == "PROVIDER":
                    provider_from_item(item)
                elif sort_key == "METER":
                    meter_from_item(item)
                elif sort_key.startswith("REJECTION#"):
                    rejection_from_item(item)
                elif sort_key == "PURCHASE":
                    purchase_from_item(item)


# -- drawing a history ---------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A history, the instant its figures are read, and the market's bucket sizes."""

    history: MarketHistory
    now_ms: int
    bucket_ms: int
    slot_ms: int


def interesting_instants(now_ms: int, bucket_ms: int, slot_ms: int) -> list[int]:
    """The edges of every window the figures use, and the instants just before them."""
    edges = [
        start_of(now_ms, bucket_ms) - DAY_MS + bucket_ms,  # the 24 h of buckets
        start_of(now_ms, bucket_ms) - 720 * HOUR_MS + bucket_ms,  # 30 days of buckets
        start_of(now_ms, bucket_ms),
        start_of(now_ms, slot_ms) - DAY_MS + slot_ms,  # the 24 h of reporting slots
        start_of(now_ms, slot_ms) - slot_ms,  # on time
        start_of(now_ms, slot_ms),
        start_of(now_ms, HOUR_MS) - 23 * HOUR_MS,  # a seller's 24 h
        start_of(now_ms, DAY_MS) - 6 * DAY_MS,  # a seller's 7 days
        start_of(now_ms, DAY_MS) - DAY_MS,
        start_of(now_ms, DAY_MS),
    ]
    return sorted({t for edge in edges for t in (edge - 1, edge)} | {now_ms})


ACTIONS: Final = (
    "register",
    "register",
    "provider",
    "provider",
    "read",
    "read",
    "read",
    "read",
    "refuse",
    "refuse",
    "rotate",
    "deposit",
    "buy",
    "buy",
    "buy",
    "buy",
    "cut",
    "settle",
    "settle",
    "settle",
    "revoke",
    "claw_back",
)


@st.composite
def scenarios(draw: st.DrawFn, max_actions: int = 40) -> Scenario:
    """A random market history ending before ``now``, with the sizes of its buckets."""
    bucket_ms = draw(st.sampled_from([5 * MINUTE_MS, 15 * MINUTE_MS, HOUR_MS]))
    slot_ms = draw(st.sampled_from([MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS]))
    aligned = 1_767_225_600_000 + 10 * DAY_MS  # a UTC midnight
    now_ms = aligned + draw(st.sampled_from([0, 1, 43_200_000]) | st.integers(0, DAY_MS - 1))
    span = draw(st.sampled_from([2 * HOUR_MS, 30 * HOUR_MS, 9 * DAY_MS, 32 * DAY_MS]))
    edges = [t for t in interesting_instants(now_ms, bucket_ms, slot_ms) if t >= now_ms - span]
    instants = st.integers(now_ms - span, now_ms) | st.sampled_from(edges)
    count = draw(st.integers(1, max_actions))
    times = sorted(draw(st.lists(instants, min_size=count, max_size=count)))
    actions = draw(st.lists(st.sampled_from(ACTIONS), min_size=count, max_size=count))
    history = MarketHistory()
    for at, action in zip(times, actions, strict=True):
        act(draw, history, action, at)
    history.check_images()
    return Scenario(history, now_ms, bucket_ms, slot_ms)


def act(draw: st.DrawFn, history: MarketHistory, action: str, at: int) -> None:
    """One event of the market at ``at``: ``action``'s details drawn, or nothing if
    the market has no subject for it yet."""
    providers = list(history.providers)
    if action == "register" or not providers:
        history.register(
            at,
            draw(st.sampled_from(list(EnergyType))),
            draw(st.sampled_from(JURISDICTIONS)),
            draw(st.integers(1, 50_000_000)),
            draw(st.sampled_from([80_000, 100_000, 120_000]) | st.integers(1, 1_000_000)),
            legacy_meter=draw(st.integers(0, 7)) == 0,
        )
        return
    provider_id = draw(st.sampled_from(providers))
    provider = history.providers[provider_id]
    if action == "provider":
        change = draw(
            st.sampled_from(["capacity", "price", "pause", "stake", "on_sale", "freeze", "noise"])
        )
        if change == "capacity":
            changes: dict[str, Any] = {"capacity_wh": draw(st.integers(1, 50_000_000))}
        elif change == "price":
            changes = {"price_micro_block_per_kwh": draw(st.integers(1, 1_000_000))}
        elif change == "pause":
            changes = {"paused": not provider.paused}
        elif change == "stake":  # slashed below the minimum (suspended), or topped up
            low = provider.stake_micro_block >= MIN_STAKE_MICRO_BLOCK
            changes = {"stake_micro_block": MIN_STAKE_MICRO_BLOCK - 1 if low else STAKE}
        elif change == "on_sale":
            changes = {"available_wh": draw(st.integers(0, 5_000_000))}
        elif change == "freeze":  # a dispute holds some energy out of the market, or ends
            freeze = Freeze(f"dispute-{at}", at - HOUR_MS, at, None, draw(st.integers(1, 10_000)))
            changes = {"freezes": () if provider.freezes else (freeze,)}
        else:  # a change the analytics do not count
            changes = {"display_name": f"{provider.display_name}+"}
        history.change_provider(at, provider_id, **changes)
    elif action == "read":
        if provider.stake_micro_block < MIN_STAKE_MICRO_BLOCK:
            history.refuse(at, provider.meter_address, Rejection.PROVIDER_SUSPENDED)
        else:
            history.read(at, provider_id, draw(st.integers(1, 20_000)))
    elif action == "refuse":
        known = draw(st.booleans())
        history.refuse(
            at,
            provider.meter_address if known else f"stranger_{at}",
            draw(st.sampled_from(list(Rejection))),
            expires=draw(st.integers(0, 4)) == 0,
        )
    elif action == "rotate":
        history.rotate_key(at, provider_id)
    elif action == "deposit":
        history.deposit(at, draw(st.sampled_from(BUYERS)), draw(st.integers(1, 10**9)))
    elif action == "buy":
        history.purchase(
            at,
            draw(st.sampled_from(BUYERS)),
            provider_id,
            draw(st.integers(2, 30_000)),
            legacy=draw(st.integers(0, 9)) == 0,
        )
    elif action == "claw_back":
        settled = [p for p, t in history.trades.items() if t.status == "settled"]
        if settled:
            history.claw_back(at, draw(st.sampled_from(settled)))
    else:
        open_ones = history.open_purchases()
        if not open_ones:
            return
        purchase_id = draw(st.sampled_from(open_ones))
        {"cut": history.cut, "settle": history.settle, "revoke": history.revoke}[action](
            at, purchase_id
        )


# -- the streams and their delivery ----------------------------------------------------


@dataclass
class Shard:
    stream_arn: str
    shard_id: str
    generation: int  # a stream's shards roll over; Lambda reads a parent before its children
    records: list[dict[str, Any]] = field(default_factory=list)
    written_ms: list[int] = field(default_factory=list)


def streams_of(
    history: MarketHistory, shards_per_generation: Sequence[int], rollover: float, salt: int
) -> list[Shard]:
    """The history's records in the shards of the two streams: by partition key, each
    shard's sequence numbers increasing; after ``rollover`` of a stream's records, the
    next generation of shards takes the keys (``shards_per_generation`` per generation)."""
    shards: list[Shard] = []
    for table, arn in (("registry", REGISTRY_STREAM), ("ledger", LEDGER_STREAM)):
        changes = [c for c in history.changes if c.table == table]
        split = int(len(changes) * rollover)
        by_name: dict[str, Shard] = {}
        for position, change in enumerate(changes):
            generation = 0 if position < split or len(shards_per_generation) == 1 else 1
            count = shards_per_generation[generation]
            index = zlib.crc32(f"{salt}/{change.pk}".encode()) % count
            name = f"shardId-{generation:020d}-{index:08x}"
            shard = by_name.setdefault(name, Shard(arn, name, generation))
            record = dict(change.record)
            record["dynamodb"] = dict(record["dynamodb"]) | {
                "SequenceNumber": str(100_000_000_000_000_000_000 + position * 1_000 + salt % 997)
            }
            shard.records.append(record)
            shard.written_ms.append(change.at_ms)
        shards.extend(by_name.values())
    return shards


@dataclass(frozen=True)
class Batch:
    """Records of one shard handed to the function in one invocation."""

    shard: int  # index into the plan's shards
    records: tuple[int, ...]  # indexes into the shard's records, in the order delivered


@dataclass(frozen=True)
class Invoke:
    """An invocation at ``clock_ms``. ``crash_after``: the function dies before its
    n-th write (then Lambda retries ``retries``, in order, each of which succeeds).
    ``racing``: another invocation that runs to its end while this one is about to
    make its first write (its writes land first; this one's conflict and retry)."""

    batch: Batch
    clock_ms: int
    first: bool  # a first delivery (else a redelivery)
    crash_after: int | None = None
    retries: tuple[Batch, ...] = ()
    racing: Invoke | None = None


@dataclass(frozen=True)
class Plan:
    shards: list[Shard]
    invokes: list[Invoke]


@st.composite
def delivery_plans(draw: st.DrawFn, scenario: Scenario, *, moving_clock: bool) -> Plan:
    """How Lambda delivers the scenario's records: see the module's docstring."""
    generations = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    shards = streams_of(
        scenario.history,
        generations,
        draw(st.sampled_from([0.25, 0.5, 0.9])),
        draw(st.integers(0, 1_000)),
    )
    now = scenario.now_ms
    taken = [0] * len(shards)  # each shard's records delivered (first time) so far
    done: list[Invoke] = []
    invokes: list[Invoke] = []
    written = [r for s in shards for r in s.written_ms]
    clock = min(written, default=now) if moving_clock else now

    def pending(i: int) -> bool:
        return taken[i] < len(shards[i].records)

    def eligible(i: int) -> bool:
        shard = shards[i]
        parents_done = not any(
            pending(j)
            for j, other in enumerate(shards)
            if other.stream_arn == shard.stream_arn and other.generation < shard.generation
        )
        return pending(i) and parents_done

    def oldest_unread(excluded: set[int]) -> int | None:
        """The oldest record not yet delivered, outside the shards in ``excluded``."""
        heads = [
            shards[i].written_ms[taken[i]]
            for i in range(len(shards))
            if pending(i) and i not in excluded
        ]
        return min(heads, default=None)

    def take(i: int, busy: set[int]) -> Batch | None:
        """The shard's next batch: its records in order, as many as drawn; with a
        moving clock, no more than keep every other record deliverable within 24 h."""
        shard = shards[i]
        size = draw(st.integers(1, min(8, len(shard.records) - taken[i])))
        indexes = list(range(taken[i], taken[i] + size))
        if moving_clock:
            oldest = oldest_unread(busy | {i})
            if oldest is not None:
                limit = oldest + STREAM_RETENTION_MS - HOUR_MS
                indexes = [n for n in indexes if shard.written_ms[n] <= limit]
        if not indexes:
            return None
        taken[i] = indexes[-1] + 1
        return Batch(i, tuple(indexes))

    def retained(batch: Batch) -> Batch | None:
        """What the stream still keeps of a batch (every record, with a fixed clock)."""
        shard = shards[batch.shard]
        kept = tuple(
            n
            for n in batch.records
            if not moving_clock or shard.written_ms[n] + STREAM_RETENTION_MS > clock
        )
        return Batch(batch.shard, kept) if kept else None

    while any(pending(i) for i in range(len(shards))):
        candidates = [i for i in range(len(shards)) if eligible(i)]
        chosen = draw(st.sampled_from(candidates))
        batch = take(chosen, set())
        if batch is None:  # its head is too new: the oldest head goes first
            oldest = oldest_unread(set())
            chosen = next(i for i in candidates if shards[i].written_ms[taken[i]] == oldest)
            batch = take(chosen, set())
            assert batch is not None
        racing = None
        others = [i for i in candidates if i != chosen and eligible(i)]
        if others and draw(st.integers(0, 5)) == 0:
            other = draw(st.sampled_from(others))
            rival = take(other, {chosen})
            if rival is not None:
                racing = Invoke(rival, 0, True)
        batches = [batch] + ([racing.batch] if racing else [])
        if moving_clock:
            newest = max(shards[b.shard].written_ms[n] for b in batches for n in b.records)
            unread = oldest_unread(set())
            ceiling = now if unread is None else min(now, unread + STREAM_RETENTION_MS - HOUR_MS)
            clock = max(clock, newest)
            clock = min(ceiling, clock + draw(st.sampled_from([0, 1_000, 5 * MINUTE_MS])))
            clock = max(clock, newest)
        if racing is not None:
            racing = replace(racing, clock_ms=clock)
        crash_after = None
        retries: tuple[Batch, ...] = ()
        if draw(st.integers(0, 5)) == 0:
            crash_after = draw(st.integers(0, 12))
            middle = (len(batch.records) + 1) // 2
            if len(batch.records) > 1 and draw(st.booleans()):  # bisected, halves in order
                retries = (
                    Batch(batch.shard, batch.records[:middle]),
                    Batch(batch.shard, batch.records[middle:]),
                )
            else:
                retries = (batch,)
        invoke = Invoke(batch, clock, True, crash_after, retries, racing)
        invokes.append(invoke)
        done.append(invoke)
        if racing is not None:
            done.append(racing)
        for _ in range(draw(st.integers(0, 2))):
            invokes.extend(redeliveries(draw, done, retained, clock))
    # Long after: earlier batches again (with a fixed clock, any; else what the stream keeps).
    for _ in range(draw(st.integers(0, 4))):
        invokes.extend(redeliveries(draw, done, retained, clock))
    return Plan(shards, invokes)


def as_written(history: MarketHistory) -> Plan:
    """Each record delivered alone, when it was written, in the order written (one
    shard per stream): a market whose functions keep up with it."""
    shards = streams_of(history, [1], 1.0, 0)
    shard_of_table = {
        "registry" if s.stream_arn == REGISTRY_STREAM else "ledger": i for i, s in enumerate(shards)
    }
    position: dict[str, int] = defaultdict(int)
    invokes = []
    for change in history.changes:
        shard = shard_of_table[change.table]
        invokes.append(Invoke(Batch(shard, (position[change.table],)), change.at_ms, True))
        position[change.table] += 1
    return Plan(shards, invokes)


def redeliveries(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    done: list[Invoke],
    retained: Callable[[Batch], Batch | None],
    clock: int,
) -> list[Invoke]:
    """A batch delivered before, again: whole, one of its halves, or a shuffled subset."""
    if not done or draw(st.integers(0, 2)) == 0:
        return []
    earlier = draw(st.sampled_from(done)).batch
    kept = retained(earlier)
    if kept is None:
        return []
    records = kept.records
    how = draw(st.sampled_from(["whole", "first half", "second half", "subset"]))
    middle = (len(records) + 1) // 2
    if how == "first half":
        records = records[:middle]
    elif how == "second half":
        records = records[middle:] or records
    elif how == "subset":
        records = tuple(draw(st.permutations(records)))[: draw(st.integers(1, len(records)))]
    return [Invoke(Batch(kept.shard, records), clock, False)]


# -- running a plan ------------------------------------------------------------------


class Crashed(Exception):
    """The function died mid-invocation (a timeout, an out-of-memory): Lambda retries."""


class _Interrupted:
    """A unit of work whose commit first runs ``before_commit`` (once, shared by all
    the units of work of one invocation): a fault, or a rival invocation landing."""

    def __init__(self, inner: Any, before_commit: Callable[[], None]) -> None:
        self._inner, self._before_commit = inner, before_commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def commit(self) -> None:
        self._before_commit()
        self._inner.commit()


def interrupted(deps: Dependencies, before_commit: Callable[[], None]) -> Dependencies:
    return replace(deps, unit_of_work=lambda: _Interrupted(deps.unit_of_work(), before_commit))


def event_of(plan: Plan, batch: Batch) -> dict[str, Any]:
    shard = plan.shards[batch.shard]
    records = [shard.records[n] for n in batch.records]
    return lambda_event(records, shard.stream_arn, shard.shard_id)


def invoke(deps: Dependencies, event: dict[str, Any]) -> analytics.FoldRun:
    """What the stream handlers do with a batch (fold_event, on these dependencies)."""
    found = contributions(event["Records"], analytics.buckets_of(deps))
    return analytics.fold(deps, shard_of(event), found)


@dataclass
class Clock:
    """The functions' clock (ms), moved by the plan."""

    now_ms: int

    def __call__(self) -> int:
        return self.now_ms


def run_plan(plan: Plan, deps: Dependencies, clock: Clock) -> list[analytics.FoldRun]:
    """Execute every invocation of the plan on ``deps`` (whose ``clock_ms`` is ``clock``)."""
    runs = []
    for step in plan.invokes:
        clock.now_ms = step.clock_ms
        runs.extend(_invoke_step(plan, deps, step))
    return runs


def _invoke_step(plan: Plan, deps: Dependencies, step: Invoke) -> list[analytics.FoldRun]:
    runs: list[analytics.FoldRun] = []
    rivals = [step.racing] if step.racing is not None else []

    def land_rival() -> None:
        while rivals:
            runs.extend(_invoke_step(plan, deps, rivals.pop()))

    hooked = interrupted(deps, land_rival) if rivals else deps
    if step.crash_after is not None:
        writes = [0]
        limit = step.crash_after

        def crash() -> None:
            if writes[0] == limit:
                raise Crashed(f"died before write {limit}")
            writes[0] += 1

        hooked = interrupted(hooked, crash)
    try:
        runs.append(invoke(hooked, event_of(plan, step.batch)))
    except Crashed:
        land_rival()  # a rival that had not landed yet runs all the same
        for retry in step.retries:
            runs.append(invoke(deps, event_of(plan, retry)))
    land_rival()  # a batch that wrote nothing never reached a commit
    return runs


# -- the figures -----------------------------------------------------------------------

PRICE_HOURS: Final = (1, 24, 720)
WINDOWS: Final = ("24h", "7d", "all")
LIMITS: Final = (1, 3, 20)


def scopes() -> tuple[list[str], list[str]]:
    types = sorted({str(t) for t in EnergyType} | {UNKNOWN})
    places = sorted(set(JURISDICTIONS) | {UNKNOWN, "FR"})
    return types, places


def actual_figures(deps: Dependencies, history: MarketHistory) -> dict[str, Any]:
    """Every figure, as the services read it from the aggregates."""
    types, places = scopes()
    found: dict[str, Any] = {"stats": analytics.market_stats(deps)}
    for hours in PRICE_HOURS:
        found[f"prices {hours}h"] = analytics.price_history(deps, hours)
        for kind in types:
            found[f"prices {hours}h {kind}"] = analytics.price_history(
                deps, hours, energy_type=kind
            )
        for place in places:
            found[f"prices {hours}h @{place}"] = analytics.price_history(
                deps, hours, jurisdiction=place
            )
        for daily in (False, True):
            found[f"activity {hours}h daily={daily}"] = analytics.activity(deps, hours, daily=daily)
    for window in WINDOWS:
        for limit in LIMITS:
            found[f"top {window} {limit}"] = analytics.top_providers(deps, window, limit)
    return found


def expected_figures(scenario: Scenario) -> dict[str, Any]:
    """Every figure, recomputed from the history's raw facts (docs/analytics.md's
    definitions, written out plainly: no aggregate, no bucket arithmetic of the product)."""
    history, now = scenario.history, scenario.now_ms
    bucket, slot = scenario.bucket_ms, scenario.slot_ms
    types, places = scopes()

    def within(at_ms: int, span_ms: int, size_ms: int) -> bool:
        """In the last ``span_ms`` of whole ``size_ms`` buckets, the current one included."""
        current = start_of(now, size_ms)
        return current - span_ms < start_of(at_ms, size_ms) <= current

    def last_day(at_ms: int) -> bool:
        return within(at_ms, DAY_MS, bucket)

    trades = list(history.trades.values())
    settled = [t for t in trades if t.status == "settled"]
    revoked = [t for t in trades if t.status == "revoked"]
    listed = [p for p in history.providers.values() if p.status == "active"]
    latest_reading_slots = [start_of(t, slot) for t in history.last_read.values()]
    day_trades = [t for t in trades if last_day(t.created_at_ms)]
    day_volume = sum(t.opened_wh for t in day_trades)
    day_readings = [r for r in history.readings if last_day(r.at_ms)]
    day_refusals = by_key((reason, 1) for reason, at in history.refusals if last_day(at))
    current_slot = start_of(now, slot)
    on_time = sum(1 for s in latest_reading_slots if current_slot - slot <= s <= current_slot)
    on_sale = sum(p.on_sale_wh for p in listed)

    totals = by_key(
        [("trades", len(trades))]
        + [("volume_wh", t.opened_wh) for t in trades]
        + [("notional", t.opened_micro_block) for t in trades]
        + [(f"traded_wh:{t.energy_type}", t.opened_wh) for t in trades]
        + [("settled", len(settled))]
        + [("settled_wh", t.wh) for t in settled]
        + [("revenue", t.micro_block) for t in settled]
        + [(f"settled_wh:{t.energy_type}", t.wh) for t in settled]
        + [(f"bought_wh@{kind}@{place}", wh) for kind, place, wh, _ in history.bought]
        + [("revoked", len(revoked))]
        + [("revoked_wh", t.wh) for t in revoked]
        + [("readings", len(history.readings))]
        + [(f"generated_wh:{r.energy_type}", r.wh) for r in history.readings]
        + [(f"refused:{reason}", 1) for reason, _ in history.refusals]
    )
    stats = analytics.MarketStats(
        as_of_ms=now,
        bucket_ms=bucket,
        total_capacity_wh=sum(p.capacity_wh for p in listed),
        capacity_wh_by_type=by_key((str(p.energy_type), p.capacity_wh) for p in listed),
        providers_registered=len(history.providers),
        providers_listed=len(listed),
        providers_active_24h=sum(1 for t in history.last_read.values() if within(t, DAY_MS, slot)),
        meters_on_time=on_time,
        buyers_active_24h=sum(1 for t in history.last_bought.values() if last_day(t)),
        vwap_24h=(
            sum(t.opened_micro_block for t in day_trades) * 1000 // day_volume
            if day_volume
            else None
        ),
        listed_average_price=(
            sum(p.price_micro_block_per_kwh for p in listed) // len(listed) if listed else None
        ),
        trades_24h=len(day_trades),
        energy_traded_wh_24h=day_volume,
        energy_traded_wh_all_time=sum(t.opened_wh for t in trades),
        energy_settled_wh_24h=sum(t.wh for t in settled if last_day(t.closed_at_ms or 0)),
        energy_settled_wh_all_time=sum(t.wh for t in settled),
        revenue_24h=sum(t.micro_block for t in settled if last_day(t.closed_at_ms or 0)),
        revenue_all_time=sum(t.micro_block for t in settled),
        on_sale_wh=on_sale,
        generated_wh_24h=by_key((r.energy_type, r.wh) for r in day_readings),
        traded_wh_24h=by_key((t.energy_type, t.opened_wh) for t in day_trades),
        bought_wh_by_origin=by_key((f"{k}@{p}", wh) for k, p, wh, _ in history.bought),
        readings_24h=len(day_readings),
        refused_24h=day_refusals,
        # The score's formula is the documented one; its inputs are recomputed here.
        grid=analytics.grid_health(
            on_time,
            len(history.last_read),
            len(day_readings),
            sum(n for reason, n in day_refusals.items() if reason != "duplicate"),
            on_sale,
            day_volume,
        ),
        top_providers_24h=leaders(history.sales, "24h", now, 5),
        open_disputes=0,
        totals=totals,
    )
    expected: dict[str, Any] = {"stats": stats}
    for hours in PRICE_HOURS:
        span = hours * HOUR_MS
        expected[f"prices {hours}h"] = price_buckets(trades, span, bucket, within)
        for kind in types:
            chosen = [t for t in trades if t.energy_type == kind]
            expected[f"prices {hours}h {kind}"] = price_buckets(chosen, span, bucket, within)
        for place in places:
            chosen = [t for t in trades if t.jurisdiction == place]
            expected[f"prices {hours}h @{place}"] = price_buckets(chosen, span, bucket, within)
        for daily in (False, True):
            expected[f"activity {hours}h daily={daily}"] = activity(scenario, trades, span, daily)
    for window in WINDOWS:
        for limit in LIMITS:
            expected[f"top {window} {limit}"] = leaders(history.sales, window, now, limit)
    return expected


def by_key(pairs: Any) -> dict[str, int]:
    """Sums by key, without the zeros."""
    sums: dict[str, int] = defaultdict(int)
    for key, value in pairs:
        sums[key] += value
    return {k: v for k, v in sorted(sums.items()) if v}


def price_buckets(
    trades: list[Trade], span_ms: int, bucket_ms: int, within: Callable[[int, int, int], bool]
) -> list[analytics.PriceBucket]:
    grouped: dict[int, list[Trade]] = defaultdict(list)
    for trade in trades:
        if within(trade.created_at_ms, span_ms, bucket_ms):
            grouped[start_of(trade.created_at_ms, bucket_ms)].append(trade)
    found = []
    for start, members in sorted(grouped.items()):
        in_time = sorted(members, key=lambda t: (t.created_at_ms, t.purchase_id))
        volume = sum(t.opened_wh for t in members)
        found.append(
            analytics.PriceBucket(
                start_ms=start,
                open=in_time[0].price,
                high=max(t.price for t in members),
                low=min(t.price for t in members),
                close=in_time[-1].price,
                vwap=sum(t.opened_micro_block for t in members) * 1000 // volume,
                volume_wh=volume,
                trades=len(members),
            )
        )
    return found


def activity(
    scenario: Scenario, trades: list[Trade], span_ms: int, daily: bool
) -> list[analytics.ActivityBucket]:
    """Per bucket (or UTC day) with any activity: trades by when they were made,
    settlements and revocations by when they closed, readings by their time and
    refusals by when they were received (a bucket with only refusals or
    revocations is listed, with zeros)."""
    now, bucket = scenario.now_ms, scenario.bucket_ms
    last = start_of(now, bucket)
    first = last - span_ms + bucket
    if daily:
        first = start_of(first, DAY_MS)
    size = DAY_MS if daily else bucket

    def group(at_ms: int) -> int | None:
        start = start_of(at_ms, bucket)
        return start_of(start, size) if first <= start <= last else None

    @dataclass
    class Sums:
        trades: int = 0
        traded_wh: int = 0
        notional: int = 0
        settled_wh: int = 0
        revenue: int = 0
        generated: list[tuple[str, int]] = field(default_factory=list)
        origins: list[tuple[str, int]] = field(default_factory=list)
        readings: int = 0

    sums: dict[int, Sums] = {}

    def at(at_ms: int) -> Iterator[Sums]:
        key = group(at_ms)
        if key is not None:
            yield sums.setdefault(key, Sums())

    for trade in trades:
        for entry in at(trade.created_at_ms):
            entry.trades += 1
            entry.traded_wh += trade.opened_wh
            entry.notional += trade.opened_micro_block
        if trade.closed_at_ms is None:
            continue
        for entry in at(trade.closed_at_ms):
            if trade.status == "settled":
                entry.settled_wh += trade.wh
                entry.revenue += trade.micro_block
    for kind, place, wh, when in scenario.history.bought:
        for entry in at(when):
            entry.origins.append((f"{kind}@{place}", wh))
    for reading in scenario.history.readings:
        for entry in at(reading.at_ms):
            entry.readings += 1
            entry.generated.append((reading.energy_type, reading.wh))
    for _, received in scenario.history.refusals:
        key = group(received)
        if key is not None:
            sums.setdefault(key, Sums())
    return [
        analytics.ActivityBucket(
            start_ms=start,
            trades=s.trades,
            traded_wh=s.traded_wh,
            notional=s.notional,
            settled_wh=s.settled_wh,
            revenue=s.revenue,
            generated_wh=by_key(s.generated),
            bought_wh_by_origin=by_key(s.origins),
            readings=s.readings,
        )
        for start, s in sorted(sums.items())
    ]


def leaders(
    sales: list[tuple[str, int, int]], window: str, now: int, limit: int
) -> list[analytics.Leader]:
    """Providers by energy sold (settled, less what was clawed back, each when it
    happened): in the current hour and the 23 before (24h), the current UTC day
    and the 6 before (7d), or ever; those with more than nothing, ties by id."""
    if window == "24h":
        since = start_of(now, HOUR_MS) - 23 * HOUR_MS
    elif window == "7d":
        since = start_of(now, DAY_MS) - 6 * DAY_MS
    else:
        since = 0
    sold = by_key((provider, wh) for provider, wh, at in sales if at >= since)
    ranked = sorted(
        ((p, wh) for p, wh in sold.items() if wh > 0), key=lambda pair: (-pair[1], pair[0])
    )
    return [analytics.Leader(provider_id, wh) for provider_id, wh in ranked[:limit]]


def market_deps(deps: Dependencies, scenario: Scenario, clock: Clock) -> Dependencies:
    """``deps`` with the scenario's bucket sizes and the plan's clock."""
    settings = deps.settings.model_copy(
        update={"analytics_bucket_ms": scenario.bucket_ms, "analytics_slot_ms": scenario.slot_ms}
    )
    return replace(deps, settings=settings, clock_ms=clock)


def reading_deps(deps: Dependencies, scenario: Scenario) -> Dependencies:
    """The same market, read at the scenario's ``now``."""
    return replace(deps, clock_ms=lambda: scenario.now_ms)
