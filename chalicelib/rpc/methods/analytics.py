"""Analytics methods: the market's figures, its price history, its activity and its leaders.

Every figure is read from the aggregates the stream consumers keep
(``chalicelib.services.analytics``); docs/analytics.md defines each one.
Energy is given in Wh (and kWh where the original client shows it), money
in micro-BLOCK, prices in micro-BLOCK per kWh (and BLOCK per kWh).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from chalicelib.domain import carbon, units
from chalicelib.domain.providers import EnergyType
from chalicelib.rpc.methods.common import registry
from chalicelib.rpc.methods.fields import Jurisdiction, NoParams, Params, Result
from chalicelib.rpc.registry import CallContext
from chalicelib.services import analytics

Window = Literal["24h", "7d", "all"]
Hours = Annotated[StrictInt, Field(ge=1, le=analytics.MAX_HISTORY_HOURS)]


def _price(micro_block_per_kwh: int | None) -> Decimal | None:
    return None if micro_block_per_kwh is None else units.block_from_micro(micro_block_per_kwh)


class AveragePrice(Result):
    vwap_24h_per_kwh: Decimal | None = Field(
        description="Volume-weighted price of the last 24 h's trades, BLOCK per kWh"
    )
    vwap_24h_micro_block_per_kwh: int | None
    listed_per_kwh: Decimal | None = Field(
        description="Average asking price of the providers on the market, BLOCK per kWh"
    )
    listed_micro_block_per_kwh: int | None


class EnergyTraded(Result):
    wh_24h: int
    wh_all_time: int
    gwh_all_time: Decimal = Field(description="The original overview's unit")
    trades_24h: int
    settled_wh_24h: int
    settled_wh_all_time: int


class Revenue(Result):
    micro_block_24h: int = Field(description="Paid by buyers for purchases settled in 24 h")
    micro_block_all_time: int


class ProviderCounts(Result):
    registered: int
    listed: int = Field(description="Active: staked, not paused (on the market)")
    active_24h: int = Field(description="With an accepted reading in the last 24 h")
    meters_on_time: int = Field(description="Latest accepted reading within 2 reporting slots")


class GridHealthResult(Result):
    score: int = Field(description="0-100: 50 % on time + 30 % accepted + 20 % supply")
    on_time_percent: Decimal
    accepted_percent: Decimal
    supply_percent: Decimal


class EnergyMix(Result):
    generated_wh_24h: dict[str, int]
    traded_wh_24h: dict[str, int]
    capacity_wh: dict[str, int] = Field(description="Of the providers on the market")


class LeaderResult(Result):
    rank: int
    provider_id: str
    display_name: str | None
    energy_type: str | None
    jurisdiction: str | None
    sold_wh: int
    sold_kwh: Decimal


class MarketCarbon(Result):
    """As energy.getCarbonOffset answers without params (docs/carbon.md)."""

    total_kg_co2: Decimal
    total_g_co2: int
    total_tons_co2: Decimal = Field(description="The original overview's unit")
    equivalent_trees: int


class MarketStatsResult(Result):
    as_of_ms: int
    bucket_ms: int = Field(description="The size of the time buckets the figures sum")
    total_capacity_wh: int
    total_capacity_mwh: Decimal = Field(description="The original overview's unit")
    average_price: AveragePrice
    energy_traded: EnergyTraded
    revenue: Revenue
    on_sale_wh: int
    carbon_offset: MarketCarbon
    active_providers: int = Field(description="Providers with a reading in the last 24 h")
    active_buyers: int = Field(description="Accounts with a purchase in the last 24 h")
    providers: ProviderCounts
    open_disputes: int
    grid_health: GridHealthResult
    energy_mix: EnergyMix
    readings_24h: int
    refused_24h: dict[str, int] = Field(description="Refused readings by reason")
    top_providers: list[LeaderResult] = Field(description="By energy sold in 24 h")


def _percent(bps: int) -> Decimal:
    """Basis points as a percentage, exactly: 6666 -> 66.66, 10000 -> 100."""
    return units.block_from_micro(bps * 10_000) if bps else Decimal(0)


def _leaders(context: CallContext, leaders: list[analytics.Leader]) -> list[LeaderResult]:
    uow = context.deps.unit_of_work()
    found = []
    for rank, leader in enumerate(leaders, start=1):
        provider = uow.providers.get(leader.provider_id)
        found.append(
            LeaderResult(
                rank=rank,
                provider_id=leader.provider_id,
                display_name=provider.display_name if provider else None,
                energy_type=str(provider.energy_type) if provider else None,
                jurisdiction=provider.jurisdiction if provider else None,
                sold_wh=leader.sold_wh,
                sold_kwh=units.kwh_from_wh(leader.sold_wh),
            )
        )
    return found


@registry.method(
    "energy.getMarketStats",
    summary="The market's figures: capacity, prices, energy traded, carbon, health, leaders",
    result=MarketStatsResult,
    original_name="getMarketStats",
)
def get_market_stats(context: CallContext, params: NoParams) -> MarketStatsResult:
    """The overview's numbers, from the aggregates the streams keep (a few
    seconds behind the market). docs/analytics.md defines each figure."""
    stats = analytics.market_stats(context.deps)
    offset = analytics.market_carbon(context.deps, stats.bought_wh_by_origin)
    grams = offset.g_co2
    return MarketStatsResult(
        as_of_ms=stats.as_of_ms,
        bucket_ms=stats.bucket_ms,
        total_capacity_wh=stats.total_capacity_wh,
        total_capacity_mwh=units.kwh_from_wh(stats.total_capacity_wh) / 1000,
        average_price=AveragePrice(
            vwap_24h_per_kwh=_price(stats.vwap_24h),
            vwap_24h_micro_block_per_kwh=stats.vwap_24h,
            listed_per_kwh=_price(stats.listed_average_price),
            listed_micro_block_per_kwh=stats.listed_average_price,
        ),
        energy_traded=EnergyTraded(
            wh_24h=stats.energy_traded_wh_24h,
            wh_all_time=stats.energy_traded_wh_all_time,
            gwh_all_time=units.kwh_from_wh(stats.energy_traded_wh_all_time) / 1_000_000,
            trades_24h=stats.trades_24h,
            settled_wh_24h=stats.energy_settled_wh_24h,
            settled_wh_all_time=stats.energy_settled_wh_all_time,
        ),
        revenue=Revenue(
            micro_block_24h=stats.revenue_24h, micro_block_all_time=stats.revenue_all_time
        ),
        on_sale_wh=stats.on_sale_wh,
        carbon_offset=MarketCarbon(
            total_kg_co2=carbon.kg_from_g(grams),
            total_g_co2=grams,
            total_tons_co2=carbon.kg_from_g(grams) / 1000,
            equivalent_trees=offset.equivalent_trees,
        ),
        active_providers=stats.providers_active_24h,
        active_buyers=stats.buyers_active_24h,
        providers=ProviderCounts(
            registered=stats.providers_registered,
            listed=stats.providers_listed,
            active_24h=stats.providers_active_24h,
            meters_on_time=stats.meters_on_time,
        ),
        open_disputes=stats.open_disputes,
        grid_health=GridHealthResult(
            score=stats.grid.score,
            on_time_percent=_percent(stats.grid.on_time_bps),
            accepted_percent=_percent(stats.grid.accepted_bps),
            supply_percent=_percent(stats.grid.supply_bps),
        ),
        energy_mix=EnergyMix(
            generated_wh_24h=stats.generated_wh_24h,
            traded_wh_24h=stats.traded_wh_24h,
            capacity_wh=stats.capacity_wh_by_type,
        ),
        readings_24h=stats.readings_24h,
        refused_24h=stats.refused_24h,
        top_providers=_leaders(context, stats.top_providers_24h),
    )


class PriceHistoryParams(Params):
    hours: Hours = Field(default=24, description="The window, ending now: 1 to 720 (30 days)")
    energy_type: EnergyType | None = None
    jurisdiction: Jurisdiction | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> PriceHistoryParams:
        if self.energy_type is not None and self.jurisdiction is not None:
            raise ValueError("give energy_type or jurisdiction, not both")
        return self


class PriceBucketResult(Result):
    start_ms: int
    open: int = Field(description="First trade's price, micro-BLOCK per kWh")
    high: int
    low: int
    close: int = Field(description="Last trade's price")
    vwap: int = Field(description="Volume-weighted price, rounded down")
    vwap_per_kwh: Decimal = Field(description="The same in BLOCK per kWh")
    volume_wh: int
    trades: int


class PriceHistoryResult(Result):
    scope: str = Field(description='"market", "type#<energy type>" or "jur#<jurisdiction>"')
    bucket_ms: int
    from_ms: int
    to_ms: int
    buckets: list[PriceBucketResult] = Field(description="Buckets with trades, oldest first")


@registry.method(
    "energy.getPriceHistory",
    summary="Open, high, low, close, volume-weighted price and volume per time bucket",
    result=PriceHistoryResult,
    original_name="getPriceHistory",
)
def get_price_history(context: CallContext, params: PriceHistoryParams) -> PriceHistoryResult:
    """Trades by the time their purchase was made, per bucket (an hour; minutes
    on a local market), for the market or one energy type or jurisdiction."""
    deps = context.deps
    bucket_ms = deps.settings.analytics_bucket_ms
    window = analytics.Window.ending_now(deps.now_ms(), params.hours * 3_600_000, bucket_ms)
    found = analytics.price_history(
        deps,
        params.hours,
        energy_type=str(params.energy_type) if params.energy_type else None,
        jurisdiction=params.jurisdiction,
    )
    if params.energy_type is not None:
        scope = f"type#{params.energy_type}"
    elif params.jurisdiction is not None:
        scope = f"jur#{params.jurisdiction}"
    else:
        scope = "market"
    return PriceHistoryResult(
        scope=scope,
        bucket_ms=bucket_ms,
        from_ms=window.first_ms,
        to_ms=window.last_ms + bucket_ms,
        buckets=[
            PriceBucketResult(
                start_ms=b.start_ms,
                open=b.open,
                high=b.high,
                low=b.low,
                close=b.close,
                vwap=b.vwap,
                vwap_per_kwh=units.block_from_micro(b.vwap),
                volume_wh=b.volume_wh,
                trades=b.trades,
            )
            for b in found
        ],
    )


class ActivityParams(Params):
    hours: Hours = Field(default=24, description="The window, ending now: 1 to 720 (30 days)")
    daily: StrictBool = Field(default=False, description="One entry per UTC day")


class ActivityBucketResult(Result):
    start_ms: int
    trades: int
    traded_wh: int = Field(description="Energy of the purchases made")
    volume_micro_block: int = Field(description="What those purchases cost")
    settled_wh: int
    revenue_micro_block: int = Field(description="Paid by the purchases settled")
    generated_wh: dict[str, int] = Field(description="Accepted readings' energy, by type")
    readings: int
    carbon_g_co2: int = Field(
        description="Avoided by the energy bought in the bucket (settled, less revoked)"
    )


class ActivityResult(Result):
    bucket_ms: int
    buckets: list[ActivityBucketResult] = Field(description="Buckets with activity, oldest first")


@registry.method(
    "energy.getMarketActivity",
    summary="Trading volume, revenue, generation and avoided CO2 per time bucket or day",
    result=ActivityResult,
)
def get_market_activity(context: CallContext, params: ActivityParams) -> ActivityResult:
    """The analytics page's series: what was bought, settled and generated."""
    found = analytics.activity(context.deps, params.hours, daily=params.daily)
    return ActivityResult(
        bucket_ms=86_400_000 if params.daily else context.deps.settings.analytics_bucket_ms,
        buckets=[
            ActivityBucketResult(
                start_ms=b.start_ms,
                trades=b.trades,
                traded_wh=b.traded_wh,
                volume_micro_block=b.notional,
                settled_wh=b.settled_wh,
                revenue_micro_block=b.revenue,
                generated_wh=b.generated_wh,
                readings=b.readings,
                carbon_g_co2=analytics.market_carbon(context.deps, b.bought_wh_by_origin).g_co2,
            )
            for b in found
        ],
    )


class TopProvidersParams(Params):
    window: Window = Field(default="24h", description='"24h", "7d" or "all"')
    limit: Annotated[StrictInt, Field(ge=1, le=20)] = 10


class TopProvidersResult(Result):
    window: str
    providers: list[LeaderResult]


@registry.method(
    "energy.getTopProviders",
    summary="The leaderboard: providers by energy sold (settled) in 24 h, 7 days or all time",
    result=TopProvidersResult,
)
def get_top_providers(context: CallContext, params: TopProvidersParams) -> TopProvidersResult:
    """24 h: the current hour and the 23 before; 7 days: the current UTC day
    and the 6 before. Ties rank by provider id."""
    leaders = analytics.top_providers(context.deps, params.window, params.limit)
    return TopProvidersResult(window=params.window, providers=_leaders(context, leaders))
