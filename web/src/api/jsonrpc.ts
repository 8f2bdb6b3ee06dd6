// JSON-RPC 2.0 over HTTP POST (docs/api.md), with every failure turned into words.

import type { Json } from "./canonical";
import type { Params } from "./signing";

/** One field the server refused (data.errors of -32602 invalid_params). */
export interface FieldError {
  field: string;
  message: string;
}

/** Plain-language hints for the stable data.reason strings of docs/api.md "Errors". */
const REASON_HINTS: Record<string, string> = {
  not_authenticated: "The signature does not verify against this account's key.",
  replayed_request: "This request was already used once; it was not repeated.",
  stale_request: "This computer's clock differs from the server's by more than the signing window.",
  not_authorised: "This account may not do that.",
  not_found: "There is no such account, provider or meter.",
  already_exists: "That name or meter is already taken.",
  insufficient_balance: "The balance does not cover the amount.",
  insufficient_stake: "The stake is below the minimum.",
  invalid_params: "Some fields were refused; see below.",
  invalid_cursor: "The list moved on; reload it from the start.",
  price_above_limit: "The provider's price is above your maximum.",
  insufficient_energy: "The provider has less energy on sale than asked.",
  provider_not_selling: "The provider is paused or suspended.",
  not_on_panel: "Only the validators drawn for this dispute's panel vote on it.",
  party_to_dispute: "A party to the dispute (the provider's owner, a flagger, a buyer of its credits) may not judge it.",
  open_obligations: "Open purchases or disputes still rely on this stake.",
  invalid_state: "That does not apply to the record as it is now.",
  invalid_flag: "The flag's subject, reason or evidence is outside the bounds of energy.flagDispute.",
  reading_rejected: "The meter reading broke a rule of the meter protocol.",
  purchase_too_large: "One purchase takes at most 90 credits: buy the rest in another purchase.",
  transaction_too_large: "The call would change more records than one atomic write holds.",
  already_voted: "This validator has already voted on the dispute; a vote is final.",
  dispute_closed: "The dispute is already decided.",
  voting_closed: "The dispute's voting deadline has passed.",
  panel_unavailable: "Too few validators who are not a party to the dispute can judge it now.",
  too_many_disputes: "The provider already has 8 open disputes: flag one of their subjects instead.",
  credits_disputed: "An open dispute holds these credits: they settle or retire once it is resolved.",
  concurrent_update: "Someone else changed the same records; trying again is safe.",
  storage_busy: "The marketplace is busy; nothing changed, and trying again shortly is safe.",
};

/** A JSON-RPC error answer, or a failure to get one, with what a person needs to read. */
export class RpcError extends Error {
  override name = "RpcError";
  readonly code: number;
  readonly data: Record<string, unknown> | undefined;
  readonly method: string;

  constructor(method: string, code: number, message: string, data?: Record<string, unknown>) {
    super(message);
    this.method = method;
    this.code = code;
    this.data = data;
  }

  /** data.reason: the stable string to branch on (not_found, insufficient_balance, ...). */
  get reason(): string | undefined {
    const reason = this.data?.["reason"];
    return typeof reason === "string" ? reason : undefined;
  }

  get fieldErrors(): FieldError[] {
    const errors = this.data?.["errors"];
    if (!Array.isArray(errors)) return [];
    return errors.flatMap((entry: unknown) =>
      typeof entry === "object" && entry !== null && "field" in entry && "message" in entry
        ? [{ field: String(entry.field), message: String(entry.message) }]
        : [],
    );
  }

  /** Whether the same call may succeed if sent again (the API, not the request, failed). */
  get retryable(): boolean {
    return [TRANSPORT_ERROR, BAD_ANSWER, -32603, 5001, 5002].includes(this.code);
  }

  get hint(): string | undefined {
    return this.reason === undefined ? undefined : REASON_HINTS[this.reason];
  }

  /** One line: the message, then code and reason, then the refused fields. */
  describe(): string {
    const reason = this.reason === undefined ? "" : `, ${this.reason}`;
    const fields = this.fieldErrors.map((error) => `${error.field}: ${error.message}`).join("; ");
    return `${this.message} (error ${this.code}${reason})${fields ? ` — ${fields}` : ""}`;
  }
}

/** Codes of failures that never reached the API (not JSON-RPC codes: those are integers >= -32768). */
export const TRANSPORT_ERROR = -1;
export const BAD_ANSWER = -2;

interface RpcAnswer {
  jsonrpc?: unknown;
  id?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown; data?: unknown };
}

export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

export class JsonRpcClient {
  readonly url: string;
  #nextId = 1;
  readonly #fetch: Fetch;
  readonly #timeoutMs: number;

  constructor(url: string, options: { fetch?: Fetch; timeoutMs?: number } = {}) {
    this.url = url;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#timeoutMs = options.timeoutMs ?? 15_000;
  }

  /** Call one method; resolve with its result or reject with an RpcError. */
  async call<T>(method: string, params?: Params | Json[]): Promise<T> {
    const id = this.#nextId++;
    const body = JSON.stringify({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) });
    let response: Response;
    try {
      response = await this.#fetch(this.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      const why = error instanceof DOMException && error.name === "TimeoutError"
        ? `no answer within ${this.#timeoutMs / 1000} s`
        : "the network request failed";
      throw new RpcError(method, TRANSPORT_ERROR, `The marketplace API could not be reached: ${why}`);
    }
    let answer: RpcAnswer;
    try {
      answer = (await response.json()) as RpcAnswer;
    } catch {
      throw new RpcError(
        method,
        BAD_ANSWER,
        `The marketplace API answered HTTP ${response.status} ${response.statusText || ""}`.trim() +
          " without a JSON-RPC answer",
      );
    }
    if (answer.error !== undefined) {
      const { code, message, data } = answer.error;
      throw new RpcError(
        method,
        typeof code === "number" ? code : BAD_ANSWER,
        typeof message === "string" ? message : "The API refused the call",
        typeof data === "object" && data !== null ? (data as Record<string, unknown>) : undefined,
      );
    }
    if (!("result" in answer) || answer.id !== id) {
      throw new RpcError(method, BAD_ANSWER, "The marketplace API sent an answer that is not JSON-RPC 2.0");
    }
    return answer.result as T;
  }
}
