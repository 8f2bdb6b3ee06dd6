// The Overview, following the original: market metrics, the 24-hour price chart, the energy
// mix and the top providers, live from the market_stats topic with a polling fallback.

import { useEffect } from "preact/hooks";
import type { LiveEvent } from "../api/live";
import { ENERGY_TYPES, type MarketStats, type PriceHistory } from "../api/types";
import * as format from "../format";
import { market } from "../services";
import { EnergyMix, PriceChart, lastBuckets } from "../ui/charts";
import { useLiveData, usePageTitle } from "../ui/hooks";
import { Empty, ErrorNotice, Loading } from "../ui/notices";
import { LeaderTable, Metric } from "../ui/stats";
import { PageHead } from "../ui/page";

function newerStats(event: LiveEvent, current: MarketStats | undefined): MarketStats | undefined {
  const pushed = event.data as MarketStats;
  if (typeof pushed?.as_of_ms !== "number") return undefined;
  return current !== undefined && current.as_of_ms > pushed.as_of_ms ? current : pushed;
}

function Metrics({ stats }: { stats: MarketStats }) {
  const window = format.windowOf(stats.bucket_ms);
  const price = stats.average_price;
  const health = stats.grid_health;
  return (
    <section aria-labelledby="metrics-title">
      <h2 id="metrics-title" class="visually-hidden">
        Market metrics
      </h2>
      <div class="metrics">
        <Metric
          prefix="metric"
          id="capacity"
          label="Total capacity"
          value={stats.total_capacity_mwh.toLocaleString("en-US", { maximumFractionDigits: 3 })}
          unit="MWh"
          detail={`${format.integer(stats.providers.listed)} providers on the market · ${format.energy(stats.on_sale_wh)} on sale`}
        />
        <Metric
          prefix="metric"
          id="price"
          label="Average price"
          value={format.blockPerKwh(price.vwap_24h_micro_block_per_kwh ?? price.listed_micro_block_per_kwh, 4)}
          unit="BLOCK/kWh"
          detail={
            price.vwap_24h_micro_block_per_kwh !== null
              ? `paid in the last ${window} · asking ${format.price(price.listed_micro_block_per_kwh)}`
              : `mean asking price (no purchase in the last ${window})`
          }
        />
        <Metric
          prefix="metric"
          id="traded"
          label="Energy traded"
          value={format.energy(stats.energy_traded.wh_24h)}
          detail={`${format.integer(stats.energy_traded.trades_24h)} purchases in the last ${window} · ${format.energy(stats.energy_traded.wh_all_time)} all time`}
        />
        <Metric
          prefix="metric"
          id="carbon"
          label="Carbon offset"
          value={format.co2(stats.carbon_offset.total_g_co2)}
          unit="CO₂"
          detail={`avoided by the energy settled · ≈ ${format.integer(stats.carbon_offset.equivalent_trees)} trees`}
        />
        <Metric
          prefix="metric"
          id="providers"
          label="Active providers"
          value={format.integer(stats.active_providers)}
          detail={`with a reading accepted in the last ${window} · ${format.integer(stats.providers.registered)} registered`}
        />
        <Metric
          prefix="metric"
          id="buyers"
          label="Active buyers"
          value={format.integer(stats.active_buyers)}
          detail={`made a purchase in the last ${window}`}
        />
        <div class="metric metric-health" role="group" aria-labelledby="metric-health-label" data-testid="metric-health">
          <p class="metric-label" id="metric-health-label">
            Grid health score
          </p>
          <p class="metric-value" data-testid="metric-health-value">
            {health.score}
            <span class="metric-unit"> / 100</span>
          </p>
          <meter min={0} max={100} low={50} high={80} optimum={100} value={health.score} aria-label="Grid health score" />
          <p class="metric-detail">
            meters on time {format.percent(health.on_time_percent)} · readings accepted{" "}
            {format.percent(health.accepted_percent)} · supply {format.percent(health.supply_percent)}
          </p>
        </div>
        <Metric
          prefix="metric"
          id="disputes"
          label="Open disputes"
          value={format.integer(stats.open_disputes)}
          detail={`${format.integer(stats.readings_24h)} readings accepted in the last ${window}`}
        />
      </div>
    </section>
  );
}

function Leaderboard({ stats }: { stats: MarketStats }) {
  if (stats.top_providers.length === 0) {
    return <Empty>No provider has sold energy in the last {format.windowOf(stats.bucket_ms)} yet.</Empty>;
  }
  return (
    <LeaderTable providers={stats.top_providers} testid="top-providers" location />
  );
}

function mixRows(stats: MarketStats) {
  const mix = stats.energy_mix;
  const types = new Set<string>([
    ...ENERGY_TYPES,
    ...Object.keys(mix.capacity_wh),
    ...Object.keys(mix.generated_wh_24h),
    ...Object.keys(mix.traded_wh_24h),
  ]);
  return [...types]
    .map((energyType) => ({
      energyType,
      capacityWh: mix.capacity_wh[energyType] ?? 0,
      generatedWh: mix.generated_wh_24h[energyType] ?? 0,
      tradedWh: mix.traded_wh_24h[energyType] ?? 0,
    }))
    .filter((row) => row.capacityWh + row.generatedWh + row.tradedWh > 0);
}

/** Marked once the market's numbers are on screen (bench/web.py reads it). */
export const NUMBERS_SHOWN_MARK = "energy-marketplace:overview-numbers";

export function Overview() {
  usePageTitle("Overview");
  const stats = useLiveData<MarketStats>(() => market.getMarketStats(), ["market_stats"], newerStats);
  const shown = stats.data !== undefined;
  useEffect(() => {
    if (shown && performance.getEntriesByName(NUMBERS_SHOWN_MARK).length === 0) {
      performance.mark(NUMBERS_SHOWN_MARK);
    }
  }, [shown]);
  // The price chart follows the same pushes: each market_stats event means new buckets may exist.
  const history = useLiveData<PriceHistory>(() => market.getPriceHistory(24), ["market_stats"], () => "reload");
  const window = stats.data === undefined ? "24 h" : format.windowOf(stats.data.bucket_ms);
  const mix = stats.data === undefined ? [] : mixRows(stats.data);
  // The same 24 buckets as the figures: 24 hours in AWS, 24 minutes on a local market.
  const chart = history.data === undefined ? undefined : lastBuckets(history.data);

  return (
    <>
      <PageHead title="Market overview">
        {stats.updatedAt !== undefined && stats.data !== undefined && (
          <p class="as-of" data-testid="as-of" data-as-of-ms={stats.data.as_of_ms} data-source={stats.source}>
            Figures as of {format.time(stats.data.as_of_ms, true)}
            {stats.source === "live" ? " · pushed live" : " · read from the API"}
          </p>
        )}
      </PageHead>
      {stats.error !== undefined && (
        <ErrorNotice
          error={stats.error}
          title={stats.data === undefined ? "The market's figures could not be read" : "The figures could not be refreshed; showing the last ones read"}
          onRetry={stats.reload}
        />
      )}
      {stats.data === undefined ? stats.loading && <Loading what="the market's figures" /> : <Metrics stats={stats.data} />}

      <div class="panels">
        <section class="panel panel-wide" aria-labelledby="price-title">
          <h2 id="price-title">Price, last {window}</h2>
          {stats.data !== undefined && stats.data.bucket_ms !== 3_600_000 && (
            <p class="muted">This market counts in buckets of a {format.bucketName(stats.data.bucket_ms)}, not an hour (a local market runs faster).</p>
          )}
          {history.error !== undefined && history.data === undefined && (
            <ErrorNotice error={history.error} title="The price history could not be read" onRetry={history.reload} />
          )}
          {chart === undefined ? (
            history.loading && <Loading what="the price history" />
          ) : chart.buckets.length === 0 ? (
            <Empty>No purchase in the last {format.windowOf(chart.bucket_ms)}: no price to chart yet.</Empty>
          ) : (
            <PriceChart history={chart} />
          )}
        </section>
        <section class="panel" aria-labelledby="mix-title">
          <h2 id="mix-title">Energy mix</h2>
          {stats.data === undefined ? (
            stats.loading && <Loading what="the energy mix" />
          ) : mix.length === 0 ? (
            <Empty>No provider is on the market yet.</Empty>
          ) : (
            <EnergyMix rows={mix} window={window} />
          )}
        </section>
        <section class="panel" aria-labelledby="top-title">
          <h2 id="top-title">Top providers, last {window}</h2>
          {stats.data === undefined ? stats.loading && <Loading what="the leaderboard" /> : <Leaderboard stats={stats.data} />}
        </section>
      </div>
    </>
  );
}
