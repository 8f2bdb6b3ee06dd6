// The marketplace's energy.* methods the dashboard calls, typed; signed calls through the
// account's key in this browser (never sent: only its signatures are).

import { JsonRpcClient } from "./jsonrpc";
import { signParams, type Params, type SigningKey } from "./signing";
import type {
  Account,
  MarketInfo,
  MarketStats,
  PriceHistory,
  Provider,
  ProviderFilters,
  ProviderPage,
} from "./types";

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
    const params: Params = {};
    for (const [name, value] of Object.entries(filters)) {
      if (value !== undefined && value !== "") params[name] = value;
    }
    if (cursor !== undefined) params["cursor"] = cursor;
    return this.rpc.call("energy.listProviders", params);
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
}
