// The browser's own account keys: generated or imported here, kept in this browser's
// localStorage for this origin only, never sent to the marketplace (only signatures are).

import { SigningKey } from "./signing";

const STORAGE_KEY = "energy-marketplace.keys.v1";
const ACCOUNT_NAME = /^[a-z0-9](?:[a-z0-9._-]{1,62})[a-z0-9]$/;

export interface StoredKey {
  account: string;
  seed_hex: string;
  public_key: string;
  created_at_ms: number;
}

interface KeyRing {
  active: string | null;
  keys: StoredKey[];
}

/** Why an account name is refused, mirroring energy.createAccount's rule; null when it is fine. */
export function accountNameProblem(name: string): string | null {
  if (name.length < 3 || name.length > 64) return "3 to 64 characters";
  if (!ACCOUNT_NAME.test(name)) {
    return "letters a-z, digits and . _ - only, starting and ending with a letter or digit";
  }
  if (name.includes("..")) return "no two dots in a row";
  if (name === "operator") return "the name operator is reserved";
  return null;
}

function read(storage: Storage): KeyRing {
  try {
    const ring = JSON.parse(storage.getItem(STORAGE_KEY) ?? "null") as KeyRing | null;
    if (ring !== null && Array.isArray(ring.keys)) return ring;
  } catch {
    // A damaged entry is treated as empty; it is overwritten only when a key is saved.
  }
  return { active: null, keys: [] };
}

export class KeyStore {
  readonly #storage: Storage;

  constructor(storage: Storage = localStorage) {
    this.#storage = storage;
  }

  list(): StoredKey[] {
    return read(this.#storage).keys;
  }

  active(): StoredKey | undefined {
    const ring = read(this.#storage);
    return ring.keys.find((key) => key.account === ring.active);
  }

  signingKey(account: string): SigningKey | undefined {
    const stored = this.list().find((key) => key.account === account);
    return stored === undefined ? undefined : SigningKey.fromSeedHex(stored.seed_hex);
  }

  /** Keep ``key`` for ``account`` and make it the active one. Never replaces another key. */
  save(account: string, key: SigningKey): StoredKey {
    const ring = read(this.#storage);
    const existing = ring.keys.find((stored) => stored.account === account);
    if (existing !== undefined && existing.public_key !== key.publicKeyHex) {
      throw new Error(`this browser already holds another key for ${account}; remove it first`);
    }
    const stored: StoredKey = existing ?? {
      account,
      seed_hex: key.seedHex(),
      public_key: key.publicKeyHex,
      created_at_ms: Date.now(),
    };
    if (existing === undefined) ring.keys.push(stored);
    ring.active = account;
    this.#storage.setItem(STORAGE_KEY, JSON.stringify(ring));
    return stored;
  }

  setActive(account: string): void {
    const ring = read(this.#storage);
    if (ring.keys.some((key) => key.account === account)) {
      ring.active = account;
      this.#storage.setItem(STORAGE_KEY, JSON.stringify(ring));
    }
  }

  remove(account: string): void {
    const ring = read(this.#storage);
    ring.keys = ring.keys.filter((key) => key.account !== account);
    if (ring.active === account) ring.active = ring.keys[0]?.account ?? null;
    this.#storage.setItem(STORAGE_KEY, JSON.stringify(ring));
  }
}

/** The backup file: the seed as 64 hex digits and a line feed (the CLI's ``<name>.key``). */
export function backupFileText(stored: StoredKey): string {
  return `${stored.seed_hex}\n`;
}
