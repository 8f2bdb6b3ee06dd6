// Analytics: trading volume, revenue and generation per bucket (energy.getMarketActivity), the
// price by energy type or jurisdiction (energy.getPriceHistory), the leaderboard
// (energy.getTopProviders) and the market's environmental impact (energy.getCarbonOffset {}),
// read again whenever the market's figures are pushed (market_stats), polled otherwise.

import { useState } from "preact/hooks";
import { type CarbonOffset, type MarketActivity, type PriceHistory, type TopProviders } from "../api/types";
import * as format from "../format";
import { market } from "../services";
import { BarChart, PriceChart, energyColour, type Bar } from "../ui/charts";
import { useLiveData, usePageTitle } from "../ui/hooks";
import { EnergyTypeOptions } from "../ui/energy";
import { Empty, Loaded } from "../ui/notices";
import { LeaderTable } from "../ui/stats";
import { JURISDICTION } from "../ui/validate";
import { PageHead } from "../ui/page";

const MARKET_STATS = ["market_stats"];
const WINDOWS: { hours: number; label: string }[] = [
  { hours: 1, label: "the last hour" },
  { hours: 24, label: "the last 24 hours" },
  { hours: 168, label: "the last 7 days" },
  { hours: 720, label: "the last 30 days" },
];

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

function Activity({ activity, hours }: { activity: MarketActivity; hours: number }) {
  const buckets = activity.buckets;
  if (buckets.length === 0) return <Empty>Nothing was bought, settled or generated in this window.</Empty>;
  const toMs = Math.floor(Date.now() / activity.bucket_ms) * activity.bucket_ms + activity.bucket_ms;
  // The axis starts at the first bucket with activity: a young market's minutes would be a
  // sliver at the right edge of a month.
  const fromMs = Math.max(toMs - hours * 3_600_000, (buckets[0]?.start_ms ?? toMs) - activity.bucket_ms);
  const bars = (pick: (bucket: (typeof buckets)[number]) => number): Bar[] =>
    buckets.map((bucket) => ({ start_ms: bucket.start_ms, value: pick(bucket) }));
  const common = { fromMs, toMs, bucketMs: activity.bucket_ms };
  const generated = buckets.map((bucket) => sum(Object.values(bucket.generated_wh)));
  return (
    <>
      <div class="metrics" data-testid="activity-totals">
        <div class="metric">
          <p class="metric-label">Energy traded</p>
          <p class="metric-value" data-testid="total-traded">
            {format.energy(sum(buckets.map((b) => b.traded_wh)))}
          </p>
          <p class="metric-detail">{format.integer(sum(buckets.map((b) => b.trades)))} purchases</p>
        </div>
        <div class="metric">
          <p class="metric-label">Trading volume</p>
          <p class="metric-value">{format.block(sum(buckets.map((b) => b.volume_micro_block)))}</p>
          <p class="metric-detail">what the purchases cost</p>
        </div>
        <div class="metric">
          <p class="metric-label">Revenue</p>
          <p class="metric-value" data-testid="total-revenue">
            {format.block(sum(buckets.map((b) => b.revenue_micro_block)))}
          </p>
          <p class="metric-detail">{format.energy(sum(buckets.map((b) => b.settled_wh)))} settled and paid to providers</p>
        </div>
        <div class="metric">
          <p class="metric-label">Generated</p>
          <p class="metric-value">{format.energy(sum(generated))}</p>
          <p class="metric-detail">{format.integer(sum(buckets.map((b) => b.readings)))} accepted readings</p>
        </div>
        <div class="metric">
          <p class="metric-label">CO₂ avoided</p>
          <p class="metric-value">{format.co2(sum(buckets.map((b) => b.carbon_g_co2)))}</p>
          <p class="metric-detail">by the energy settled</p>
        </div>
      </div>
      <div class="panels">
        <section class="panel" aria-labelledby="volume-title">
          <h3 id="volume-title">Energy traded per {format.bucketName(activity.bucket_ms)}</h3>
          <BarChart id="chart-volume" title="Energy traded" bars={bars((b) => b.traded_wh)} valueText={format.energy} {...common} />
        </section>
        <section class="panel" aria-labelledby="revenue-title">
          <h3 id="revenue-title">Revenue per {format.bucketName(activity.bucket_ms)}</h3>
          <BarChart
            id="chart-revenue"
            title="Revenue (settled)"
            bars={bars((b) => b.revenue_micro_block)}
            valueText={format.block}
            colour="#0f5132"
            {...common}
          />
        </section>
        <section class="panel" aria-labelledby="generated-title">
          <h3 id="generated-title">Generation per {format.bucketName(activity.bucket_ms)}</h3>
          <BarChart
            id="chart-generated"
            title="Energy generated"
            bars={buckets.map((bucket, index) => ({ start_ms: bucket.start_ms, value: generated[index] ?? 0 }))}
            valueText={format.energy}
            colour={energyColour("solar")}
            {...common}
          />
        </section>
        <section class="panel" aria-labelledby="co2-title">
          <h3 id="co2-title">CO₂ avoided per {format.bucketName(activity.bucket_ms)}</h3>
          <BarChart id="chart-carbon" title="CO₂ avoided" bars={bars((b) => b.carbon_g_co2)} valueText={format.co2} colour="#166534" {...common} />
        </section>
      </div>
    </>
  );
}

function Impact({ carbon }: { carbon: CarbonOffset }) {
  const byType = Object.entries(carbon.bought_wh).filter(([, wh]) => wh > 0);
  return (
    <>
      <p class="metric-value" data-testid="market-carbon">
        {format.co2(carbon.total_g_co2)} <span class="metric-unit">CO₂ avoided</span>
      </p>
      <ul class="equivalents">
        {Object.entries(carbon.equivalents).map(([name, equivalent]) => (
          <li key={name} title={equivalent.source}>
            ≈ <strong>{format.integer(equivalent.quantity)}</strong> {equivalent.unit}
          </li>
        ))}
      </ul>
      {byType.length === 0 ? (
        <Empty>No energy has been bought and settled yet.</Empty>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">Source</th>
              <th scope="col" class="number">
                Settled
              </th>
            </tr>
          </thead>
          <tbody>
            {byType.map(([type, wh]) => (
              <tr key={type}>
                <td>
                  <span class="swatch" style={{ background: energyColour(type) }} aria-hidden="true" />
                  {format.titleCase(type)}
                </td>
                <td class="number">{format.energy(wh)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="hint">{carbon.factors_source}</p>
    </>
  );
}

export function Analytics() {
  usePageTitle("Analytics");
  const [hours, setHours] = useState(24);
  const [daily, setDaily] = useState(false);
  const [scope, setScope] = useState({ kind: "market", value: "" });
  const [jurisdiction, setJurisdiction] = useState("");
  const [jurisdictionProblem, setJurisdictionProblem] = useState<string | null>(null);
  const [window, setWindow] = useState<"24h" | "7d" | "all">("24h");

  const activity = useLiveData<MarketActivity>(() => market.getMarketActivity(hours, daily), MARKET_STATS, () => "reload", [hours, daily]);
  const scopeParams =
    scope.kind === "type" ? { energy_type: scope.value } : scope.kind === "jurisdiction" ? { jurisdiction: scope.value } : {};
  const prices = useLiveData<PriceHistory>(
    () => market.getPriceHistoryOf(hours, scopeParams),
    MARKET_STATS,
    () => "reload",
    [hours, scope.kind, scope.value],
  );
  const leaders = useLiveData<TopProviders>(() => market.getTopProviders(window, 10), MARKET_STATS, () => "reload", [window]);
  const carbon = useLiveData<CarbonOffset>(() => market.getCarbonOffset(), MARKET_STATS, () => "reload");
  const windowLabel = WINDOWS.find((w) => w.hours === hours)?.label ?? `${hours} h`;

  return (
    <>
      <PageHead title="Analytics" />
      <form class="filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          Window
          <select name="window_hours" value={String(hours)} onChange={(event) => setHours(Number(event.currentTarget.value))}>
            {WINDOWS.map((w) => (
              <option key={w.hours} value={String(w.hours)}>
                {format.titleCase(w.label)}
              </option>
            ))}
          </select>
        </label>
        <label class="checkbox">
          <input type="checkbox" name="daily" checked={daily} onChange={(event) => setDaily(event.currentTarget.checked)} />
          One bar per UTC day
        </label>
      </form>

      <section aria-labelledby="activity-title">
        <h2 id="activity-title">Volume and revenue, {windowLabel}</h2>
        <Loaded live={activity} title="The activity could not be read" what="the market's activity">
          {(data) => (
            <Activity activity={data} hours={hours} />
          )}
        </Loaded>
      </section>

      <div class="panels">
        <section class="panel panel-wide" aria-labelledby="prices-title">
          <h2 id="prices-title">Price, {windowLabel}</h2>
          <form
            class="filters"
            onSubmit={(event) => {
              event.preventDefault();
              const value = jurisdiction.trim().toUpperCase();
              if (!JURISDICTION.test(value)) {
                setJurisdictionProblem("a country code and optionally a region: US, US_CA");
                return;
              }
              setJurisdictionProblem(null);
              setScope({ kind: "jurisdiction", value });
            }}
          >
            <label>
              Energy type
              <select
                name="price_type"
                value={scope.kind === "type" ? scope.value : ""}
                onChange={(event) => {
                  const value = event.currentTarget.value;
                  setScope(value === "" ? { kind: "market", value: "" } : { kind: "type", value });
                }}
              >
                <EnergyTypeOptions any="The whole market" />
              </select>
            </label>
            <label>
              or jurisdiction
              <input
                name="price_jurisdiction"
                placeholder="e.g. US_CA"
                value={jurisdiction}
                aria-invalid={jurisdictionProblem !== null ? true : undefined}
                onInput={(event) => setJurisdiction(event.currentTarget.value)}
              />
            </label>
            <div class="filter-actions">
              <button type="submit" class="button">
                Show this jurisdiction
              </button>
            </div>
            {jurisdictionProblem !== null && <p class="field-error">{jurisdictionProblem}</p>}
          </form>
          <p class="muted" data-testid="price-scope">
            {scope.kind === "market" ? "Every purchase" : scope.kind === "type" ? `${format.titleCase(scope.value)} only` : `From providers in ${scope.value}`}
          </p>
          <Loaded live={prices} title="The price history could not be read" what="the price history">
            {(data) => data.buckets.length === 0 ? (
              <Empty>No purchase in this window and scope: no price to chart.</Empty>
            ) : (
              <PriceChart history={{ ...data, from_ms: Math.max(data.from_ms, (data.buckets[0]?.start_ms ?? 0) - data.bucket_ms) }} />
            )}
          </Loaded>
        </section>
        <section class="panel" aria-labelledby="leaders-title">
          <h2 id="leaders-title">Top providers</h2>
          <label>
            Sold in
            <select name="leaders_window" value={window} onChange={(event) => setWindow(event.currentTarget.value as typeof window)}>
              <option value="24h">24 hours</option>
              <option value="7d">7 days</option>
              <option value="all">All time</option>
            </select>
          </label>
          <Loaded live={leaders} title="The leaderboard could not be read" what="the leaderboard">
            {(data) => data.providers.length === 0 ? (
              <Empty>No provider sold energy in this window.</Empty>
            ) : (
              <LeaderTable providers={data.providers} testid="leaders" location={false} />
            )}
          </Loaded>
        </section>
        <section class="panel" aria-labelledby="impact-title">
          <h2 id="impact-title">Environmental impact, all time</h2>
          <Loaded live={carbon} title="The market's carbon figures could not be read" what="the carbon figures">
            {(data) => <Impact carbon={data} />}
          </Loaded>
        </section>
      </div>
    </>
  );
}
