// Hand-written SVG charts: a price line with its high-low range and volume, and the energy
// mix as bars. Each chart has a text alternative (a table) for screen readers.

import type { ComponentChildren } from "preact";
import type { PriceHistory } from "../api/types";
import * as format from "../format";

const ENERGY_COLOURS: Record<string, string> = {
  solar: "#b45309",
  wind: "#0369a1",
  hydro: "#1d4ed8",
  battery: "#6d28d9",
};

export function energyColour(energyType: string): string {
  return ENERGY_COLOURS[energyType] ?? "#475569";
}

function niceTicks(low: number, high: number, count: number): number[] {
  if (high - low < Math.abs(high) * 0.02) {
    // One price all along: give the line some room above and below.
    const room = Math.abs(high) * 0.1 || 1;
    low -= room;
    high += room;
  }
  const span = high - low || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let tick = Math.floor(low / step) * step; tick < high + step; tick += step) ticks.push(Math.max(0, tick));
  return [...new Set(ticks)];
}

/** The last ``buckets`` buckets of a price history: 24 hours in AWS, 24 minutes on a local market. */
export function lastBuckets(history: PriceHistory, buckets = 24): PriceHistory {
  const from = Math.max(history.from_ms, history.to_ms - buckets * history.bucket_ms);
  return { ...history, from_ms: from, buckets: history.buckets.filter((b) => b.start_ms >= from) };
}

/** The volume-weighted price per bucket over the window, with each bucket's high and low. */
export function PriceChart({ history }: { history: PriceHistory }) {
  const width = 720;
  const height = 260;
  const pad = { left: 64, right: 16, top: 12, bottom: 56 };
  const plotWidth = width - pad.left - pad.right;
  const priceHeight = 150;
  const volumeTop = pad.top + priceHeight + 14;
  const volumeHeight = height - pad.bottom - volumeTop + 28;
  const buckets = history.buckets;
  const lows = buckets.map((b) => Math.min(b.low, b.vwap));
  const highs = buckets.map((b) => Math.max(b.high, b.vwap));
  const ticks = niceTicks(Math.min(...lows), Math.max(...highs), 4);
  const yMin = ticks[0] ?? 0;
  const yMax = ticks[ticks.length - 1] ?? 1;
  const x = (ms: number) =>
    pad.left + ((ms + history.bucket_ms / 2 - history.from_ms) / (history.to_ms - history.from_ms)) * plotWidth;
  const y = (micro: number) => pad.top + priceHeight - ((micro - yMin) / (yMax - yMin || 1)) * priceHeight;
  const maxVolume = Math.max(...buckets.map((b) => b.volume_wh), 1);
  const barWidth = Math.max(2, (plotWidth / ((history.to_ms - history.from_ms) / history.bucket_ms)) * 0.6);
  const line = buckets.map((b, i) => `${i === 0 ? "M" : "L"}${x(b.start_ms).toFixed(1)},${y(b.vwap).toFixed(1)}`).join("");
  const timeTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => history.from_ms + f * (history.to_ms - history.from_ms));
  const window = format.windowOf(history.bucket_ms, Math.round((history.to_ms - history.from_ms) / history.bucket_ms));
  return (
    <figure class="chart">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-labelledby="price-chart-title"
        data-testid="price-chart"
        data-points={buckets.length}
      >
        <title id="price-chart-title">
          Volume-weighted price per {format.bucketName(history.bucket_ms)} over the last {window}, with each{" "}
          {format.bucketName(history.bucket_ms)}'s high and low, and the energy traded
        </title>
        {ticks.map((tick) => (
          <g key={tick} class="grid">
            <line x1={pad.left} x2={width - pad.right} y1={y(tick)} y2={y(tick)} />
            <text x={pad.left - 8} y={y(tick) + 4} text-anchor="end">
              {(tick / 1_000_000).toLocaleString("en-US", { maximumFractionDigits: 6 })}
            </text>
          </g>
        ))}
        <text class="axis-label" x={12} y={pad.top + priceHeight / 2} transform={`rotate(-90 12 ${pad.top + priceHeight / 2})`} text-anchor="middle">
          BLOCK/kWh
        </text>
        {buckets.map((b) => (
          <line key={`r${b.start_ms}`} class="range" x1={x(b.start_ms)} x2={x(b.start_ms)} y1={y(b.high)} y2={y(b.low)} />
        ))}
        <path class="price-line" d={line} />
        {buckets.map((b) => (
          <circle key={`p${b.start_ms}`} class="price-point" cx={x(b.start_ms)} cy={y(b.vwap)} r={3}>
            <title>
              {format.time(b.start_ms)}: {format.price(b.vwap)} ({b.trades} trades, {format.energy(b.volume_wh)})
            </title>
          </circle>
        ))}
        {buckets.map((b) => {
          const barHeight = (b.volume_wh / maxVolume) * volumeHeight;
          return (
            <rect
              key={`v${b.start_ms}`}
              class="volume"
              x={x(b.start_ms) - barWidth / 2}
              y={volumeTop + volumeHeight - barHeight}
              width={barWidth}
              height={barHeight}
            />
          );
        })}
        <text class="axis-label" x={pad.left - 8} y={volumeTop + volumeHeight / 2 + 4} text-anchor="end">
          volume
        </text>
        {timeTicks.map((ms) => (
          <text key={ms} class="tick" x={pad.left + ((ms - history.from_ms) / (history.to_ms - history.from_ms)) * plotWidth} y={height - 8} text-anchor="middle">
            {format.time(ms)}
          </text>
        ))}
      </svg>
      <FiguresTable
        head={
          <>
            <th scope="col">From</th>
            <th scope="col">Average (VWAP)</th>
            <th scope="col">High</th>
            <th scope="col">Low</th>
            <th scope="col">Volume</th>
            <th scope="col">Trades</th>
          </>
        }
      >
        {buckets.map((b) => (
          <tr key={b.start_ms}>
            <td>{format.time(b.start_ms)}</td>
            <td>{format.price(b.vwap)}</td>
            <td>{format.price(b.high)}</td>
            <td>{format.price(b.low)}</td>
            <td>{format.energy(b.volume_wh)}</td>
            <td>{b.trades}</td>
          </tr>
        ))}
      </FiguresTable>
    </figure>
  );
}

interface MixRow {
  energyType: string;
  capacityWh: number;
  generatedWh: number;
  tradedWh: number;
}

/** Capacity, generation and trade per energy type: a stacked share bar and a table. */
export function EnergyMix({ rows, window }: { rows: MixRow[]; window: string }) {
  const totalCapacity = rows.reduce((sum, row) => sum + row.capacityWh, 0);
  const totalGenerated = rows.reduce((sum, row) => sum + row.generatedWh, 0);
  const share = (value: number, total: number) => (total > 0 ? (100 * value) / total : 0);
  const basis = totalGenerated > 0 ? "generatedWh" : "capacityWh";
  const basisTotal = totalGenerated > 0 ? totalGenerated : totalCapacity;
  return (
    <div class="mix" data-testid="energy-mix">
      <p class="mix-caption">
        Share of {basis === "generatedWh" ? `energy generated in the last ${window}` : "capacity on the market"}
      </p>
      <div class="mix-bar" aria-hidden="true">
        {rows.map((row) => (
          <span
            key={row.energyType}
            style={{ width: `${share(row[basis], basisTotal)}%`, background: energyColour(row.energyType) }}
          />
        ))}
      </div>
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Source</th>
            <th scope="col">Capacity</th>
            <th scope="col">Generated ({window})</th>
            <th scope="col">Traded ({window})</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.energyType} data-testid={`mix-${row.energyType}`}>
              <th scope="row">
                <span class="swatch" style={{ background: energyColour(row.energyType) }} aria-hidden="true" />
                {format.titleCase(row.energyType)}
              </th>
              <td>
                {format.energy(row.capacityWh)} <span class="muted">({format.percent(share(row.capacityWh, totalCapacity))})</span>
              </td>
              <td>
                {format.energy(row.generatedWh)} <span class="muted">({format.percent(share(row.generatedWh, totalGenerated))})</span>
              </td>
              <td>{format.energy(row.tradedWh)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export interface Bar {
  start_ms: number;
  value: number;
}

/** One figure per bucket as bars over a time window, with the figures as a table beside it. */
export function BarChart(props: {
  id: string;
  title: string;
  bars: Bar[];
  fromMs: number;
  toMs: number;
  bucketMs: number;
  valueText: (value: number) => string;
  colour?: string;
}) {
  // Narrower than the price chart: these sit two to a row, and their text must stay readable.
  const width = 440;
  const height = 200;
  const pad = { left: 84, right: 20, top: 12, bottom: 28 };
  const plotWidth = width - pad.left - pad.right;
  const plotHeight = height - pad.top - pad.bottom;
  const span = Math.max(props.toMs - props.fromMs, props.bucketMs);
  const max = Math.max(...props.bars.map((bar) => bar.value), 0);
  const ticks = max > 0 ? [0, max / 2, max] : [0];
  const x = (ms: number) => pad.left + ((ms - props.fromMs) / span) * plotWidth;
  const y = (value: number) => pad.top + plotHeight - (max > 0 ? (value / max) * plotHeight : 0);
  const barWidth = Math.max(2, (plotWidth / (span / props.bucketMs)) * 0.7);
  const timeTicks = [0, 0.5, 1].map((f) => props.fromMs + f * span);
  const daily = props.bucketMs >= 86_400_000;
  const when = (ms: number) => (daily ? new Date(ms).toISOString().slice(5, 10) : format.time(ms));
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={`${props.id}-title`} data-testid={props.id} data-points={props.bars.length}>
        <title id={`${props.id}-title`}>{props.title}</title>
        {ticks.map((tick) => (
          <g key={tick} class="grid">
            <line x1={pad.left} x2={width - pad.right} y1={y(tick)} y2={y(tick)} />
            <text x={pad.left - 8} y={y(tick) + 4} text-anchor="end">
              {props.valueText(tick)}
            </text>
          </g>
        ))}
        {props.bars.map((bar) => (
          <rect
            key={bar.start_ms}
            class="bar"
            style={props.colour === undefined ? undefined : { fill: props.colour }}
            x={x(bar.start_ms + props.bucketMs / 2) - barWidth / 2}
            y={y(bar.value)}
            width={barWidth}
            height={Math.max(0, pad.top + plotHeight - y(bar.value))}
          >
            <title>
              {when(bar.start_ms)}: {props.valueText(bar.value)}
            </title>
          </rect>
        ))}
        {timeTicks.map((ms, index) => (
          <text key={ms} class="tick" x={x(ms)} y={height - 8} text-anchor={["start", "middle", "end"][index]}>
            {when(ms)}
          </text>
        ))}
      </svg>
      <FiguresTable
        head={
          <>
            <th scope="col">From</th>
            <th scope="col" class="number">
              {props.title}
            </th>
          </>
        }
      >
        {props.bars.map((bar) => (
          <tr key={bar.start_ms}>
            <td>{daily ? new Date(bar.start_ms).toISOString().slice(0, 10) : format.time(bar.start_ms)}</td>
            <td class="number">{props.valueText(bar.value)}</td>
          </tr>
        ))}
      </FiguresTable>
    </figure>
  );
}

/** A chart's figures as a table, folded under its caption: what a screen reader reads. */
function FiguresTable({ head, children }: { head: ComponentChildren; children: ComponentChildren }) {
  return (
    <figcaption>
      <details>
        <summary>The figures as a table</summary>
        <table class="table">
          <thead>
            <tr>{head}</tr>
          </thead>
          <tbody>{children}</tbody>
        </table>
      </details>
    </figcaption>
  );
}
