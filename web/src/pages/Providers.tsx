// Providers: the cards grid from energy.listProviders with the original filters (energy type,
// location, maximum price), and one provider's details; cards follow provider_update events.

import { useEffect, useState } from "preact/hooks";
import type { LiveEvent } from "../api/live";
import { type EnergyType, type Provider, type ProviderCard, type ProviderFilters, type ProviderPage } from "../api/types";
import * as format from "../format";
import { market } from "../services";
import { energyColour } from "../ui/charts";
import { useLiveData, usePageTitle } from "../ui/hooks";
import { EnergyTypeOptions } from "../ui/energy";
import { Empty, ErrorNotice, Loading } from "../ui/notices";
import { PageHead } from "../ui/page";

/** A provider's card with what a provider_update event says changed. */
function withCard(provider: Provider, card: ProviderCard): Provider {
  return {
    ...provider,
    display_name: card.display_name,
    capacity_wh: card.capacity_wh,
    capacity_kwh: card.capacity_wh / 1000,
    price_micro_block_per_kwh: card.price_micro_block_per_kwh,
    price_per_kwh: card.price_micro_block_per_kwh / 1_000_000,
    status: card.status,
    available_wh: card.on_sale_wh,
    available_kwh: card.on_sale_wh / 1000,
    rating: card.rating,
  };
}

function rating(value: number | null): string {
  return value === null ? "no sales settled yet" : `${value.toLocaleString("en-US", { maximumFractionDigits: 2 })} / 5`;
}

function StatusBadge({ status }: { status: Provider["status"] }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

function ProviderCardView({ provider }: { provider: Provider }) {
  return (
    <li class="card" data-testid="provider-card" data-provider-id={provider.provider_id}>
      <article aria-labelledby={`card-${provider.provider_id}`}>
        <header class="card-head">
          <span class="type-dot" style={{ background: energyColour(provider.energy_type) }} aria-hidden="true" />
          <h2 id={`card-${provider.provider_id}`} class="card-title">
            <a href={`#/providers/${provider.provider_id}`}>{provider.display_name}</a>
          </h2>
          <StatusBadge status={provider.status} />
        </header>
        <p class="card-sub">
          {format.titleCase(provider.energy_type)} · {provider.jurisdiction} · by {provider.owner}
        </p>
        <dl class="facts">
          <div>
            <dt>Price</dt>
            <dd data-testid="provider-price">{format.price(provider.price_micro_block_per_kwh)}</dd>
          </div>
          <div>
            <dt>Capacity</dt>
            <dd>{format.energy(provider.capacity_wh)}</dd>
          </div>
          <div>
            <dt>Available</dt>
            <dd>{format.energy(provider.available_wh)}</dd>
          </div>
          <div>
            <dt>Rating</dt>
            <dd>{rating(provider.rating)}</dd>
          </div>
          <div>
            <dt>Uptime</dt>
            <dd>{provider.uptime_percent === null ? "no reading yet" : format.percent(provider.uptime_percent)}</dd>
          </div>
        </dl>
      </article>
    </li>
  );
}

interface FilterForm {
  energy_type: string;
  jurisdiction: string;
  max_price: string;
}

const NO_FILTERS: FilterForm = { energy_type: "", jurisdiction: "", max_price: "" };

function toFilters(form: FilterForm): ProviderFilters {
  return {
    ...(form.energy_type ? { energy_type: form.energy_type as EnergyType } : {}),
    ...(form.jurisdiction.trim() ? { jurisdiction: form.jurisdiction.trim().toUpperCase() } : {}),
    ...(form.max_price.trim() ? { max_price: form.max_price.trim() } : {}),
  };
}

export function Providers() {
  usePageTitle("Providers");
  const [form, setForm] = useState<FilterForm>(NO_FILTERS);
  const [applied, setApplied] = useState<ProviderFilters>({});
  const [more, setMore] = useState<{ providers: Provider[]; cursor: string | null; error?: unknown; loading: boolean }>({
    providers: [],
    cursor: null,
    loading: false,
  });
  const key = JSON.stringify(applied);
  const page = useLiveData<ProviderPage>(
    () => market.listProviders(applied),
    ["provider_update"],
    (event: LiveEvent, current) => {
      const card = event.data as ProviderCard;
      if (current === undefined) return undefined;
      const index = current.providers.findIndex((provider) => provider.provider_id === card.provider_id);
      // A provider that is new, or whose price moved it across the filters, needs the list read again.
      if (index === -1) return "reload";
      const providers = current.providers.slice();
      providers[index] = withCard(current.providers[index] as Provider, card);
      return { ...current, providers };
    },
    [key],
  );
  useEffect(() => setMore({ providers: [], cursor: null, loading: false }), [key]);

  const jurisdictions = [...new Set((page.data?.providers ?? []).map((provider) => provider.jurisdiction))].sort();
  const shown = [...(page.data?.providers ?? []), ...more.providers];
  const nextCursor = more.cursor ?? page.data?.next_cursor ?? null;

  const loadMore = () => {
    if (nextCursor === null) return;
    setMore((state) => ({ ...state, loading: true }));
    market.listProviders(applied, nextCursor).then(
      (next) => setMore((state) => ({ providers: [...state.providers, ...next.providers], cursor: next.next_cursor, loading: false })),
      (error: unknown) => setMore((state) => ({ ...state, error, loading: false })),
    );
  };
  const apply = (next: FilterForm) => {
    setForm(next);
    setApplied(toFilters(next));
  };

  return (
    <>
      <PageHead title="Providers">
        <p class="muted">Every energy source on the market, cheapest first.</p>
      </PageHead>
      <form
        class="filters"
        aria-label="Filter providers"
        onSubmit={(event) => {
          event.preventDefault();
          apply(form);
        }}
      >
        <label>
          Energy type
          <select
            name="energy_type"
            value={form.energy_type}
            onChange={(event) => apply({ ...form, energy_type: event.currentTarget.value })}
          >
            <EnergyTypeOptions any="Any" />
          </select>
        </label>
        <label>
          Location (jurisdiction)
          <input
            name="jurisdiction"
            list="jurisdictions"
            placeholder="e.g. US_CA"
            autocomplete="off"
            value={form.jurisdiction}
            onInput={(event) => setForm({ ...form, jurisdiction: event.currentTarget.value })}
          />
          <datalist id="jurisdictions">
            {jurisdictions.map((jurisdiction) => (
              <option key={jurisdiction} value={jurisdiction} />
            ))}
          </datalist>
        </label>
        <label>
          Maximum price (BLOCK/kWh)
          <input
            name="max_price"
            inputMode="decimal"
            placeholder="e.g. 0.10"
            autocomplete="off"
            value={form.max_price}
            onInput={(event) => setForm({ ...form, max_price: event.currentTarget.value })}
          />
        </label>
        <div class="filter-actions">
          <button type="submit" class="button button-primary">
            Apply filters
          </button>
          <button type="button" class="button" onClick={() => apply(NO_FILTERS)}>
            Clear
          </button>
        </div>
      </form>

      {page.error !== undefined && (
        <ErrorNotice error={page.error} title="The providers could not be listed" onRetry={page.reload} />
      )}
      {page.data === undefined ? (
        page.loading && <Loading what="providers" />
      ) : shown.length === 0 ? (
        <Empty>{Object.keys(applied).length > 0 ? "No provider matches these filters." : "No provider is on the market yet."}</Empty>
      ) : (
        <>
          <p class="muted" role="status" data-testid="provider-count">
            {shown.length} provider{shown.length === 1 ? "" : "s"}
            {nextCursor !== null ? " so far" : ""}
          </p>
          <ul class="cards" aria-label="Providers">
            {shown.map((provider) => (
              <ProviderCardView key={provider.provider_id} provider={provider} />
            ))}
          </ul>
        </>
      )}
      {more.error !== undefined && <ErrorNotice error={more.error} title="More providers could not be read" />}
      {nextCursor !== null && (
        <button type="button" class="button" onClick={loadMore} disabled={more.loading}>
          {more.loading ? "Loading…" : "Show more providers"}
        </button>
      )}
    </>
  );
}

export function ProviderDetails({ providerId }: { providerId: string }) {
  const topic = `provider:${providerId}`;
  const provider = useLiveData<Provider>(
    () => market.getProvider(providerId),
    [topic],
    (event, current) =>
      event.event === "provider_update" && current !== undefined ? withCard(current, event.data as ProviderCard) : undefined,
    [providerId],
  );
  const p = provider.data;
  usePageTitle(p?.display_name ?? "Provider");
  return (
    <>
      <p>
        <a href="#/providers">← All providers</a>
      </p>
      {/* The heading is there from the start: the focus lands on it when the page opens. */}
      <div class="page-head">
        <h1 id="provider-title" tabIndex={-1}>
          {p?.display_name ?? "Provider"}
        </h1>
        {p !== undefined && <StatusBadge status={p.status} />}
      </div>
      {provider.error !== undefined && (
        <ErrorNotice error={provider.error} title="This provider could not be read" onRetry={provider.reload} />
      )}
      {p === undefined ? (
        provider.loading && <Loading what="the provider" />
      ) : (
        <article class="details" data-testid="provider-details" aria-labelledby="provider-title">
          <p class="muted">
            {format.titleCase(p.energy_type)} in {p.jurisdiction}, owned by {p.owner} · <code>{p.provider_id}</code>
          </p>
          <dl class="facts facts-wide">
            <div>
              <dt>Capacity</dt>
              <dd>{format.energy(p.capacity_wh)} per hour (peak)</dd>
            </div>
            <div>
              <dt>Available now</dt>
              <dd>{format.energy(p.available_wh)}</dd>
            </div>
            <div>
              <dt>Price</dt>
              <dd>{format.price(p.price_micro_block_per_kwh)}</dd>
            </div>
            <div>
              <dt>Rating</dt>
              <dd>{rating(p.rating)}</dd>
            </div>
            <div>
              <dt>Uptime</dt>
              <dd>
                {p.uptime_percent === null
                  ? "no reading yet"
                  : `${format.percent(p.uptime_percent)} of the last 96 quarter-hours`}
              </dd>
            </div>
            <div>
              <dt>Stake</dt>
              <dd>{format.block(p.stake)}</dd>
            </div>
            <div>
              <dt>Open obligations</dt>
              <dd>{p.open_obligations} open purchases and disputes</dd>
            </div>
            <div>
              <dt>Location</dt>
              <dd>
                {p.latitude.toFixed(4)}, {p.longitude.toFixed(4)}
              </dd>
            </div>
            <div>
              <dt>Meter</dt>
              <dd>
                <code>{p.meter_address}</code>
              </dd>
            </div>
            <div>
              <dt>Meter public key</dt>
              <dd>
                <code class="wrap">{p.meter_public_key}</code>
              </dd>
            </div>
            <div>
              <dt>Registered</dt>
              <dd>{new Date(p.created_at * 1000).toLocaleString("en-GB")}</dd>
            </div>
          </dl>
        </article>
      )}
    </>
  );
}
