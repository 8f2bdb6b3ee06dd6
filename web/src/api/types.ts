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
