// Register as a provider: the original's three-step wizard (1 the source: type and capacity;
// 2 the location and meter; 3 the price and stake), each field checked as the API checks it,
// then the signed energy.registerProvider and what the marketplace answered, with the meter's
// topic and how to provision it (docs/meter-protocol.md "Provisioning a meter").

import { useEffect, useState } from "preact/hooks";
import { RpcError } from "../api/jsonrpc";
import type { Account, MarketInfo, Meter, Provider } from "../api/types";
import { ENERGY_TYPES } from "../api/types";
import * as format from "../format";
import { market } from "../services";
import { ActingAs, useActingAccount } from "../ui/account";
import { energyColour } from "../ui/charts";
import { Field, focusFirstProblem, useAction, type FieldInput } from "../ui/forms";
import { usePageTitle } from "../ui/hooks";
import { ErrorNotice, Loading } from "../ui/notices";
import {
  JURISDICTION,
  KWH,
  LATITUDE,
  LONGITUDE,
  METER_ADDRESS,
  PRICE,
  PUBLIC_KEY,
  decimalProblem,
  microBlockOf,
  stakeRule,
  textProblem,
} from "../ui/validate";
import { PageHead } from "../ui/page";

interface Draft {
  display_name: string;
  energy_type: string;
  capacity_kwh: string;
  jurisdiction: string;
  latitude: string;
  longitude: string;
  meter_address: string;
  meter_public_key: string;
  price_per_kwh: string;
  stake_block: string;
}

const EMPTY: Draft = {
  display_name: "",
  energy_type: "solar",
  capacity_kwh: "",
  jurisdiction: "",
  latitude: "",
  longitude: "",
  meter_address: "",
  meter_public_key: "",
  price_per_kwh: "",
  stake_block: "1000",
};

const STEPS = ["Source", "Location and meter", "Price and stake"] as const;
type Problems = Partial<Record<keyof Draft, string>>;

const SOURCES: Record<string, string> = {
  solar: "Photovoltaic panels",
  wind: "Wind turbines",
  hydro: "Run-of-river or small hydro",
  battery: "Stored energy sold back (avoids no CO₂ of its own)",
};

/** The problems of one step's fields, as energy.registerProvider would refuse them. */
function problemsOf(step: number, draft: Draft, info: MarketInfo | undefined, balance: number | undefined): Problems {
  const found: Problems = {};
  const put = (field: keyof Draft, problem: string | null) => {
    if (problem !== null) found[field] = problem;
  };
  if (step === 0) {
    put("display_name", textProblem(draft.display_name.trim(), 1, 80));
    put("energy_type", ENERGY_TYPES.includes(draft.energy_type as never) ? null : "choose a source");
    put("capacity_kwh", decimalProblem(draft.capacity_kwh, KWH));
  } else if (step === 1) {
    put(
      "jurisdiction",
      JURISDICTION.test(draft.jurisdiction.trim())
        ? null
        : "a country code (ISO 3166-1, two capital letters), optionally _ and a region of 1–3: US, US_CA, DE_BY",
    );
    put("latitude", decimalProblem(draft.latitude, LATITUDE));
    put("longitude", decimalProblem(draft.longitude, LONGITUDE));
    put(
      "meter_address",
      METER_ADDRESS.test(draft.meter_address.trim())
        ? null
        : "3–64 characters of A–Z a–z 0–9 _ -, starting with a letter or digit (no spaces, no / # +)",
    );
    put("meter_public_key", PUBLIC_KEY.test(draft.meter_public_key.trim()) ? null : "64 hex digits (the meter's Ed25519 public key)");
  } else {
    put("price_per_kwh", decimalProblem(draft.price_per_kwh, PRICE));
    const minimum = info?.min_stake ?? 1_000_000_000;
    const stake = decimalProblem(draft.stake_block, stakeRule(minimum));
    const micro = microBlockOf(draft.stake_block.trim());
    if (stake !== null) put("stake_block", `${stake} BLOCK (the minimum stake is ${format.block(minimum)})`);
    else if (balance !== undefined && micro !== null && micro > balance) {
      put("stake_block", `more than the balance of ${format.block(balance)}: deposit first, or stake less`);
    }
  }
  return found;
}

function Summary({ draft }: { draft: Draft }) {
  const rows: [string, string][] = [
    ["Name", draft.display_name.trim()],
    ["Source", format.titleCase(draft.energy_type)],
    ["Peak capacity", `${draft.capacity_kwh.trim()} kW (kWh per hour)`],
    ["Jurisdiction", draft.jurisdiction.trim()],
    ["Location", `${draft.latitude.trim()}, ${draft.longitude.trim()}`],
    ["Meter address", draft.meter_address.trim()],
    ["Meter public key", draft.meter_public_key.trim()],
    ["Price", `${draft.price_per_kwh.trim()} BLOCK/kWh`],
    ["Stake", `${draft.stake_block.trim()} BLOCK`],
  ];
  return (
    <dl class="facts facts-wide summary" data-testid="registration-summary">
      {rows.map(([name, value]) => (
        <div key={name}>
          <dt>{name}</dt>
          <dd>{name === "Meter public key" ? <code class="wrap">{value}</code> : value}</dd>
        </div>
      ))}
    </dl>
  );
}

function Registered({ provider, owner }: { provider: Provider; owner: string }) {
  const [meter, setMeter] = useState<Meter | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  useEffect(() => {
    market.getMeter(provider.meter_address).then(setMeter, setError);
  }, [provider.meter_address]);
  const command =
    `python -m iot.provision --meter-address ${provider.meter_address} --owner ${owner} \\\n` +
    `    --out .local/meters/${provider.meter_address} --local-ca .local/ca \\\n` +
    `    --api-url ${new URL("rpc", location.href).href.replace(/#.*$/, "")} --owner-key-file ${owner}.key`;
  return (
    <section class="panel" aria-labelledby="registered-title" data-testid="registered">
      <h2 id="registered-title" tabIndex={-1}>
        Registered: {provider.display_name}
      </h2>
      <p>
        The marketplace registered the provider <code data-testid="registered-provider-id">{provider.provider_id}</code>{" "}
        (status <strong>{provider.status}</strong>) and moved {format.block(provider.stake)} from {owner}'s balance into
        its stake. <a href={`#/providers/${provider.provider_id}`}>Open its page</a>.
      </p>
      <dl class="facts facts-wide">
        <div>
          <dt>Capacity</dt>
          <dd>{format.energy(provider.capacity_wh)} per hour</dd>
        </div>
        <div>
          <dt>Price</dt>
          <dd>{format.price(provider.price_micro_block_per_kwh)}</dd>
        </div>
        <div>
          <dt>On sale</dt>
          <dd>{format.energy(provider.available_wh)} until the meter reports</dd>
        </div>
        <div>
          <dt>Jurisdiction</dt>
          <dd>{provider.jurisdiction}</dd>
        </div>
      </dl>
      <h3>The meter</h3>
      {error !== undefined && <ErrorNotice error={error} title="The meter could not be read" />}
      {meter === undefined ? (
        error === undefined && <Loading what="the meter" />
      ) : (
        <dl class="facts facts-wide" data-testid="registered-meter">
          <div>
            <dt>Publishes to</dt>
            <dd>
              <code class="wrap" data-testid="meter-topic">{meter.topic}</code>
            </dd>
          </div>
          <div>
            <dt>Readings checked against</dt>
            <dd>
              <code class="wrap">{meter.public_key}</code>
            </dd>
          </div>
          <div>
            <dt>Accepted readings</dt>
            <dd>{meter.accepted_readings === 0 ? "none yet: the first one sets the baseline" : meter.accepted_readings}</dd>
          </div>
        </dl>
      )}
      <p>
        The meter signs each cumulative reading with its Ed25519 key and publishes it, QoS 1, over mutual TLS to its
        own topic; every verified increase mints credits on sale at your price. To provision it as an IoT thing (X.509
        certificate, the meter policy, a fresh Ed25519 key registered with this provider):
      </p>
      <pre class="code" data-testid="provision-command">{command}</pre>
      <p class="hint">
        <code>{owner}.key</code> is the backup downloaded under <a href="#/keys">Your keys</a>; on a local market run it with
        the environment of the README's "run a meter of your own" (the IoT endpoint of moto), and in AWS with{" "}
        <code>--certificate-source aws</code>. See docs/meter-protocol.md "Provisioning a meter". A meter, or a gateway
        relaying its signed readings, can also send them over HTTP with energy.submitReading.
      </p>
    </section>
  );
}

export function Register() {
  usePageTitle("Register as a provider");
  const acting = useActingAccount();
  const owner = acting.stored?.account;
  const [step, setStep] = useState(0);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [problems, setProblems] = useState<Problems>({});
  const [info, setInfo] = useState<MarketInfo | undefined>(undefined);
  const [account, setAccount] = useState<Account | null | undefined>(undefined);
  const action = useAction<Provider>();

  useEffect(() => {
    market.marketInfo().then(setInfo, () => undefined);
  }, []);
  useEffect(() => {
    setAccount(undefined);
    if (owner === undefined) return;
    market.getAccount(owner).then(setAccount, (error: unknown) => {
      if (error instanceof RpcError && error.reason === "not_found") setAccount(null);
    });
  }, [owner, action.result]);

  const set = (field: keyof Draft) => (value: string) => {
    setDraft({ ...draft, [field]: value });
    if (problems[field] !== undefined) setProblems({ ...problems, [field]: undefined });
  };
  // One field of the draft: its value, its problem and its setter all follow from its name.
  const field = (props: {
    label: string;
    name: keyof Draft;
    hint: string;
    input?: FieldInput;
    onInput?: (value: string) => void;
  }) => (
    <Field
      label={props.label}
      name={props.name}
      value={draft[props.name]}
      onInput={props.onInput ?? set(props.name)}
      problem={problems[props.name]}
      hint={props.hint}
      input={props.input}
    />
  );
  const balance = account?.balance;
  const check = (upTo: number): boolean => {
    for (let index = 0; index <= upTo; index++) {
      const found = problemsOf(index, draft, info, balance);
      if (Object.keys(found).length > 0) {
        setProblems(found);
        setStep(index);
        focusFirstProblem();
        return false;
      }
    }
    setProblems({});
    return true;
  };
  const next = (event: Event) => {
    event.preventDefault();
    if (step < STEPS.length - 1) {
      if (check(step)) setStep(step + 1);
      return;
    }
    if (!check(STEPS.length - 1) || owner === undefined) return;
    void action.run(() =>
      market.registerProvider(
        {
          owner,
          display_name: draft.display_name.trim(),
          energy_type: draft.energy_type,
          jurisdiction: draft.jurisdiction.trim(),
          latitude: draft.latitude.trim(),
          longitude: draft.longitude.trim(),
          capacity_kwh: draft.capacity_kwh.trim(),
          price_per_kwh: draft.price_per_kwh.trim(),
          stake: microBlockOf(draft.stake_block) ?? 0,
          meter_address: draft.meter_address.trim(),
          meter_public_key: draft.meter_public_key.trim().toLowerCase(),
        },
        acting.key(),
      ),
    );
  };
  useEffect(() => {
    if (action.result !== undefined) document.getElementById("registered-title")?.focus();
  }, [action.result]);

  return (
    <>
      <PageHead title="Register as a provider" />
      <ActingAs acting={acting} purpose="Registering a provider" />
      {owner !== undefined && account === null && (
        <div class="notice" role="alert">
          <p>
            {owner} has no account on the marketplace yet: <a href="#/keys">open it under Your keys</a> first.
          </p>
        </div>
      )}
      {owner !== undefined && account != null && (
        <p class="muted" data-testid="owner-balance">
          {owner}'s balance: {format.block(account.balance)} (the stake comes out of it)
        </p>
      )}
      {action.result !== undefined && owner !== undefined ? (
        <>
          <Registered provider={action.result} owner={owner} />
          <button
            type="button"
            class="button"
            onClick={() => {
              action.reset();
              setDraft(EMPTY);
              setStep(0);
            }}
          >
            Register another provider
          </button>
        </>
      ) : (
        owner !== undefined && (
          <form class="panel wizard" onSubmit={next} noValidate aria-labelledby="wizard-step-title">
            <ol class="steps" aria-label="Steps">
              {STEPS.map((name, index) => (
                <li key={name} aria-current={index === step ? "step" : undefined} class={index < step ? "done" : undefined}>
                  <span class="step-number">{index + 1}</span> {name}
                </li>
              ))}
            </ol>
            <h2 id="wizard-step-title" data-testid="wizard-step">
              Step {step + 1} of {STEPS.length}: {STEPS[step]}
            </h2>
            {step === 0 && (
              <>
                {field({ label: "Name of the installation", name: "display_name", hint: "1–80 characters, shown on the provider cards" })}
                <fieldset class="choices" aria-invalid={problems.energy_type ? true : undefined}>
                  <legend>Energy source</legend>
                  {ENERGY_TYPES.map((type) => (
                    <label key={type} class="choice">
                      <input
                        type="radio"
                        name="energy_type"
                        value={type}
                        checked={draft.energy_type === type}
                        onChange={() => set("energy_type")(type)}
                      />
                      <span class="swatch" style={{ background: energyColour(type) }} aria-hidden="true" />
                      <span>
                        {format.titleCase(type)} <span class="hint">{SOURCES[type]}</span>
                      </span>
                    </label>
                  ))}
                </fieldset>
                {field({
                  label: "Peak capacity (kW, i.e. kWh per hour)",
                  name: "capacity_kwh",
                  hint: "More than 0, at most 3 decimals (whole Wh). A reading may not claim more than this × the time since the last one.",
                  input: { inputMode: "decimal", placeholder: "e.g. 5" },
                })}
              </>
            )}
            {step === 1 && (
              <>
                {field({
                  label: "Jurisdiction",
                  name: "jurisdiction",
                  onInput: (value) => set("jurisdiction")(value.toUpperCase()),
                  hint: "Country (ISO 3166-1 alpha-2) and optionally a region: US, US_CA, DE_BY. It sets the grid the CO₂ figures compare with.",
                  input: { placeholder: "e.g. US_CA" },
                })}
                <div class="field-row">
                  {field({
                    label: "Latitude (degrees)",
                    name: "latitude",
                    hint: "−90 to 90, at most 6 decimals",
                    input: { inputMode: "decimal", placeholder: "e.g. 37.7749" },
                  })}
                  {field({
                    label: "Longitude (degrees)",
                    name: "longitude",
                    hint: "−180 to 180, at most 6 decimals",
                    input: { inputMode: "decimal", placeholder: "e.g. -122.4194" },
                  })}
                </div>
                {field({
                  label: "Meter address",
                  name: "meter_address",
                  hint: "The meter's IoT thing name and MQTT client id: 3–64 of A–Z a–z 0–9 _ -. One provider per meter.",
                  input: { placeholder: "e.g. carol_meter_001", spellcheck: false },
                })}
                {field({
                  label: "Meter public key",
                  name: "meter_public_key",
                  hint: "The Ed25519 public key (64 hex digits) the meter signs readings with. Provisioning the meter afterwards replaces it with the key it generates.",
                  input: { spellcheck: false, placeholder: "64 hex digits" },
                })}
              </>
            )}
            {step === 2 && (
              <>
                {field({
                  label: "Price (BLOCK per kWh)",
                  name: "price_per_kwh",
                  hint: "More than 0 and at most 1,000, at most 6 decimals (whole micro-BLOCK)",
                  input: { inputMode: "decimal", placeholder: "e.g. 0.08" },
                })}
                {field({
                  label: "Stake (BLOCK)",
                  name: "stake_block",
                  hint: `At least ${format.block(info?.min_stake ?? 1_000_000_000)}, from your balance. A guilty dispute slashes 10–50 % of it; below the minimum the provider is suspended.`,
                  input: { inputMode: "decimal" },
                })}
                <h3>Review</h3>
                <Summary draft={draft} />
              </>
            )}
            {action.error !== undefined && <ErrorNotice error={action.error} title="The marketplace refused the registration" />}
            <div class="actions">
              {step > 0 && (
                <button type="button" class="button" onClick={() => setStep(step - 1)} disabled={action.busy}>
                  Back
                </button>
              )}
              <button type="submit" class="button button-primary" disabled={action.busy || account === null}>
                {step < STEPS.length - 1 ? "Next" : action.busy ? "Registering…" : "Sign and register"}
              </button>
            </div>
          </form>
        )
      )}
    </>
  );
}
