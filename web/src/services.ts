// The page's single instances: the API client, the live feed, the key store.

import { JsonRpcClient } from "./api/jsonrpc";
import { KeyStore } from "./api/keystore";
import { LiveFeed } from "./api/live";
import { MarketApi } from "./api/market";
import { RPC_URL, WS_URL } from "./config";

export const market = new MarketApi(new JsonRpcClient(RPC_URL));
export const live = new LiveFeed(WS_URL);
export const keys = new KeyStore();
