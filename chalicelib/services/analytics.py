"""Market analytics: folding the streams into aggregates, and the figures read from them.

Folding (off the request path, from the stream handlers): a batch's
contributions are grouped by aggregate, and each aggregate is written once
for the whole batch, counting the records above its shard mark:

- counters (the state, totals, meter buckets, reporting slots, buyers): one
  UpdateItem that ADDs the batch's sums, conditional on the shard's mark being
  below the batch's first record. No read; other shards' writes commute. A
  repeat fails the condition, reads the mark and adds only what is above it
  (nothing, for a plain redelivery);
- trade buckets and sellers: read together in one BatchGetItem, merged
  (``analytics.apply``), put conditional on the version read; a lost race
  reads again.

So a batch costs one write per aggregate it touches (and one read request if
it touches trade buckets or sellers), whatever the number of records: no item
is written per reading.

Reading: every figure comes from a fixed set of aggregates (the state, the
totals, the buckets of a window: one Query each), so its cost depends on the
window asked for, never on how long the market has run. docs/analytics.md
defines every figure.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from chalicelib.domain import analytics
from chalicelib.domain.analytics import (
    Aggregate,
    AggregateKey,
    Buckets,
    Contribution,
    Delta,
    bucket_sk,
    start_of,
)
from chalicelib.domain.carbon import CarbonOffset
from chalicelib.domain.disputes import DisputeStatus
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.services import carbon
from chalicelib.services.dependencies import Dependencies

logger = logging.getLogger(__name__)

# Attempts per aggregate when other shards' batches write it at the same time.
FOLD_ATTEMPTS: Final = 8
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
MAX_HISTORY_HOURS: Final = 30 * 24
ON_TIME_SLOTS: Final = 2  # a meter reading every 15 minutes is on time within 30


def buckets_of(deps: Dependencies) -> Buckets:
    return Buckets(deps.settings.analytics_bucket_ms, deps.settings.analytics_slot_ms)


@dataclass
class FoldRun:
    contributions: int = 0
    aggregates: int = 0  # touched by the batch
    written: int = 0
    repeats: int = 0  # aggregates that had counted every record already
    conflicts: int = 0

    def as_log(self) -> dict[str, int]:
        return {
            "contributions": self.contributions,
            "aggregates": self.aggregates,
            "written": self.written,
            "repeats": self.repeats,
            "conflicts": self.conflicts,
        }


def fold(deps: Dependencies, shard: str, batch: Sequence[Contribution]) -> FoldRun:
    """Count a stream batch's contributions into their aggregates, each record once."""
    run = FoldRun(contributions=len(batch))
    grouped: dict[AggregateKey, list[tuple[str, Delta]]] = defaultdict(list)
    for contribution in batch:
        grouped[contribution.key].append((contribution.sequence, contribution.delta))
    run.aggregates = len(grouped)
    whole = [key for key in grouped if analytics.written_whole(key)]
    stored = deps.unit_of_work().analytics.get_many(whole) if whole else {}
    for key, records in grouped.items():
        if analytics.written_whole(key):
            _put_whole(deps, shard, stored.get(key) or Aggregate(key), records, run)
        else:
            _add_counters(deps, shard, key, records, run)
    return run


def _add_counters(
    deps: Dependencies,
    shard: str,
    key: AggregateKey,
    records: list[tuple[str, Delta]],
    run: FoldRun,
) -> None:
    """One ADD of the batch's sums, conditional on the shard's mark (no read first)."""
    seen: analytics.Mark | None = None
    fresh = records
    for _ in range(FOLD_ATTEMPTS):
        now_ms = deps.now_ms()
        repository = deps.unit_of_work().analytics
        try:
            written = repository.add_counters(
                key,
                shard,
                analytics.summed(delta for _, delta in fresh),
                min(s for s, _ in fresh),
                max(s for s, _ in fresh),
                seen,
                now_ms,
            )
        except ConcurrentUpdate:
            # A repeat (the mark is at or above some of these records), or
            # another delivery of this shard moved the mark meanwhile.
            run.conflicts += 1
            current = deps.unit_of_work().analytics.get_many([key]).get(key)
            seen = current.marks.get(shard) if current is not None else None
            mark = seen
            fresh = [r for r in records if mark is None or r[0] > mark.sequence]
            if not fresh:
                run.repeats += 1
                return
            continue
        run.written += 1
        stale = analytics.stale_marks(written, now_ms)
        if stale:
            repository.forget_marks(written, stale)
        return
    raise ConcurrentUpdate("an aggregate kept moving; the batch will be retried")


def _put_whole(
    deps: Dependencies,
    shard: str,
    aggregate: Aggregate,
    records: list[tuple[str, Delta]],
    run: FoldRun,
) -> None:
    """Read, count what is above the shard's mark, put conditional on the version."""
    for _ in range(FOLD_ATTEMPTS):
        now_ms = deps.now_ms()
        updated = analytics.apply(aggregate, shard, records, now_ms)
        if updated is None:
            run.repeats += 1
            return
        if updated.key.pk.startswith("SELLER#"):
            updated = analytics.trim_seller(updated, now_ms)
        uow = deps.unit_of_work()
        uow.analytics.save(updated, now_ms)
        try:
            uow.commit()
        except ConcurrentUpdate:
            run.conflicts += 1
            found = deps.unit_of_work().analytics.get_many([aggregate.key])
            aggregate = found.get(aggregate.key) or Aggregate(aggregate.key)
            continue
        run.written += 1
        return
    raise ConcurrentUpdate("an aggregate kept moving; the batch will be retried")


# -- the figures ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The buckets from ``first`` to ``last`` (bucket starts, inclusive)."""

    first_ms: int
    last_ms: int
    bucket_ms: int

    @classmethod
    def ending_now(cls, now_ms: int, span_ms: int, bucket_ms: int) -> Window:
        last = start_of(now_ms, bucket_ms)
        return cls(last - span_ms + bucket_ms, last, bucket_ms)

    def members(self, deps: Dependencies, pk: str) -> list[Aggregate]:
        return deps.unit_of_work().analytics.members(
            pk, bucket_sk(self.first_ms), bucket_sk(self.last_ms)
        )


def _sum(aggregates: Sequence[Aggregate], name: str) -> int:
    return sum(a.count(name) for a in aggregates)


def _sum_prefixed(aggregates: Sequence[Aggregate], prefix: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for aggregate in aggregates:
        for suffix, value in aggregate.with_prefix(prefix).items():
            totals[suffix] += value
    return {k: v for k, v in sorted(totals.items()) if v}


def origins(wh_by_origin: Mapping[str, int]) -> dict[tuple[str, str | None], int]:
    """``{"<type>@<jurisdiction>": wh}`` as carbon's origins."""
    found: dict[tuple[str, str | None], int] = {}
    for name, wh in wh_by_origin.items():
        energy_type, _, jurisdiction = name.partition("@")
        found[(energy_type, jurisdiction)] = wh
    return found


def market_carbon(deps: Dependencies, wh_by_origin: Mapping[str, int]) -> CarbonOffset:
    """What energy bought in the market (settled, less revoked) avoided."""
    return carbon.market_carbon(deps, origins(wh_by_origin))


def market_carbon_now(deps: Dependencies) -> CarbonOffset:
    """All time: from the totals, one read."""
    totals = deps.unit_of_work().analytics.get(analytics.TOTALS)
    by_origin = totals.with_prefix("bought_wh@") if totals is not None else {}
    return market_carbon(deps, by_origin)


def vwap(notional_micro_block: int, volume_wh: int) -> int | None:
    """Volume-weighted price, micro-BLOCK per kWh, rounded down; None without volume."""
    return notional_micro_block * 1000 // volume_wh if volume_wh else None


@dataclass(frozen=True)
class GridHealth:
    """0-100 from three measured shares (docs/analytics.md gives the formula)."""

    score: int
    on_time_bps: int  # meters whose latest reading is recent, of meters that have read
    accepted_bps: int  # readings accepted, of readings accepted or refused (24 h)
    supply_bps: int  # energy on sale against energy bought in 24 h, capped at 100 %


def grid_health(
    meters_on_time: int,
    meters_reporting: int,
    accepted: int,
    refused: int,
    on_sale_wh: int,
    traded_wh: int,
) -> GridHealth:
    on_time = 10_000 * meters_on_time // meters_reporting if meters_reporting else 0
    delivered = accepted + refused
    accepted_share = 10_000 * accepted // delivered if delivered else 10_000
    supply = min(10_000, 10_000 * on_sale_wh // traded_wh) if traded_wh else 10_000
    score = (50 * on_time + 30 * accepted_share + 20 * supply) // 10_000
    return GridHealth(score, on_time, accepted_share, supply)


@dataclass(frozen=True)
class Leader:
    provider_id: str
    sold_wh: int


@dataclass(frozen=True)
class MarketStats:
    as_of_ms: int
    bucket_ms: int
    total_capacity_wh: int
    capacity_wh_by_type: dict[str, int]
    providers_registered: int
    providers_listed: int
    providers_active_24h: int
    meters_on_time: int
    buyers_active_24h: int
    vwap_24h: int | None
    listed_average_price: int | None
    trades_24h: int
    energy_traded_wh_24h: int
    energy_traded_wh_all_time: int
    energy_settled_wh_24h: int
    energy_settled_wh_all_time: int
    revenue_24h: int
    revenue_all_time: int
    on_sale_wh: int
    generated_wh_24h: dict[str, int]
    traded_wh_24h: dict[str, int]
    bought_wh_by_origin: dict[str, int]  # all time, settled less revoked: "<type>@<jurisdiction>"
    readings_24h: int
    refused_24h: dict[str, int]
    grid: GridHealth
    top_providers_24h: list[Leader]
    open_disputes: int
    totals: Mapping[str, int] = field(default_factory=dict)


def market_stats(deps: Dependencies, *, leaders: int = 5) -> MarketStats:
    now = deps.now_ms()
    bucket_ms = deps.settings.analytics_bucket_ms
    day = Window.ending_now(now, DAY_MS, bucket_ms)
    uow = deps.unit_of_work()
    stored = uow.analytics.get_many([analytics.STATE, analytics.TOTALS])
    state = stored.get(analytics.STATE) or Aggregate(analytics.STATE)
    totals = stored.get(analytics.TOTALS) or Aggregate(analytics.TOTALS)
    trades = day.members(deps, analytics.trades_pk(analytics.MARKET_SCOPE))
    meters = day.members(deps, analytics.METERS_PK)
    buyers = day.members(deps, analytics.BUYERS_PK)
    slot_ms = deps.settings.analytics_slot_ms
    reporting = Window.ending_now(now, DAY_MS, slot_ms).members(deps, analytics.REPORTING_PK)
    on_time_since = start_of(now, slot_ms) - (ON_TIME_SLOTS - 1) * slot_ms
    meters_on_time = sum(a.count("latest") for a in reporting if int(a.key.sk) >= on_time_since)
    meters_reporting = state.count("meters_reporting")
    refused = _sum_prefixed(meters, "refused:")
    refused_not_duplicate = sum(v for k, v in refused.items() if k != "duplicate")
    listed = state.count("providers:active")
    traded_24h = _sum(trades, "volume_wh")
    grid = grid_health(
        meters_on_time,
        meters_reporting,
        _sum(meters, "readings"),
        refused_not_duplicate,
        state.count("on_sale_wh"),
        traded_24h,
    )
    return MarketStats(
        as_of_ms=now,
        bucket_ms=bucket_ms,
        total_capacity_wh=state.count("capacity_wh"),
        capacity_wh_by_type=_sum_prefixed([state], "capacity_wh:"),
        providers_registered=state.count("providers"),
        providers_listed=listed,
        providers_active_24h=_sum(reporting, "latest"),
        meters_on_time=meters_on_time,
        buyers_active_24h=_sum(buyers, "latest"),
        vwap_24h=vwap(_sum(trades, "notional"), traded_24h),
        listed_average_price=state.count("listed_price_sum") // listed if listed else None,
        trades_24h=_sum(trades, "trades"),
        energy_traded_wh_24h=traded_24h,
        energy_traded_wh_all_time=totals.count("volume_wh"),
        energy_settled_wh_24h=_sum(trades, "settled_wh"),
        energy_settled_wh_all_time=totals.count("settled_wh"),
        revenue_24h=_sum(trades, "revenue"),
        revenue_all_time=totals.count("revenue"),
        on_sale_wh=state.count("on_sale_wh"),
        generated_wh_24h=_sum_prefixed(meters, "generated_wh:"),
        traded_wh_24h=_sum_prefixed(trades, "traded_wh:"),
        bought_wh_by_origin=_sum_prefixed([totals], "bought_wh@"),
        readings_24h=_sum(meters, "readings"),
        refused_24h=refused,
        grid=grid,
        top_providers_24h=top_providers(deps, "24h", leaders) if leaders else [],
        open_disputes=uow.disputes.count_with_status(DisputeStatus.OPEN),
        totals=dict(totals.counters),
    )


@dataclass(frozen=True)
class PriceBucket:
    start_ms: int
    open: int
    high: int
    low: int
    close: int
    vwap: int
    volume_wh: int
    trades: int


def price_history(
    deps: Dependencies,
    hours: int,
    *,
    energy_type: str | None = None,
    jurisdiction: str | None = None,
) -> list[PriceBucket]:
    """Per bucket with trades, oldest first: OHLC, VWAP, volume, of a scope."""
    if energy_type is not None:
        scope = analytics.type_scope(energy_type)
    elif jurisdiction is not None:
        scope = analytics.jurisdiction_scope(jurisdiction)
    else:
        scope = analytics.MARKET_SCOPE
    window = Window.ending_now(deps.now_ms(), hours * HOUR_MS, deps.settings.analytics_bucket_ms)
    found = []
    for bucket in window.members(deps, analytics.trades_pk(scope)):
        if not bucket.count("trades") or bucket.open is None or bucket.close is None:
            continue
        found.append(
            PriceBucket(
                start_ms=int(bucket.key.sk),
                open=bucket.open.price,
                high=bucket.high if bucket.high is not None else bucket.open.price,
                low=bucket.low if bucket.low is not None else bucket.open.price,
                close=bucket.close.price,
                vwap=bucket.count("notional") * 1000 // bucket.count("volume_wh"),
                volume_wh=bucket.count("volume_wh"),
                trades=bucket.count("trades"),
            )
        )
    return found


@dataclass(frozen=True)
class ActivityBucket:
    start_ms: int
    trades: int
    traded_wh: int
    notional: int
    settled_wh: int
    revenue: int
    generated_wh: dict[str, int]
    bought_wh_by_origin: dict[str, int]  # settled less revoked in the bucket
    readings: int


def activity(deps: Dependencies, hours: int, *, daily: bool = False) -> list[ActivityBucket]:
    """Trading volume, revenue, generation and settled energy per bucket (or per day)."""
    bucket_ms = deps.settings.analytics_bucket_ms
    size = DAY_MS if daily else bucket_ms
    now = deps.now_ms()
    window = Window.ending_now(now, hours * HOUR_MS, bucket_ms)
    if daily:
        window = Window(start_of(window.first_ms, DAY_MS), window.last_ms, bucket_ms)
    grouped: dict[int, list[Aggregate]] = defaultdict(list)
    for family in (
        analytics.trades_pk(analytics.MARKET_SCOPE),
        analytics.METERS_PK,
        analytics.BOUGHT_PK,
    ):
        for bucket in window.members(deps, family):
            grouped[start_of(int(bucket.key.sk), size)].append(bucket)
    return [
        ActivityBucket(
            start_ms=start,
            trades=_sum(members, "trades"),
            traded_wh=_sum(members, "volume_wh"),
            notional=_sum(members, "notional"),
            settled_wh=_sum(members, "settled_wh"),
            revenue=_sum(members, "revenue"),
            generated_wh=_sum_prefixed(members, "generated_wh:"),
            bought_wh_by_origin=_sum_prefixed(members, "bought_wh@"),
            readings=_sum(members, "readings"),
        )
        for start, members in sorted(grouped.items())
    ]


def top_providers(deps: Dependencies, window: str, limit: int) -> list[Leader]:
    now = deps.now_ms()
    candidates = deps.unit_of_work().analytics.leaders(window, now)
    return [
        Leader(r.provider_id, r.sold_wh)
        for r in analytics.top_sellers(candidates, window, now, limit)
    ]
