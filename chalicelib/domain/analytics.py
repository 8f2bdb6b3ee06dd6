"""Market analytics: what each change in the market adds to its aggregates, exactly once.

The figures of the overview (capacity, prices, energy traded, buyers, the
grid's health, the energy mix, the leaderboard) are sums over records that
the tables' streams deliver. Each stream record becomes a few contributions
(``Delta``) to aggregates named by ``AggregateKey``: time buckets of trades
and of meter activity, the market's current state, all-time totals, and one
aggregate per seller. Contributions are pure functions of the record's old and
new images, so a state change (a provider's capacity, a buyer's latest
purchase, a meter's latest reading) is counted as the difference it makes.

Exactly once. Lambda reads a stream shard in order the first time; a record
may come again (a retried or bisected batch), and a record delivered again may
come out of order. Every aggregate remembers, per shard, the sequence number
of the newest record it has counted (``marks``); ``apply`` counts only records
above it, so a repeat counts nothing and first deliveries, being in order, are
all counted. Marks older than the stream's retention are dropped: nothing
below them can be delivered again.

All integers: Wh, micro-BLOCK, counts. Prices are micro-BLOCK per kWh.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, NamedTuple

# DynamoDB keeps stream records 24 hours; a mark set longer ago than this
# guards nothing any more (every record at or below it has expired).
MARK_RETENTION_MS: Final = 25 * 3_600_000
# Stream sequence numbers are decimal strings of 21 to 40 digits; padded to
# 40 they compare as strings the way they compare as numbers.
SEQUENCE_DIGITS: Final = 40
DAY_MS: Final = 86_400_000
LEADERBOARD_WINDOWS: Final = ("24h", "7d", "all")
# How many hours of hourly buckets and days of daily buckets a seller keeps
# to recompute its 24-hour and 7-day sales (a little more than the window:
# buckets are aligned, windows are not).
SELLER_HOURS_KEPT: Final = 25
SELLER_DAYS_KEPT: Final = 8


class AggregateKey(NamedTuple):
    """Where an aggregate lives: a family partition and a member (often a bucket)."""

    pk: str
    sk: str


# -- the aggregates ---------------------------------------------------------------

STATE: Final = AggregateKey("STATE", "MARKET")  # the market now: providers, capacity, on sale
TOTALS: Final = AggregateKey("TOTALS", "ALL")  # all-time sums

MARKET_SCOPE: Final = "market"


def bucket_sk(start_ms: int) -> str:
    return f"{start_ms:015d}"


def trades_pk(scope: str) -> str:
    """Trades of a scope: ``market``, ``type#<energy type>``, ``jur#<jurisdiction>``."""
    return f"TRADES#{scope}"


def type_scope(energy_type: str) -> str:
    return f"type#{energy_type}"


def jurisdiction_scope(jurisdiction: str) -> str:
    return f"jur#{jurisdiction}"


def trades_key(scope: str, bucket_start_ms: int) -> AggregateKey:
    return AggregateKey(trades_pk(scope), bucket_sk(bucket_start_ms))


METERS_PK: Final = "METERS"  # per bucket: readings, refusals, energy generated
REPORTING_PK: Final = "REPORTING"  # per slot: meters whose latest reading is in it
BUYERS_PK: Final = "BUYERS"  # per bucket: buyers whose latest purchase is in it
BOUGHT_PK: Final = "BOUGHT"  # per bucket: energy bought (settled, less revoked) by origin


def meters_key(bucket_start_ms: int) -> AggregateKey:
    return AggregateKey(METERS_PK, bucket_sk(bucket_start_ms))


def reporting_key(slot_start_ms: int) -> AggregateKey:
    return AggregateKey(REPORTING_PK, bucket_sk(slot_start_ms))


def buyers_key(bucket_start_ms: int) -> AggregateKey:
    return AggregateKey(BUYERS_PK, bucket_sk(bucket_start_ms))


def bought_key(bucket_start_ms: int) -> AggregateKey:
    return AggregateKey(BOUGHT_PK, bucket_sk(bucket_start_ms))


def seller_key(provider_id: str) -> AggregateKey:
    return AggregateKey(f"SELLER#{provider_id}", "SELLER")


def start_of(at_ms: int, size_ms: int) -> int:
    return at_ms - at_ms % size_ms


# -- contributions ----------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PricePoint:
    """A trade's price, ordered by time (then purchase id) for open and close."""

    at_ms: int
    purchase_id: str
    price: int  # micro-BLOCK per kWh


@dataclass(frozen=True)
class Delta:
    """What one record adds to one aggregate: counters, and a trade's price."""

    counters: Mapping[str, int] = field(default_factory=dict)
    trade: PricePoint | None = None


class Contribution(NamedTuple):
    sequence: str  # the stream record's sequence number, padded
    key: AggregateKey
    delta: Delta


def padded_sequence(sequence_number: str) -> str:
    if not sequence_number.isdigit() or len(sequence_number) > SEQUENCE_DIGITS:
        raise ValueError(f"not a stream sequence number: {sequence_number!r}")
    return sequence_number.rjust(SEQUENCE_DIGITS, "0")


def difference(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """``after - before`` per counter, without the zeros."""
    names = sorted(set(after) | set(before))
    return {n: d for n in names if (d := after.get(n, 0) - before.get(n, 0))}


@dataclass(frozen=True)
class Mark:
    sequence: str  # the newest counted record of a shard (padded)
    set_at_ms: int


@dataclass(frozen=True)
class Aggregate:
    key: AggregateKey
    counters: Mapping[str, int] = field(default_factory=dict)
    open: PricePoint | None = None
    close: PricePoint | None = None
    high: int | None = None
    low: int | None = None
    marks: Mapping[str, Mark] = field(default_factory=dict)
    version: int = 0  # 0: not stored yet

    def count(self, name: str) -> int:
        return self.counters.get(name, 0)

    def with_prefix(self, prefix: str) -> dict[str, int]:
        """Counters named ``<prefix><suffix>``, by suffix (``generated_wh:solar``...)."""
        return {
            n.removeprefix(prefix): v
            for n, v in self.counters.items()
            if n.startswith(prefix) and v
        }


def merge(aggregate: Aggregate, delta: Delta) -> Aggregate:
    counters = dict(aggregate.counters)
    for name, value in delta.counters.items():
        total = counters.get(name, 0) + value
        if total:
            counters[name] = total
        else:
            counters.pop(name, None)
    trade = delta.trade
    if trade is None:
        return replace(aggregate, counters=counters)
    return replace(
        aggregate,
        counters=counters,
        open=trade if aggregate.open is None else min(aggregate.open, trade),
        close=trade if aggregate.close is None else max(aggregate.close, trade),
        high=trade.price if aggregate.high is None else max(aggregate.high, trade.price),
        low=trade.price if aggregate.low is None else min(aggregate.low, trade.price),
    )


def written_whole(key: AggregateKey) -> bool:
    """Trade buckets (open, close, high, low) and sellers (their windows, their
    index keys) are read and written whole; every other aggregate is counters
    only, which a write adds to without reading."""
    return key.pk.startswith(("TRADES#", "SELLER#"))


def summed(deltas: Iterable[Delta]) -> dict[str, int]:
    """The counters of several deltas added up (without the zeros)."""
    return dict(merge(Aggregate(STATE), Delta(_total(deltas))).counters)


def _total(deltas: Iterable[Delta]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for delta in deltas:
        for name, value in delta.counters.items():
            totals[name] = totals.get(name, 0) + value
    return totals


def stale_marks(aggregate: Aggregate, now_ms: int) -> list[str]:
    """Shards whose mark no redelivery can reach any more (the stream dropped them)."""
    return sorted(s for s, m in aggregate.marks.items() if m.set_at_ms < now_ms - MARK_RETENTION_MS)


def apply(
    aggregate: Aggregate,
    shard: str,
    contributions: Iterable[tuple[str, Delta]],
    now_ms: int,
) -> Aggregate | None:
    """The aggregate with the shard's records above its mark counted; None if none is."""
    mark = aggregate.marks.get(shard)
    fresh = [(s, d) for s, d in contributions if mark is None or s > mark.sequence]
    if not fresh:
        return None
    result = aggregate
    for _, delta in fresh:
        result = merge(result, delta)
    marks = {
        name: m
        for name, m in aggregate.marks.items()
        if name != shard and m.set_at_ms >= now_ms - MARK_RETENTION_MS
    }
    marks[shard] = Mark(max(s for s, _ in fresh), now_ms)
    return replace(result, marks=marks)


# -- the leaderboard's sellers -------------------------------------------------------


def hour_counter(hour_start_ms: int) -> str:
    return f"h:{hour_start_ms}"


def day_counter(day_start_ms: int) -> str:
    return f"d:{day_start_ms}"


def sold(seller: Aggregate, window: str, now_ms: int) -> int:
    """Wh a seller sold in the window ending now: ``24h``, ``7d`` or ``all``.

    24 h is the current hour and the 23 before it; 7 days the current UTC day
    and the 6 before it. Net: a revocation counts, negatively, when it happened.
    """
    if window == "all":
        return seller.count("all")
    prefix, since = _window(window, now_ms)
    return sum(v for at, v in _ring(seller, prefix) if at >= since)


def _ring(seller: Aggregate, prefix: str) -> Iterator[tuple[int, int]]:
    for name, value in seller.counters.items():
        if name.startswith(prefix):
            yield int(name.removeprefix(prefix)), value


def trim_seller(seller: Aggregate, now_ms: int) -> Aggregate:
    """The seller without hours and days that no window reaches any more."""
    oldest_hour = start_of(now_ms, 3_600_000) - SELLER_HOURS_KEPT * 3_600_000
    oldest_day = start_of(now_ms, DAY_MS) - SELLER_DAYS_KEPT * DAY_MS
    kept = {
        name: value
        for name, value in seller.counters.items()
        if not (name.startswith("h:") and int(name[2:]) < oldest_hour)
        and not (name.startswith("d:") and int(name[2:]) < oldest_day)
    }
    return replace(seller, counters=kept)


def sale(wh: int, at_ms: int) -> Delta:
    """A change of a seller's sales (a settlement, or a revocation: negative)."""
    return Delta(
        {
            "all": wh,
            hour_counter(start_of(at_ms, 3_600_000)): wh,
            day_counter(start_of(at_ms, DAY_MS)): wh,
        }
    )


@dataclass(frozen=True)
class Ranked:
    provider_id: str
    sold_wh: int


def top_sellers(
    candidates: Iterable[Iterable[tuple[int, Aggregate]]],
    window: str,
    now_ms: int,
    limit: int,
) -> list[Ranked]:
    """The ``limit`` best sellers of a window, from candidates in descending order of a bound.

    Each candidate stream yields (bound, seller) with bound >= what the seller
    sold in the window now (a seller's stored figure was its sales when last
    written; since then sales only leave the window). Reading stops when the
    best unread bound cannot beat the last place.
    """
    streams = [iter(s) for s in candidates]
    heads: list[tuple[int, Aggregate] | None] = [next(s, None) for s in streams]
    best: list[Ranked] = []
    seen: set[str] = set()
    while True:
        live = [(h[0], i, h[1]) for i, h in enumerate(heads) if h is not None]
        if not live:
            break
        bound, index, seller = max(live, key=lambda entry: entry[:2])
        if len(best) >= limit and best[limit - 1].sold_wh > bound:
            break
        heads[index] = next(streams[index], None)
        provider_id = seller.key.pk.removeprefix("SELLER#")
        if provider_id in seen:
            continue
        seen.add(provider_id)
        value = sold(seller, window, now_ms)
        if value > 0:
            best.append(Ranked(provider_id, value))
            best.sort(key=lambda r: (-r.sold_wh, r.provider_id))
    return best[:limit]


# -- what records add ----------------------------------------------------------------


@dataclass(frozen=True)
class Buckets:
    """The sizes of the time buckets: trades and meters, and reporting slots."""

    bucket_ms: int = 3_600_000
    slot_ms: int = 900_000


@dataclass(frozen=True)
class ProviderFacts:
    """What the market's state counts of a provider."""

    energy_type: str
    status: str  # "active", "paused" or "suspended"
    capacity_wh: int
    price_micro_block_per_kwh: int
    on_sale_wh: int
    sold_wh: int = 0  # settled sales, less what guilty disputes revoked
    sold_at_ms: int | None = None  # when sold_wh last changed


def provider_counters(provider: ProviderFacts | None) -> dict[str, int]:
    """A provider's part of the market's state. Listed means active: on the market."""
    if provider is None:
        return {}
    counters = {"providers": 1, f"providers:{provider.status}": 1}
    if provider.status == "active":
        kind = provider.energy_type
        counters |= {
            "capacity_wh": provider.capacity_wh,
            f"capacity_wh:{kind}": provider.capacity_wh,
            "listed_price_sum": provider.price_micro_block_per_kwh,
            "on_sale_wh": provider.on_sale_wh,
            f"on_sale_wh:{kind}": provider.on_sale_wh,
        }
    return counters


def provider_change(
    provider_id: str, before: ProviderFacts | None, after: ProviderFacts | None
) -> list[tuple[AggregateKey, Delta]]:
    """The market's state, and the seller's sales: a settlement adds to them, a
    guilty verdict's revocation takes away, each when it happened."""
    found: list[tuple[AggregateKey, Delta]] = []
    change = difference(provider_counters(after), provider_counters(before))
    if change:
        found.append((STATE, Delta(change)))
    sold = (after.sold_wh if after else 0) - (before.sold_wh if before else 0)
    if sold and after is not None and after.sold_at_ms is not None:
        found.append((seller_key(provider_id), sale(sold, after.sold_at_ms)))
    return found


@dataclass(frozen=True)
class TradeFacts:
    """A purchase as the analytics see it."""

    purchase_id: str
    provider_id: str
    energy_type: str
    jurisdiction: str
    wh: int
    micro_block: int  # what the buyer pays (the escrow)
    price_micro_block_per_kwh: int
    status: str  # "open", "settled" or "revoked"
    created_at_ms: int
    closed_at_ms: int | None  # settled or revoked


def origin(energy_type: str, jurisdiction: str) -> str:
    return f"{energy_type}@{jurisdiction}"


def purchase_change(
    before: TradeFacts | None, after: TradeFacts, buckets: Buckets
) -> list[tuple[AggregateKey, Delta]]:
    """A trade when a purchase opens; a sale when it settles; a revocation."""
    found: list[tuple[AggregateKey, Delta]] = []
    if before is None:
        at = after.created_at_ms
        bucket = start_of(at, buckets.bucket_ms)
        point = PricePoint(at, after.purchase_id, after.price_micro_block_per_kwh)
        trade = {"trades": 1, "volume_wh": after.wh, "notional": after.micro_block}
        for scope in (
            MARKET_SCOPE,
            type_scope(after.energy_type),
            jurisdiction_scope(after.jurisdiction),
        ):
            extra = {f"traded_wh:{after.energy_type}": after.wh} if scope == MARKET_SCOPE else {}
            found.append((trades_key(scope, bucket), Delta(trade | extra, point)))
        found.append(
            (
                TOTALS,
                Delta(
                    {
                        "trades": 1,
                        "volume_wh": after.wh,
                        "notional": after.micro_block,
                        f"traded_wh:{after.energy_type}": after.wh,
                    }
                ),
            )
        )
    was_open = before is None or before.status == "open"
    if was_open and after.status != "open" and after.closed_at_ms is not None:
        at = after.closed_at_ms
        bucket = start_of(at, buckets.bucket_ms)
        if after.status == "settled":
            settled = {
                "settled": 1,
                "settled_wh": after.wh,
                "revenue": after.micro_block,
                f"settled_wh:{after.energy_type}": after.wh,
            }
            found.append((trades_key(MARKET_SCOPE, bucket), Delta(settled)))
            found.append((TOTALS, Delta(settled)))
        elif after.status == "revoked":
            revoked = {"revoked": 1, "revoked_wh": after.wh}
            found.append((trades_key(MARKET_SCOPE, bucket), Delta(revoked)))
            found.append((TOTALS, Delta(revoked)))
    return found


def latest_moved(
    pk: str, before_ms: int | None, after_ms: int | None, size_ms: int
) -> list[tuple[AggregateKey, Delta]]:
    """One member moving its latest time from one bucket to another.

    Counting each member in the bucket of its latest event makes "members
    active since t" the sum of the buckets after t: exact, and no member
    counted twice however often it acts.
    """
    old = None if before_ms is None else start_of(before_ms, size_ms)
    new = None if after_ms is None else start_of(after_ms, size_ms)
    if old == new:
        return []
    found = []
    if old is not None:
        found.append((AggregateKey(pk, bucket_sk(old)), Delta({"latest": -1})))
    if new is not None:
        found.append((AggregateKey(pk, bucket_sk(new)), Delta({"latest": 1})))
    return found


@dataclass(frozen=True)
class MeterFacts:
    energy_type: str
    counter_wh: int | None
    timestamp_ms: int | None
    reading_hash: str | None


def meter_change(
    before: MeterFacts | None, after: MeterFacts, buckets: Buckets
) -> list[tuple[AggregateKey, Delta]]:
    """An accepted reading: the energy it adds and the meter's latest slot."""
    if after.reading_hash is None or after.timestamp_ms is None or after.counter_wh is None:
        return []
    if before is not None and before.reading_hash == after.reading_hash:
        return []  # the record changed something else (a key, a refusal counted)
    previous = before.counter_wh if before is not None else None
    wh = after.counter_wh - previous if previous is not None else 0
    counters = {"readings": 1}
    if wh:
        counters[f"generated_wh:{after.energy_type}"] = wh
    found = [
        (meters_key(start_of(after.timestamp_ms, buckets.bucket_ms)), Delta(counters)),
        (TOTALS, Delta(counters)),
    ]
    if before is None or before.timestamp_ms is None:
        found.append((STATE, Delta({"meters_reporting": 1})))  # its first reading
    return found + latest_moved(
        REPORTING_PK,
        before.timestamp_ms if before is not None else None,
        after.timestamp_ms,
        buckets.slot_ms,
    )


def refusal(reason: str, at_ms: int, buckets: Buckets) -> list[tuple[AggregateKey, Delta]]:
    """A refused reading (or a duplicate delivery), by reason, when it was received."""
    counters = {f"refused:{reason}": 1}
    return [
        (meters_key(start_of(at_ms, buckets.bucket_ms)), Delta(counters)),
        (TOTALS, Delta(counters)),
    ]


def bought_change(
    before: Mapping[tuple[str, str], int],
    after: Mapping[tuple[str, str], int],
    at_ms: int,
    buckets: Buckets,
) -> list[tuple[AggregateKey, Delta]]:
    """An account's bought energy by origin moving: a settlement adds, a
    revocation takes away. The market's carbon is the sum over accounts, so it
    agrees with every account's own figure."""
    change = difference(
        {f"bought_wh@{origin(*o)}": wh for o, wh in after.items()},
        {f"bought_wh@{origin(*o)}": wh for o, wh in before.items()},
    )
    if not change:
        return []
    return [
        (TOTALS, Delta(change)),
        (bought_key(start_of(at_ms, buckets.bucket_ms)), Delta(change)),
    ]


def buyer_change(
    before_ms: int | None, after_ms: int | None, buckets: Buckets
) -> list[tuple[AggregateKey, Delta]]:
    return latest_moved(BUYERS_PK, before_ms, after_ms, buckets.bucket_ms)


@dataclass(frozen=True)
class SellerIndex:
    """Where a seller ranks: its newest sale's day, and its sales as of the write.

    The 24-hour and 7-day figures only fall as time passes without a sale, so
    they bound what the seller sold in those windows whenever they are read;
    the newest sale's day bounds which sellers can have sold in a window.
    ``latest_day_ms`` is None when no sale is in the days a seller keeps (a
    sale folded more than ``SELLER_DAYS_KEPT`` days late, as a replay of old
    records does): such a seller ranks all-time only.
    """

    latest_day_ms: int | None
    sold_24h: int
    sold_7d: int
    sold_all: int


def seller_index(seller: Aggregate, now_ms: int) -> SellerIndex | None:
    if not seller.key.pk.startswith("SELLER#") or not seller.count("all"):
        return None
    days = [at for at, _ in _ring(seller, "d:")]
    return SellerIndex(
        max(days, default=None),
        _bound(seller, "24h", now_ms),
        _bound(seller, "7d", now_ms),
        max(0, seller.count("all")),
    )


def _bound(seller: Aggregate, window: str, now_ms: int) -> int:
    """The most the seller can show in the window at any later time, without a sale.

    Later windows hold a suffix (by time) of today's entries: with revocations
    (negative entries) a suffix can exceed the whole, so the bound is the
    largest suffix sum, not the sum.
    """
    prefix, since = _window(window, now_ms)
    entries = sorted((at, v) for at, v in _ring(seller, prefix) if at >= since)
    best = running = 0
    for _, value in reversed(entries):
        running += value
        best = max(best, running)
    return best


def _window(window: str, now_ms: int) -> tuple[str, int]:
    if window == "24h":
        return "h:", start_of(now_ms, 3_600_000) - 23 * 3_600_000
    if window == "7d":
        return "d:", start_of(now_ms, DAY_MS) - 6 * DAY_MS
    raise ValueError(f"no such window: {window}")


def candidate_days(window: str, now_ms: int) -> list[int]:
    """The newest-sale days of every seller that can have sold in the window."""
    today = start_of(now_ms, DAY_MS)
    days = {"24h": 2, "7d": 7}[window]
    return [today - n * DAY_MS for n in range(days)]
