// The API's checks of amounts and names, mirrored so that a form says what is wrong before
// it signs anything (docs/api.md "Units"; chalicelib/domain/units.py and providers.py). The
// API checks again: these only save a round trip, they never decide alone.

/** Exact decimal text (no exponent): what the API converts without rounding. */
const DECIMAL = /^-?\d+(\.\d+)?$/;

export interface DecimalRule {
  /** Decimal places the unit allows: 3 for kWh, 6 for BLOCK and degrees. */
  decimals: number;
  /** The smallest value allowed, inclusive, as decimal text. */
  min?: string;
  /** Whether the minimum itself is refused (a capacity or a price must be more than 0). */
  minExclusive?: boolean;
  /** The largest value allowed, inclusive, as decimal text. */
  max?: string;
  /** What one step of the last decimal is called, for the message (Wh, micro-BLOCK). */
  smallest: string;
}

/** ``text`` scaled by 10^decimals as an exact integer, or null when it needs rounding. */
export function scaled(text: string, decimals: number): bigint | null {
  const value = text.trim();
  if (!DECIMAL.test(value)) return null;
  const negative = value.startsWith("-");
  const [whole = "0", fraction = ""] = value.replace("-", "").split(".");
  const significant = fraction.replace(/0+$/, "");
  if (significant.length > decimals) return null;
  const digits = BigInt(whole + significant.padEnd(decimals, "0"));
  return negative ? -digits : digits;
}

/** Why ``text`` is refused by ``rule``, in words; null when the API will take it. */
export function decimalProblem(text: string, rule: DecimalRule): string | null {
  const value = text.trim();
  if (value === "") return "required";
  if (!DECIMAL.test(value)) return "a plain decimal number, like 12.5 (no letters, no exponent)";
  const amount = scaled(value, rule.decimals);
  if (amount === null) return `at most ${rule.decimals} decimals: it would have to be rounded to a ${rule.smallest}`;
  if (rule.min !== undefined) {
    const min = scaled(rule.min, rule.decimals) ?? 0n;
    if (rule.minExclusive ? amount <= min : amount < min) {
      return rule.minExclusive ? `more than ${rule.min}` : `at least ${rule.min}`;
    }
  }
  if (rule.max !== undefined && amount > (scaled(rule.max, rule.decimals) ?? 0n)) return `at most ${rule.max}`;
  return null;
}

/** BLOCK as typed -> integer micro-BLOCK (the stake's unit on the wire). */
export function microBlockOf(text: string): number | null {
  const micro = scaled(text, 6);
  return micro === null ? null : Number(micro);
}

export const KWH: DecimalRule = { decimals: 3, min: "0", minExclusive: true, max: "1000000000", smallest: "Wh" };
export const PRICE: DecimalRule = { decimals: 6, min: "0", minExclusive: true, max: "1000", smallest: "micro-BLOCK" };
export const LATITUDE: DecimalRule = { decimals: 6, min: "-90", max: "90", smallest: "micro-degree" };
export const LONGITUDE: DecimalRule = { decimals: 6, min: "-180", max: "180", smallest: "micro-degree" };
/** The minimum provider stake (energy.getMarketInfo's min_stake) to a billion BLOCK. */
export function stakeRule(minStakeMicroBlock: number): DecimalRule {
  return { decimals: 6, min: String(minStakeMicroBlock / 1_000_000), max: "1000000000", smallest: "micro-BLOCK" };
}

// chalicelib/domain/providers.py: METER_ADDRESS and JURISDICTION.
export const METER_ADDRESS = /^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$/;
export const JURISDICTION = /^[A-Z]{2}(?:_[A-Z0-9]{1,3})?$/;
export const PUBLIC_KEY = /^(0x)?[0-9a-fA-F]{64}$/;
export const HASH = /^[0-9a-f]{64}$/;

export function textProblem(text: string, min: number, max: number): string | null {
  const length = [...text].length;
  if (length < min) return min === 1 ? "required" : `at least ${min} characters`;
  if (length > max) return `at most ${max} characters (now ${length})`;
  return null;
}
