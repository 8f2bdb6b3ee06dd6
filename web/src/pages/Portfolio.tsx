// Portfolio: the acting account's balance, holdings, purchase history, earnings and carbon
// achievements (energy.getPortfolio, energy.getCarbonOffset), retiring held credits for a
// beneficiary (the signed energy.retireCredits) and their certificates (energy.getCertificate);
// live from the account's private topic with a token signed here, polling while it is not.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { CarbonOffset, Certificate, Credit, Portfolio as PortfolioData } from "../api/types";
import * as format from "../format";
import { market } from "../services";
import { ActingAs, useActingAccount, type ActingAccount } from "../ui/account";
import { energyColour } from "../ui/charts";
import { Field, SignButton, showProblems, useAction } from "../ui/forms";
import { usePageTitle, type LiveData } from "../ui/hooks";
import { Empty, ErrorNotice, Loading } from "../ui/notices";
import { PurchaseTable } from "../ui/purchases";
import { Metric } from "../ui/stats";

// The portfolio's figures: found as portfolio-<id>, their labels as pf-<id>-label.
const PF = { prefix: "portfolio", labelPrefix: "pf" };
import { feedText, usePortfolio } from "../ui/portfolio";
import { textProblem } from "../ui/validate";
import { PageHead } from "../ui/page";

/** Carbon milestones, in grams of CO2 avoided: the achievements a buyer collects. */
const MILESTONES: { grams: number; name: string }[] = [
  { grams: 1, name: "First gram avoided" },
  { grams: 1_000, name: "1 kg avoided" },
  { grams: 21_000, name: "A tree's year (21 kg)" },
  { grams: 100_000, name: "100 kg avoided" },
  { grams: 1_000_000, name: "A tonne avoided" },
  { grams: 10_000_000, name: "10 tonnes avoided" },
];

function Achievements({ carbon }: { carbon: CarbonOffset }) {
  const reached = MILESTONES.filter((milestone) => carbon.total_g_co2 >= milestone.grams);
  const next = MILESTONES.find((milestone) => carbon.total_g_co2 < milestone.grams);
  const equivalents = Object.entries(carbon.equivalents);
  return (
    <section class="panel" aria-labelledby="carbon-title" data-testid="carbon">
      <h2 id="carbon-title">Carbon achievements</h2>
      <p>
        The energy you bought and settled avoided <strong data-testid="carbon-total">{format.co2(carbon.total_g_co2)} of CO₂</strong>{" "}
        compared with the grid it came from.
      </p>
      {reached.length === 0 ? (
        <Empty>No achievement yet: settle a purchase of renewable energy to earn the first.</Empty>
      ) : (
        <ul class="badges" aria-label="Achievements reached">
          {reached.map((milestone) => (
            <li key={milestone.grams} class="achievement">
              <span aria-hidden="true">★</span> {milestone.name}
            </li>
          ))}
        </ul>
      )}
      {next !== undefined && (
        <p>
          <label>
            Next: {next.name}
            <progress max={next.grams} value={carbon.total_g_co2}>
              {format.percent((100 * carbon.total_g_co2) / next.grams)}
            </progress>
          </label>
        </p>
      )}
      {equivalents.length > 0 && (
        <ul class="equivalents">
          {equivalents.map(([name, equivalent]) => (
            <li key={name} title={equivalent.source}>
              ≈ <strong>{format.integer(equivalent.quantity)}</strong> {equivalent.unit}
            </li>
          ))}
        </ul>
      )}
      {carbon.wh_by_origin.length > 0 && (
        <details>
          <summary>How it was counted</summary>
          <table class="table">
            <thead>
              <tr>
                <th scope="col">Source</th>
                <th scope="col">From</th>
                <th scope="col" class="number">
                  Energy
                </th>
                <th scope="col" class="number">
                  g CO₂ avoided per kWh
                </th>
                <th scope="col" class="number">
                  Avoided
                </th>
              </tr>
            </thead>
            <tbody>
              {carbon.wh_by_origin.map((line) => (
                <tr key={`${line.energy_type}/${line.jurisdiction}`}>
                  <td>{format.titleCase(line.energy_type)}</td>
                  <td>{line.jurisdiction ?? "—"}</td>
                  <td class="number">{format.energy(line.wh)}</td>
                  <td class="number">
                    {line.g_co2_per_kwh} <span class="muted">({line.basis})</span>
                  </td>
                  <td class="number">{format.co2(line.g_co2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p class="hint">{carbon.factors_source}</p>
        </details>
      )}
    </section>
  );
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function RetireForm({
  credits,
  acting,
  onDone,
}: {
  credits: Credit[];
  acting: ActingAccount;
  onDone: () => void;
}) {
  const year = new Date().getUTCFullYear();
  const [beneficiary, setBeneficiary] = useState("");
  const [start, setStart] = useState(`${year}-01-01`);
  const [end, setEnd] = useState(`${year + 1}-01-01`);
  const [problems, setProblems] = useState<{ beneficiary?: string; period?: string }>({});
  const action = useAction<{ certificates: Certificate[] }>();
  const startMs = Date.parse(`${start}T00:00:00Z`);
  const endMs = Date.parse(`${end}T00:00:00Z`);

  const submit = (event: Event) => {
    event.preventDefault();
    const found: { beneficiary?: string; period?: string } = {};
    const who = textProblem(beneficiary.trim(), 1, 200);
    if (who !== null) found.beneficiary = who;
    if (!Number.isFinite(startMs) || !Number.isFinite(endMs)) found.period = "give both dates";
    else if (endMs <= startMs) found.period = "the end must be after the start";
    else if (endMs - startMs > 366 * 86_400_000) found.period = "at most 366 days";
    if (!showProblems(found, setProblems)) return;
    const holder = acting.stored?.account;
    if (holder === undefined) return;
    void action
      .run(() =>
        market.retireCredits(holder, acting.key(), {
          credit_ids: credits.map((credit) => credit.credit_id),
          beneficiary: beneficiary.trim(),
          reporting_period_start_ms: startMs,
          reporting_period_end_ms: endMs,
        }),
      )
      .then((done) => {
        if (done !== undefined) onDone();
      });
  };
  const total = credits.reduce((sum, credit) => sum + credit.amount_wh, 0);
  return (
    <form class="panel" onSubmit={submit} noValidate aria-labelledby="retire-title" data-testid="retire-form">
      <h2 id="retire-title">Retire credits</h2>
      <p>
        Retiring claims energy for good, for a beneficiary and a reporting period: it can never be sold or claimed again,
        and each credit becomes a certificate with its provenance down to the meter's signed reading.
      </p>
      <p data-testid="retire-selection">
        {credits.length === 0
          ? "Choose the credits to retire in the holdings above."
          : `${credits.length} credit${credits.length === 1 ? "" : "s"} chosen: ${format.energy(total)}`}
      </p>
      <Field
        label="Beneficiary"
        name="beneficiary"
        value={beneficiary}
        onInput={setBeneficiary}
        problem={problems.beneficiary}
        hint="Who the energy is claimed for: 1–200 characters"
      />
      <div class="field-row">
        <Field
          label="Reporting period from (UTC)"
          name="period_start"
          value={start}
          onInput={setStart}
          problem={problems.period}
          input={{ type: "date" }}
        />
        <Field
          label="to (excluded)"
          name="period_end"
          value={end}
          onInput={setEnd}
          hint="At most 366 days"
          input={{ type: "date" }}
        />
      </div>
      {action.error !== undefined && <ErrorNotice error={action.error} title="The credits were not retired" />}
      {action.result !== undefined && (
        <div class="notice notice-ok" role="status" data-testid="retired">
          <p>Retired. Certificates:</p>
          <ul>
            {action.result.certificates.map((certificate) => (
              <li key={certificate.certificate_id}>
                <a href={`#/portfolio/${certificate.certificate_id}`}>{certificate.certificate_id.slice(0, 20)}…</a> —{" "}
                {format.energy(certificate.energy_wh)} of {certificate.technology} for {certificate.beneficiary}
              </li>
            ))}
          </ul>
        </div>
      )}
      <SignButton action={action} idle="Sign and retire" busy="Retiring…" disabled={credits.length === 0} />
    </form>
  );
}

function Holdings({
  data,
  chosen,
  setChosen,
}: {
  data: PortfolioData;
  chosen: Set<string>;
  setChosen: (chosen: Set<string>) => void;
}) {
  if (data.holdings.length === 0) {
    return <Empty>No holdings yet: credits you buy are yours once the purchase settles.</Empty>;
  }
  return (
    <table class="table" data-testid="holdings">
      <thead>
        <tr>
          <th scope="col">Retire</th>
          <th scope="col">Source</th>
          <th scope="col">Meter</th>
          <th scope="col">Produced (UTC)</th>
          <th scope="col" class="number">
            Energy
          </th>
          <th scope="col">State</th>
        </tr>
      </thead>
      <tbody>
        {data.holdings.map((credit) => {
          const retirable = credit.state === "held" && credit.disputed_by === null;
          const label = `${format.energy(credit.amount_wh)} of ${credit.energy_type} from ${credit.meter_address}`;
          return (
            <tr key={credit.credit_id} data-testid="holding" data-credit-id={credit.credit_id}>
              <td>
                <input
                  type="checkbox"
                  aria-label={`Retire ${label}`}
                  disabled={!retirable}
                  checked={chosen.has(credit.credit_id)}
                  onChange={(event) => {
                    const next = new Set(chosen);
                    if (event.currentTarget.checked) next.add(credit.credit_id);
                    else next.delete(credit.credit_id);
                    setChosen(next);
                  }}
                />
              </td>
              <td>
                <span class="swatch" style={{ background: energyColour(credit.energy_type) }} aria-hidden="true" />
                {format.titleCase(credit.energy_type)} · {credit.jurisdiction}
              </td>
              <td>
                <code>{credit.meter_address}</code>
              </td>
              <td>
                {new Date(credit.interval_start_ms).toISOString().slice(0, 16).replace("T", " ")} –{" "}
                {format.time(credit.interval_end_ms)}
              </td>
              <td class="number">{format.energy(credit.amount_wh)}</td>
              <td>
                {credit.state}
                {credit.disputed_by !== null && (
                  <>
                    {" "}
                    · <a href={`#/disputes/${credit.disputed_by}`}>disputed</a>
                  </>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function History({ data }: { data: PortfolioData }) {
  if (data.purchase_history.length === 0) return <Empty>No settled purchase yet.</Empty>;
  return (
    <PurchaseTable
      purchases={data.purchase_history}
      testid="history"
      rowTestid="history-row"
      paid="Paid"
      last={["Settled", "Receipt"]}
      cells={(purchase) => [
        purchase.settled_at_ms === null ? purchase.status : new Date(purchase.settled_at_ms).toLocaleString("en-GB"),
        purchase.receipt === null ? "—" : `#${purchase.receipt.sequence}`,
      ]}
    />
  );
}

function PortfolioBody({ acting, portfolio }: { acting: ActingAccount; portfolio: LiveData<PortfolioData | null> }) {
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [carbon, setCarbon] = useState<CarbonOffset | undefined>(undefined);
  const [carbonError, setCarbonError] = useState<unknown>(undefined);
  const data = portfolio.data;
  const account = acting.stored?.account;
  // The achievements follow the portfolio: every time it is read or pushed, read them again.
  useEffect(() => {
    if (account === undefined || data == null) return;
    market.getCarbonOffset(account).then(
      (found) => {
        setCarbon(found);
        setCarbonError(undefined);
      },
      setCarbonError,
    );
  }, [account, portfolio.updatedAt]);
  if (data === undefined) {
    return (
      <>
        {portfolio.error !== undefined && (
          <ErrorNotice error={portfolio.error} title="The portfolio could not be read" onRetry={portfolio.reload} />
        )}
        {portfolio.loading && <Loading what="your portfolio" />}
      </>
    );
  }
  if (data === null) return null;
  const chosenCredits = data.holdings.filter((credit) => chosen.has(credit.credit_id));
  const heldWh = data.holdings.filter((credit) => credit.state === "held").reduce((sum, credit) => sum + credit.amount_wh, 0);
  return (
    <>
      <p class="as-of" data-testid="portfolio-feed" data-live={portfolio.live ? "yes" : "no"}>
        {portfolio.updatedAt !== undefined && `As of ${format.time(portfolio.updatedAt, true)} · `}
        {feedText(portfolio)}
      </p>
      {portfolio.error !== undefined && (
        <ErrorNotice error={portfolio.error} title="The portfolio could not be refreshed; showing the last one read" />
      )}
      <div class="metrics">
        <Metric {...PF} id="balance" label="Balance" value={format.block(data.balance)} detail="available to buy, stake or withdraw" />
        <Metric {...PF} id="escrow" label="In escrow" value={format.block(data.escrow)} detail={`${data.open_purchases.length} open purchases`} />
        <Metric {...PF} id="stake" label="Staked" value={format.block(data.stake)} detail={`${data.providers.length} providers`} />
        <Metric {...PF} id="holdings" label="Holdings" value={format.energy(heldWh)} detail={`${data.holdings.length} credit${data.holdings.length === 1 ? "" : "s"} (held or retired)`} />
        <Metric {...PF} id="earnings" label="Earnings" value={format.block(data.earnings)} detail={`${format.energy(data.sold_wh)} sold and settled`} />
        <Metric
          {...PF}
          id="carbon"
          label="CO₂ avoided"
          value={format.co2(data.carbon_offset.total_g_co2)}
          detail={`≈ ${format.integer(data.carbon_offset.equivalent_trees)} trees for a year`}
        />
      </div>
      <div class="panels">
        <section class="panel panel-wide" aria-labelledby="holdings-title">
          <h2 id="holdings-title">Holdings</h2>
          <Holdings data={data} chosen={chosen} setChosen={setChosen} />
        </section>
        <div class="panel-wide">
          <RetireForm
            credits={chosenCredits}
            acting={acting}
            onDone={() => {
              setChosen(new Set());
              portfolio.reload();
            }}
          />
        </div>
        <section class="panel panel-wide" aria-labelledby="history-title">
          <h2 id="history-title">Purchase history</h2>
          <History data={data} />
          {data.open_purchases.length > 0 && (
            <p>
              {data.open_purchases.length} purchase{data.open_purchases.length === 1 ? " is" : "s are"} still open:{" "}
              <a href="#/trading">settle on the Trading page</a>.
            </p>
          )}
        </section>
        <div class="panel-wide">
          {carbonError !== undefined && <ErrorNotice error={carbonError} title="The carbon figures could not be read" />}
          {carbon === undefined ? carbonError === undefined && <Loading what="the carbon figures" /> : <Achievements carbon={carbon} />}
        </div>
      </div>
    </>
  );
}

export function Portfolio() {
  usePageTitle("Portfolio");
  const acting = useActingAccount();
  const portfolio = usePortfolio(acting);
  return (
    <>
      <PageHead title="Portfolio" />
      <ActingAs acting={acting} purpose="A portfolio" />
      {acting.stored !== undefined && <PortfolioBody acting={acting} portfolio={portfolio} />}
    </>
  );
}

export function CertificateView({ certificateId }: { certificateId: string }) {
  usePageTitle("Certificate");
  const [certificate, setCertificate] = useState<Certificate | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  useEffect(() => {
    market.getCertificate(certificateId).then(setCertificate, setError);
  }, [certificateId]);
  const c = certificate;
  const rows: [string, ComponentChildren][] =
    c === undefined
      ? []
      : [
          ["Status", <strong>{c.status}</strong>],
          ["Beneficiary", c.beneficiary],
          ["Reporting period", `${utcDay(c.reporting_period_start_ms)} to ${utcDay(c.reporting_period_end_ms)} (excluded), UTC`],
          ["Energy", format.energy(c.energy_wh)],
          ["Technology", format.titleCase(c.technology)],
          ["Produced", `${new Date(c.production_start_ms).toISOString()} – ${new Date(c.production_end_ms).toISOString()}`],
          ["Device (meter)", <code>{c.device_id}</code>],
          ["Device capacity", `${format.energy(c.device_capacity_wh)} per hour`],
          ["Provider", <a href={`#/providers/${c.provider_id}`}>{c.provider_id}</a>],
          ["Location", `${c.jurisdiction} · ${c.latitude}, ${c.longitude}`],
          ["Issued (minted)", new Date(c.issued_at_ms).toISOString()],
          ["Retired by", `${c.retired_by} on ${new Date(c.retired_at_ms).toISOString()}`],
          ["Reading hash", <code class="wrap">{c.reading_hash}</code>],
          ["Meter counter", `${format.integer(c.reading_counter_wh)} Wh at ${new Date(c.reading_timestamp_ms).toISOString()}`],
          ["Meter signature", <code class="wrap">{c.reading_signature}</code>],
        ];
  return (
    <>
      <p>
        <a href="#/portfolio">← Portfolio</a>
      </p>
      <PageHead title="Certificate">
        {c !== undefined && <span class={`badge badge-${c.status === "retired" ? "active" : "suspended"}`}>{c.status}</span>}
      </PageHead>
      {error !== undefined && <ErrorNotice error={error} title="This certificate could not be read" />}
      {c === undefined ? (
        error === undefined && <Loading what="the certificate" />
      ) : (
        <article class="certificate" data-testid="certificate" aria-label="Granular certificate">
          <p class="muted">
            <code>{c.certificate_id}</code> · the fields of an EnergyTag granular certificate. Anyone can check the reading:
            the meter's signature verifies over the reading message with the meter's registered key
            (docs/meter-protocol.md).
          </p>
          <dl class="facts facts-wide">
            {rows.map(([name, value]) => (
              <div key={name}>
                <dt>{name}</dt>
                <dd>{value}</dd>
              </div>
            ))}
          </dl>
          {c.status === "revoked" && (
            <p class="field-error">A dispute found the reading fraudulent: this claim no longer holds, and its holder was refunded.</p>
          )}
          <button type="button" class="button" onClick={() => print()}>
            Print
          </button>
        </article>
      )}
    </>
  );
}
