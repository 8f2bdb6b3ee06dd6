// The marketplace's energy.* methods the dashboard calls, typed; signed calls through the
// account's key in this browser (never sent: only its signatures are).

import { JsonRpcClient } from "./jsonrpc";
import { eventsToken, signParams, type Params, type SigningKey } from "./signing";
import type {
  Account,
  CarbonOffset,
  Certificate,
  Dispute,
  DisputeFilter,
  DisputePage,
  MarketActivity,
  MarketInfo,
  MarketStats,
  Meter,
  OfferFilters,
  OfferPage,
  PriceHistory,
  Portfolio,
  Provider,
  ProviderFilters,
  ProviderPage,
  Purchase,
  Settlement,
  Severity,
  TopProviders,
} from "./types";

/** What energy.registerProvider takes, as the form holds it: amounts as exact decimal strings. */
export interface Registration {
  owner: string;
  display_name: string;
  energy_type: string;
  jurisdiction: string;
  latitude: string;
  longitude: string;
  capacity_kwh: string;
  price_per_kwh: string;
  /** micro-BLOCK, an integer (the API's unit for stakes). */
  stake: number;
  meter_address: string;
  meter_public_key: string;
}

/** The subject of a flag: a credit, a reading, or a meter over a window (docs/api.md). */
export type FlagSubject =
  | { credit_id: string }
  | { reading_hash: string }
  | { meter_address: string; window_start_ms: number; window_end_ms: number };

function withoutEmpty(values: object): Params {
  const params: Params = {};
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== "") params[name] = value as Params[string];
  }
  return params;
}

export class MarketApi {
  readonly rpc: JsonRpcClient;
  #info: Promise<MarketInfo> | undefined;

  constructor(rpc: JsonRpcClient) {
    this.rpc = rpc;
  }

  /** Marketplace id, signing domain and window: read once, then kept (a failure is retried). */
  marketInfo(): Promise<MarketInfo> {
    this.#info ??= this.rpc.call<MarketInfo>("energy.getMarketInfo").catch((error: unknown) => {
      this.#info = undefined;
      throw error;
    });
    return this.#info;
  }

  getMarketStats(): Promise<MarketStats> {
    return this.rpc.call("energy.getMarketStats");
  }

  getPriceHistory(hours = 24): Promise<PriceHistory> {
    return this.rpc.call("energy.getPriceHistory", { hours });
  }

  listProviders(filters: ProviderFilters, cursor?: string): Promise<ProviderPage> {
    return this.rpc.call("energy.listProviders", withoutEmpty({ ...filters, cursor }));
  }

  getProvider(providerId: string): Promise<Provider> {
    return this.rpc.call("energy.getProvider", { provider_id: providerId });
  }

  getAccount(name: string): Promise<Account> {
    return this.rpc.call("energy.getAccount", { name });
  }

  /** A call signed by ``account`` with ``key``, bound to this marketplace, method and params. */
  async signedCall<T>(method: string, params: Params, account: string, key: SigningKey): Promise<T> {
    const info = await this.marketInfo();
    return this.rpc.call<T>(
      method,
      signParams(key, { marketplaceId: info.marketplace_id, method, params, account }),
    );
  }

  /** Open an account for ``name`` with this browser's key (signed by the new account itself). */
  createAccount(name: string, key: SigningKey): Promise<Account> {
    return this.signedCall("energy.createAccount", { name, public_key: key.publicKeyHex }, name, key);
  }

  // --- providers and meters ------------------------------------------------------------

  registerProvider(registration: Registration, key: SigningKey): Promise<Provider> {
    return this.signedCall("energy.registerProvider", { ...registration }, registration.owner, key);
  }

  getMeter(meterAddress: string): Promise<Meter> {
    return this.rpc.call("energy.getMeter", { meter_address: meterAddress });
  }

  // --- trading -----------------------------------------------------------------------------

  getOffers(filters: OfferFilters, cursor?: string): Promise<OfferPage> {
    return this.rpc.call("energy.getOffers", withoutEmpty({ ...filters, cursor }));
  }

  /** Buy at no more than ``maxPricePerKwh``; ``idempotencyKey`` makes a retry find the first purchase. */
  purchaseEnergy(
    buyer: string,
    key: SigningKey,
    order: { provider_id: string; kwh_amount: string; max_price_per_kwh: string; idempotency_key: string },
  ): Promise<Purchase> {
    return this.signedCall("energy.purchaseEnergy", { ...order }, buyer, key);
  }

  getPurchase(transactionId: string): Promise<Purchase> {
    return this.rpc.call("energy.getPurchase", { transaction_id: transactionId });
  }

  settle(buyer: string, key: SigningKey, transactionId: string): Promise<Settlement> {
    return this.signedCall("energy.settle", { transaction_id: transactionId }, buyer, key);
  }

  // --- portfolio -----------------------------------------------------------------------------

  getPortfolio(account: string): Promise<Portfolio> {
    return this.rpc.call("energy.getPortfolio", { account });
  }

  /** The CO2 avoided by what ``account`` bought; without one, by the whole market. */
  getCarbonOffset(account?: string): Promise<CarbonOffset> {
    return this.rpc.call("energy.getCarbonOffset", account === undefined ? {} : { account });
  }

  retireCredits(
    holder: string,
    key: SigningKey,
    claim: { credit_ids: string[]; beneficiary: string; reporting_period_start_ms: number; reporting_period_end_ms: number },
  ): Promise<{ certificates: Certificate[] }> {
    return this.signedCall("energy.retireCredits", { ...claim }, holder, key);
  }

  getCertificate(certificateId: string): Promise<Certificate> {
    return this.rpc.call("energy.getCertificate", { certificate_id: certificateId });
  }

  // --- disputes ------------------------------------------------------------------------------

  getDisputes(filter: DisputeFilter, cursor?: string): Promise<DisputePage> {
    return this.rpc.call("energy.getDisputes", withoutEmpty({ ...filter, cursor }));
  }

  getDispute(disputeId: string): Promise<Dispute> {
    return this.rpc.call("energy.getDispute", { dispute_id: disputeId });
  }

  flagDispute(
    flagger: string,
    key: SigningKey,
    flag: FlagSubject & { reason: string; evidence: string[] },
  ): Promise<Dispute> {
    return this.signedCall("energy.flagDispute", { ...flag }, flagger, key);
  }

  voteOnDispute(
    validator: string,
    key: SigningKey,
    vote: { dispute_id: string; verdict: "guilty" | "cleared"; severity?: Severity },
  ): Promise<Dispute> {
    return this.signedCall("energy.voteOnDispute", withoutEmpty(vote), validator, key);
  }

  resolveDispute(disputeId: string): Promise<Dispute> {
    return this.rpc.call("energy.resolveDispute", { dispute_id: disputeId });
  }

  // --- analytics -----------------------------------------------------------------------------

  getMarketActivity(hours: number, daily: boolean): Promise<MarketActivity> {
    return this.rpc.call("energy.getMarketActivity", { hours, daily });
  }

  getPriceHistoryOf(hours: number, scope: { energy_type?: string; jurisdiction?: string }): Promise<PriceHistory> {
    return this.rpc.call("energy.getPriceHistory", withoutEmpty({ hours, ...scope }));
  }

  getTopProviders(window: "24h" | "7d" | "all", limit = 10): Promise<TopProviders> {
    return this.rpc.call("energy.getTopProviders", { window, limit });
  }

  // --- live ----------------------------------------------------------------------------------

  /** A token that lets this browser's WebSocket read ``account``'s private topic for ``lifetimeMs``. */
  async eventsToken(account: string, key: SigningKey, lifetimeMs = 50 * 60_000): Promise<string> {
    const info = await this.marketInfo();
    return eventsToken(key, account, info.marketplace_id, Date.now() + lifetimeMs);
  }
}
