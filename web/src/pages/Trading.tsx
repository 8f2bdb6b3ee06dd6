// Trading: the offers on sale now (energy.getOffers), buying with a maximum price (the signed
// energy.purchaseEnergy), the account's open purchases and settling them (energy.settle),
// live from the market's events and the account's private topic; every refusal in words.

import { useState } from "preact/hooks";
import { newNonce } from "../api/signing";
import {
  type EnergyType,
  type Offer,
  type OfferFilters,
  type OfferPage,
  type Portfolio,
  type Purchase,
  type Settlement,
} from "../api/types";
import * as format from "../format";
import { market } from "../services";
import { ActingAs, useActingAccount, type ActingAccount } from "../ui/account";
import { energyColour } from "../ui/charts";
import { Field, SignButton, showProblems, useAction } from "../ui/forms";
import { useLiveData, usePageTitle, type LiveData } from "../ui/hooks";
import { EnergyTypeOptions } from "../ui/energy";
import { Empty, ErrorNotice, Loaded, Loading } from "../ui/notices";
import { PurchaseTable } from "../ui/purchases";
import { feedText, usePortfolio } from "../ui/portfolio";
import { KWH, PRICE, decimalProblem, scaled } from "../ui/validate";
import { PageHead } from "../ui/page";

/** The cost docs/api.md "Units" defines: ceil(price × Wh / 1000) micro-BLOCK. */
export function costMicroBlock(priceMicroPerKwh: number, wh: bigint): bigint {
  const product = BigInt(priceMicroPerKwh) * wh;
  return (product + 999n) / 1000n;
}

function age(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function BuyForm({
  offer,
  acting,
  balance,
  onDone,
}: {
  offer: Offer;
  acting: ActingAccount;
  balance: number | undefined;
  onDone: () => void;
}) {
  const [kwh, setKwh] = useState("");
  const [maxPrice, setMaxPrice] = useState(String(offer.price_per_kwh));
  const [problems, setProblems] = useState<{ kwh?: string; max?: string }>({});
  // One key per order: a retry after a lost answer finds the first purchase instead of buying twice.
  const [idempotencyKey, setIdempotencyKey] = useState(() => `web-${newNonce()}`);
  const action = useAction<Purchase>();
  const wh = scaled(kwh, 3);
  const estimate = wh !== null && wh > 0n ? costMicroBlock(offer.price_micro_block_per_kwh, wh) : undefined;

  const submit = (event: Event) => {
    event.preventDefault();
    const found: { kwh?: string; max?: string } = {};
    const kwhProblem = decimalProblem(kwh, KWH);
    if (kwhProblem !== null) found.kwh = kwhProblem;
    else if (wh !== null && wh > BigInt(offer.available_wh)) found.kwh = `at most ${format.energy(offer.available_wh)} is on sale`;
    const priceProblem = decimalProblem(maxPrice, PRICE);
    if (priceProblem !== null) found.max = priceProblem;
    if (!showProblems(found, setProblems)) return;
    const buyer = acting.stored?.account;
    if (buyer === undefined) return;
    void action
      .run(() =>
        market.purchaseEnergy(buyer, acting.key(), {
          provider_id: offer.provider_id,
          kwh_amount: kwh.trim(),
          max_price_per_kwh: maxPrice.trim(),
          idempotency_key: idempotencyKey,
        }),
      )
      .then((purchase) => {
        if (purchase !== undefined) {
          setIdempotencyKey(`web-${newNonce()}`);
          onDone();
        }
      });
  };

  return (
    <form class="panel buy" onSubmit={submit} noValidate aria-labelledby="buy-title" data-testid="buy-form">
      <h2 id="buy-title">Buy from {offer.display_name}</h2>
      <p class="muted">
        {format.energy(offer.available_wh)} on sale at {format.price(offer.price_micro_block_per_kwh)}; the oldest credits are
        taken first.
      </p>
      <div class="field-row">
        <Field
          label="Energy (kWh)"
          name="kwh_amount"
          value={kwh}
          onInput={setKwh}
          problem={problems.kwh}
          hint="More than 0, at most 3 decimals"
          input={{ inputMode: "decimal" }}
        />
        <Field
          label="Maximum price (BLOCK/kWh)"
          name="max_price_per_kwh"
          value={maxPrice}
          onInput={setMaxPrice}
          problem={problems.max}
          hint="Refused if the provider's price is above it when the order arrives"
          input={{ inputMode: "decimal" }}
        />
      </div>
      <p data-testid="buy-estimate">
        {estimate === undefined
          ? "The cost shows once the amount is valid."
          : `Cost at today's price: ${format.block(Number(estimate))}, held in escrow until settlement`}
        {estimate !== undefined && balance !== undefined && BigInt(balance) < estimate && (
          <strong class="field-error"> — more than your balance of {format.block(balance)}</strong>
        )}
      </p>
      {action.error !== undefined && <ErrorNotice error={action.error} title="The purchase was refused" />}
      {action.result !== undefined && (
        <div class="notice notice-ok" role="status" data-testid="purchase-result">
          <p>
            Bought {format.energy(action.result.amount_wh)} for {format.block(action.result.total_cost_micro_block)} at{" "}
            {format.price(action.result.price_micro_block_per_kwh)}: purchase <code>{action.result.transaction_id}</code>,{" "}
            {action.result.status}, paid into escrow. It settles by itself after{" "}
            {new Date(action.result.settles_at_ms).toLocaleString("en-GB")}, or when you settle it below.
          </p>
        </div>
      )}
      <SignButton action={action} idle="Sign and buy" busy="Buying…" />
    </form>
  );
}

function Offers({ acting, portfolio }: { acting: ActingAccount; portfolio: LiveData<Portfolio | null> }) {
  const [form, setForm] = useState({ energy_type: "", max_price: "" });
  const [applied, setApplied] = useState<OfferFilters>({});
  const [chosen, setChosen] = useState<string | undefined>(undefined);
  const key = JSON.stringify(applied);
  // New readings put energy on sale; provider changes move prices: read the offers again.
  const offers = useLiveData<OfferPage>(
    () => market.getOffers(applied),
    ["new_reading", "provider_update", "new_settlement"],
    () => "reload",
    [key],
  );
  const own = new Set(portfolio.data?.providers ?? []);
  const list = offers.data?.offers ?? [];
  const offer = list.find((candidate) => candidate.provider_id === chosen);

  return (
    <section aria-labelledby="offers-title">
      <h2 id="offers-title">Offers on sale now</h2>
      <form
        class="filters"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied({
            ...(form.energy_type ? { energy_type: form.energy_type as EnergyType } : {}),
            ...(form.max_price.trim() ? { max_price: form.max_price.trim() } : {}),
          });
        }}
      >
        <label>
          Energy type
          <select
            name="offer_energy_type"
            value={form.energy_type}
            onChange={(event) => setForm({ ...form, energy_type: event.currentTarget.value })}
          >
            <EnergyTypeOptions any="Any" />
          </select>
        </label>
        <label>
          Maximum price (BLOCK/kWh)
          <input
            name="offer_max_price"
            inputMode="decimal"
            value={form.max_price}
            onInput={(event) => setForm({ ...form, max_price: event.currentTarget.value })}
          />
        </label>
        <div class="filter-actions">
          <button type="submit" class="button">
            Filter offers
          </button>
        </div>
      </form>
      <Loaded live={offers} title="The offers could not be read" what="offers">
        {() => list.length === 0 ? (
          <Empty>No energy on sale{Object.keys(applied).length > 0 ? " matches these filters" : " right now"}.</Empty>
        ) : (
          <table class="table" data-testid="offers">
            <caption class="visually-hidden">Offers, cheapest first</caption>
            <thead>
              <tr>
                <th scope="col">Provider</th>
                <th scope="col">Source</th>
                <th scope="col">Location</th>
                <th scope="col" class="number">
                  Price
                </th>
                <th scope="col" class="number">
                  On sale
                </th>
                <th scope="col" class="number">
                  Oldest credit
                </th>
                <th scope="col">
                  <span class="visually-hidden">Action</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((row) => (
                <tr key={row.provider_id} data-testid="offer" data-provider-id={row.provider_id}>
                  <td>
                    <a href={`#/providers/${row.provider_id}`}>{row.display_name}</a>
                  </td>
                  <td>
                    <span class="swatch" style={{ background: energyColour(row.energy_type) }} aria-hidden="true" />
                    {format.titleCase(row.energy_type)}
                  </td>
                  <td>{row.jurisdiction}</td>
                  <td class="number">{format.price(row.price_micro_block_per_kwh)}</td>
                  <td class="number">{format.energy(row.available_wh)}</td>
                  <td class="number">{age(row.oldest_credit_age_seconds)}</td>
                  <td>
                    {own.has(row.provider_id) ? (
                      <span class="muted">yours</span>
                    ) : (
                      <button
                        type="button"
                        class="button"
                        aria-pressed={chosen === row.provider_id}
                        aria-label={`Buy from ${row.display_name}`}
                        disabled={acting.stored === undefined}
                        onClick={() => setChosen(row.provider_id)}
                      >
                        Buy
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Loaded>
      {offer !== undefined && (
        <BuyForm
          key={offer.provider_id}
          offer={offer}
          acting={acting}
          balance={portfolio.data?.balance}
          onDone={() => {
            portfolio.reload();
            offers.reload();
          }}
        />
      )}
    </section>
  );
}

function SettleButton({
  purchase,
  acting,
  onDone,
}: {
  purchase: Purchase;
  acting: ActingAccount;
  onDone: (settlement: Settlement) => void;
}) {
  const action = useAction<Settlement>();
  const settle = () => {
    const buyer = acting.stored?.account;
    if (buyer === undefined) return;
    void action.run(() => market.settle(buyer, acting.key(), purchase.transaction_id)).then((done) => {
      if (done !== undefined) onDone(done);
    });
  };
  return (
    <>
      <button
        type="button"
        class="button button-primary"
        onClick={settle}
        disabled={action.busy}
        aria-label={`Settle ${purchase.transaction_id}`}
      >
        {action.busy ? "Settling…" : "Settle now"}
      </button>
      {action.error !== undefined && <ErrorNotice error={action.error} title="The settlement was refused" />}
    </>
  );
}

function Receipt({ settlement }: { settlement: Settlement }) {
  const receipt = settlement.receipt;
  return (
    <div class="notice notice-ok" role="status" data-testid="settlement-result">
      <p>
        {settlement.already_settled ? "Already settled" : "Settled"}: {format.energy(receipt.wh)} from{" "}
        <code>{receipt.provider_id}</code> for {format.block(receipt.total_cost_micro_block)} (the provider received{" "}
        {format.block(receipt.provider_amount_micro_block)}, fee {format.block(receipt.fee_micro_block)}).
      </p>
      <p class="notice-detail">
        Receipt #{receipt.sequence} of the provider's chain, hash <code class="wrap">{receipt.receipt_hash}</code>, signed by
        the marketplace: <code class="wrap">{receipt.signature.slice(0, 32)}…</code> (docs/receipts.md explains how to verify it
        offline). The credits are now in your <a href="#/portfolio">portfolio</a>.
      </p>
    </div>
  );
}

function OpenPurchases({ acting, portfolio }: { acting: ActingAccount; portfolio: LiveData<Portfolio | null> }) {
  const [settled, setSettled] = useState<Settlement | undefined>(undefined);
  const data = portfolio.data;
  return (
    <section class="panel" aria-labelledby="open-title">
      <h2 id="open-title">Your open purchases</h2>
      {portfolio.error !== undefined && (
        <ErrorNotice error={portfolio.error} title="Your purchases could not be read" onRetry={portfolio.reload} />
      )}
      {data === undefined ? (
        portfolio.loading && <Loading what="your purchases" />
      ) : data === null ? null : (
        <>
          <p class="muted" data-testid="trading-balance">
            Balance {format.block(data.balance)} · in escrow {format.block(data.escrow)} · {feedText(portfolio)}
          </p>
          {data.open_purchases.length === 0 ? (
            <Empty>No open purchase: what you buy waits here, its payment in escrow, until it settles.</Empty>
          ) : (
            <PurchaseTable
              purchases={data.open_purchases}
              testid="open-purchases"
              rowTestid="open-purchase"
              paid="Paid into escrow"
              last={["Settles by itself", <span class="visually-hidden">Action</span>]}
              cells={(purchase) => [
                new Date(purchase.settles_at_ms).toLocaleString("en-GB"),
                <SettleButton
                  purchase={purchase}
                  acting={acting}
                  onDone={(settlement) => {
                    // The purchase leaves the open list: its receipt stays shown below.
                    setSettled(settlement);
                    portfolio.reload();
                  }}
                />,
              ]}
            />
          )}
          {settled !== undefined && <Receipt settlement={settled} />}
        </>
      )}
    </section>
  );
}

export function Trading() {
  usePageTitle("Trading");
  const acting = useActingAccount();
  const portfolio = usePortfolio(acting);
  return (
    <>
      <PageHead title="Trading" />
      <ActingAs acting={acting} purpose="Buying energy" />
      <Offers acting={acting} portfolio={portfolio} />
      {acting.stored !== undefined && <OpenPurchases acting={acting} portfolio={portfolio} />}
    </>
  );
}
