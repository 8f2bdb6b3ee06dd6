// Request signing exactly as docs/api.md "Authentication" specifies: the domain line, then
// the canonical JSON of {account, marketplace, method, nonce, params, timestamp}, signed
// with the account's Ed25519 key (RFC 8032). @noble/ed25519 signs; @noble/hashes gives it
// SHA-512 synchronously, so signing works in any page, secure context or not.

import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { canonicalJson, type Json } from "./canonical";
import { fromHex, toHex } from "./hex";

ed.hashes.sha512 = sha512;

/** The signed message's first line (energy.getMarketInfo's request_signing_domain). */
export const REQUEST_SIGNING_DOMAIN = "energy-marketplace/rpc-request/v1";

export type Params = { [key: string]: Json | undefined };

export interface Auth {
  account: string;
  nonce: string;
  timestamp: number;
  signature: string;
}

export interface RequestToSign {
  marketplaceId: string;
  method: string;
  params: Params;
  account: string;
  nonce: string;
  timestamp: number;
}

/** The canonical text of the signed object (the message without its domain line). */
export function requestMessageText(request: RequestToSign): string {
  const { auth: _ignored, ...params } = request.params;
  return `${REQUEST_SIGNING_DOMAIN}\n${canonicalJson({
    account: request.account,
    marketplace: request.marketplaceId,
    method: request.method,
    nonce: request.nonce,
    params,
    timestamp: request.timestamp,
  })}`;
}

/** The exact bytes an account signs to authorise one call. */
export function requestMessage(request: RequestToSign): Uint8Array {
  return new TextEncoder().encode(requestMessageText(request));
}

/** An account's signing key: the 32-byte Ed25519 seed, which never leaves this browser. */
export class SigningKey {
  readonly #seed: Uint8Array;
  readonly publicKeyHex: string;

  private constructor(seed: Uint8Array) {
    if (seed.length !== 32) throw new Error("an Ed25519 seed is 32 bytes (64 hex digits)");
    this.#seed = seed;
    this.publicKeyHex = toHex(ed.getPublicKey(seed));
  }

  static generate(): SigningKey {
    return new SigningKey(ed.utils.randomSecretKey());
  }

  static fromSeedHex(seedHex: string): SigningKey {
    return new SigningKey(fromHex(seedHex));
  }

  /** The seed as 64 hex digits: what a backup holds (the CLI's `<name>.key` format). */
  seedHex(): string {
    return toHex(this.#seed);
  }

  /** Hex of the 64-byte Ed25519 signature of ``message``. */
  sign(message: Uint8Array): string {
    return toHex(ed.sign(message, this.#seed));
  }
}

/** 24 characters of A-Z a-z 0-9 _ - from the browser's CSPRNG: a nonce never used before. */
export function newNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/** ``params`` plus the ``auth`` member that authorises this one call. */
export function signParams(
  key: SigningKey,
  request: Omit<RequestToSign, "nonce" | "timestamp"> & { nonce?: string; timestamp?: number },
): Params {
  const nonce = request.nonce ?? newNonce();
  const timestamp = request.timestamp ?? Math.floor(Date.now() / 1000);
  const message = requestMessage({ ...request, nonce, timestamp });
  const auth: Auth = { account: request.account, nonce, timestamp, signature: key.sign(message) };
  return { ...request.params, auth: { ...auth } };
}

/** The first line of what an account signs to read its private topic (docs/events.md). */
export const EVENTS_TOKEN_DOMAIN = "energy-marketplace/events-token/v1";

/** ``<account>.<expires_ms>.<signature hex>``: lets a WebSocket read ``account:<name>`` until ``expiresMs``. */
export function eventsToken(key: SigningKey, account: string, marketplaceId: string, expiresMs: number): string {
  const expires = Math.floor(expiresMs);
  const text = `${EVENTS_TOKEN_DOMAIN}\n${canonicalJson({ account, expires_ms: expires, marketplace: marketplaceId })}`;
  return `${account}.${expires}.${key.sign(new TextEncoder().encode(text))}`;
}
