// A console hook for checking this browser's request signing against docs/api.md's worked
// example: window.energyMarketplace.signing.checkVector(vector). Pure functions only: it
// cannot reach the keys this browser holds.

import { canonicalJson, type Json } from "./api/canonical";
import { toHex } from "./api/hex";
import { requestMessage, requestMessageText, SigningKey, type Params } from "./api/signing";

export interface SigningVector {
  seed_hex: string;
  marketplace_id: string;
  method: string;
  account: string;
  nonce: string;
  timestamp: number;
  params: Params;
}

export const signing = {
  canonicalJson: (value: Json) => canonicalJson(value),
  /** What this browser computes from a vector's inputs: the message, its hex, the key, the signature. */
  checkVector(vector: SigningVector) {
    const key = SigningKey.fromSeedHex(vector.seed_hex);
    const request = {
      marketplaceId: vector.marketplace_id,
      method: vector.method,
      params: vector.params,
      account: vector.account,
      nonce: vector.nonce,
      timestamp: vector.timestamp,
    };
    const message = requestMessage(request);
    return {
      public_key_hex: key.publicKeyHex,
      message: requestMessageText(request),
      message_hex: toHex(message),
      signature: key.sign(message),
    };
  },
};
