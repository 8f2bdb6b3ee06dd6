// The results the dashboard reads, as docs/api.md documents them (the OpenRPC document,
// GET /openrpc.json, is the machine-readable source). Energy in Wh, money in micro-BLOCK,
// prices in micro-BLOCK per kWh, with the original client's decimal units beside them.

export type EnergyType = "solar" | "wind" | "hydro" | "battery";
export const ENERGY_TYPES: readonly EnergyType[] = ["solar", "wind", "hydro", "battery"];

export interface MarketInfo {
  marketplace_id: string;
  operator_public_key: string;
  min_stake: number;
  auth_window_seconds: number;
  energy_types: string[];
  request_signing_domain: string;
  receipt_public_key: string;
  market_fee_bps: number;
  dispute_window_ms: number;
  api_version: string;
}

export interface TopProvider {
  rank: number;
  provider_id: string;
  display_name: string;
  energy_type: string;
  jurisdiction: string;
  sold_wh: number;
  sold_kwh: number;
}

export interface MarketStats {
  as_of_ms: number;
  bucket_ms: number;
  total_capacity_wh: number;
  total_capacity_mwh: number;
  average_price: {
    vwap_24h_per_kwh: number | null;
    vwap_24h_micro_block_per_kwh: number | null;
    listed_per_kwh: number | null;
    listed_micro_block_per_kwh: number | null;
  };
  energy_traded: {
    wh_24h: number;
    wh_all_time: number;
    gwh_all_time: number;
    trades_24h: number;
    settled_wh_24h: number;
    settled_wh_all_time: number;
  };
  revenue: { micro_block_24h: number; micro_block_all_time: number };
  on_sale_wh: number;
  carbon_offset: {
    total_kg_co2: number;
    total_g_co2: number;
    total_tons_co2: number;
    equivalent_trees: number;
  };
  active_providers: number;
  active_buyers: number;
  providers: { registered: number; listed: number; active_24h: number; meters_on_time: number };
  open_disputes: number;
  grid_health: {
    score: number;
    on_time_percent: number;
    accepted_percent: number;
    supply_percent: number;
  };
  energy_mix: {
    generated_wh_24h: Record<string, number>;
    traded_wh_24h: Record<string, number>;
    capacity_wh: Record<string, number>;
  };
  readings_24h: number;
  refused_24h: Record<string, number>;
  top_providers: TopProvider[];
}

export interface PriceBucket {
  start_ms: number;
  open: number;
  high: number;
  low: number;
  close: number;
  vwap: number;
  vwap_per_kwh: number;
  volume_wh: number;
  trades: number;
}

export interface PriceHistory {
  scope: string;
  bucket_ms: number;
  from_ms: number;
  to_ms: number;
  buckets: PriceBucket[];
}

export type ProviderStatus = "active" | "paused" | "suspended";

export interface Provider {
  provider_id: string;
  owner: string;
  display_name: string;
  energy_type: EnergyType;
  jurisdiction: string;
  latitude: number;
  longitude: number;
  capacity_kwh: number;
  capacity_wh: number;
  price_per_kwh: number;
  price_micro_block_per_kwh: number;
  stake: number;
  status: ProviderStatus;
  available_kwh: number;
  available_wh: number;
  rating: number | null;
  uptime_percent: number | null;
  meter_address: string;
  meter_public_key: string;
  open_obligations: number;
  created_at: number;
  updated_at: number;
}

export interface ProviderPage {
  providers: Provider[];
  next_cursor: string | null;
}

export interface ProviderFilters {
  energy_type?: EnergyType;
  jurisdiction?: string;
  /** BLOCK per kWh as typed: sent as a decimal string, so nothing is rounded on the way. */
  max_price?: string;
  min_capacity?: string;
}

export interface Account {
  name: string;
  public_key: string;
  roles: string[];
  balance: number;
  balance_block: number;
  stake: number;
  validator_stake: number;
  providers: string[];
  created_at: number;
}

/** The card a provider_update event carries (docs/events.md). */
export interface ProviderCard {
  provider_id: string;
  display_name: string;
  energy_type: EnergyType;
  jurisdiction: string;
  capacity_wh: number;
  price_micro_block_per_kwh: number;
  status: ProviderStatus;
  on_sale_wh: number;
  sold_wh: number;
  rating: number | null;
  open_disputes: number;
}

// --- trading -----------------------------------------------------------------------------

export interface Offer {
  provider_id: string;
  display_name: string;
  energy_type: EnergyType;
  jurisdiction: string;
  latitude: number;
  longitude: number;
  price_per_kwh: number;
  price_micro_block_per_kwh: number;
  available_kwh: number;
  available_wh: number;
  oldest_credit_minted_at_ms: number;
  oldest_credit_age_seconds: number;
  rating: number | null;
}

export interface OfferPage {
  offers: Offer[];
  next_cursor: string | null;
}

export interface OfferFilters {
  energy_type?: EnergyType;
  jurisdiction?: string;
  max_price?: string;
  min_kwh?: string;
}

export interface ReceiptRef {
  chain: string;
  sequence: number;
  receipt_hash: string;
}

export type PurchaseStatus = "open" | "settled" | "revoked";

export interface Purchase {
  transaction_id: string;
  status: PurchaseStatus;
  buyer: string;
  provider_id: string;
  kwh_amount: number;
  amount_wh: number;
  price_per_kwh: number;
  price_micro_block_per_kwh: number;
  total_cost: number;
  total_cost_micro_block: number;
  credit_ids: string[];
  created_at_ms: number;
  settles_at_ms: number;
  settled_at_ms: number | null;
  receipt: ReceiptRef | null;
}

export interface Receipt {
  marketplace_id: string;
  chain: string;
  sequence: number;
  previous_hash: string;
  kind: string;
  transaction_id: string;
  buyer: string;
  provider_id: string;
  provider_owner: string;
  wh: number;
  price_micro_block_per_kwh: number;
  total_cost_micro_block: number;
  fee_micro_block: number;
  provider_amount_micro_block: number;
  credit_ids: string[];
  settled_at_ms: number;
  settled_by: string;
  receipt_hash: string;
  signature: string;
}

export interface Settlement {
  transaction_id: string;
  status: string;
  already_settled: boolean;
  receipt: Receipt;
}

export type CreditState = "available" | "reserved" | "held" | "retired" | "expired" | "revoked";

export interface Credit {
  credit_id: string;
  provider_id: string;
  meter_address: string;
  energy_type: EnergyType;
  jurisdiction: string;
  amount_kwh: number;
  amount_wh: number;
  interval_start_ms: number;
  interval_end_ms: number;
  state: CreditState;
  minted_at_ms: number;
  expires_at_ms: number;
  counter_wh: number;
  signature: string;
  reading_hash: string;
  holder: string | null;
  disputed_by: string | null;
}

export interface CreditPage {
  credits: Credit[];
  next_cursor: string | null;
}

// --- portfolio and carbon ------------------------------------------------------------------

export interface Equivalent {
  quantity: number;
  unit: string;
  g_co2_per_unit: number;
  source: string;
}

export interface CarbonOffset {
  scope: "account" | "provider" | "market";
  total_kg_co2: number;
  total_g_co2: number;
  equivalent_trees: number;
  bought_wh: Record<string, number>;
  wh_by_origin: {
    energy_type: string;
    jurisdiction: string | null;
    wh: number;
    g_co2_per_kwh: number;
    basis: string;
    grid_jurisdiction?: string | null;
    g_co2: number;
  }[];
  equivalents: Record<string, Equivalent>;
  factors_source: string;
}

export interface Portfolio {
  account: string;
  balance: number;
  stake: number;
  escrow: number;
  open_purchases: Purchase[];
  holdings: Credit[];
  holdings_next_cursor: string | null;
  purchase_history: Purchase[];
  purchase_history_next_cursor: string | null;
  providers: string[];
  earnings: number;
  sold_wh: number;
  carbon_offset: CarbonOffset;
}

export interface Certificate {
  certificate_id: string;
  status: "retired" | "revoked";
  credit_id: string;
  energy_wh: number;
  production_start_ms: number;
  production_end_ms: number;
  device_id: string;
  device_capacity_wh: number;
  provider_id: string;
  technology: string;
  jurisdiction: string;
  latitude: number;
  longitude: number;
  issued_at_ms: number;
  beneficiary: string;
  reporting_period_start_ms: number;
  reporting_period_end_ms: number;
  retired_by: string;
  retired_at_ms: number;
  reading_hash: string;
  reading_counter_wh: number;
  reading_timestamp_ms: number;
  reading_signature: string;
}

export interface Meter {
  meter_address: string;
  provider_id: string;
  public_key: string;
  active: boolean;
  topic: string;
  last_counter_wh: number | null;
  last_timestamp_ms: number | null;
  last_reading_hash: string | null;
  accepted_readings: number;
  rejections: Record<string, number>;
}

// --- disputes ---------------------------------------------------------------------------

export type DisputeStatus = "open" | "revoking" | "guilty" | "cleared";
export const DISPUTE_STATUSES: readonly DisputeStatus[] = ["open", "revoking", "guilty", "cleared"];
export type Severity = "minor" | "major" | "critical";
export const SEVERITIES: readonly Severity[] = ["minor", "major", "critical"];

export interface Dispute {
  dispute_id: string;
  status: DisputeStatus;
  subject: {
    kind: string;
    reading_hash: string | null;
    meter_address: string | null;
    window_start_ms: number | null;
    window_end_ms: number | null;
  };
  round: number;
  provider_id: string;
  provider_owner: string;
  flags: { flagged_by: string; reason: string; evidence: string[]; flagged_at_ms: number; bond_micro_block: number }[];
  bond: number;
  bond_micro_block: number;
  panel: string[];
  quorum: number;
  opened_at_ms: number;
  deadline_ms: number;
  votes: { validator: string; verdict: "guilty" | "cleared"; severity: Severity | null; voted_at_ms: number }[];
  severity: Severity | null;
  decided_by: "quorum" | "deadline" | null;
  resolved_at_ms: number | null;
  non_voters: string[];
  revocation: {
    slash_micro_block: number;
    stake_after_micro_block: number;
    refunded_micro_block: number;
    unrefunded_micro_block: number;
    escrow_refunded_micro_block: number;
    flagger_reward_micro_block: number;
    treasury_micro_block: number;
    revoked_credits: number;
    revoked_wh: number;
    complete: boolean;
    slash_receipt: ReceiptRef | null;
  } | null;
}

export interface DisputePage {
  disputes: Dispute[];
  next_cursor: string | null;
}

export type DisputeFilter =
  | { status: DisputeStatus }
  | { validator: string }
  | { flagger: string }
  | { provider_id: string };

// --- analytics ----------------------------------------------------------------------------

export interface ActivityBucket {
  start_ms: number;
  trades: number;
  traded_wh: number;
  volume_micro_block: number;
  settled_wh: number;
  revenue_micro_block: number;
  generated_wh: Record<string, number>;
  readings: number;
  carbon_g_co2: number;
}

export interface MarketActivity {
  bucket_ms: number;
  buckets: ActivityBucket[];
}

export interface TopProviders {
  window: "24h" | "7d" | "all";
  providers: TopProvider[];
}
