// Canonical JSON (RFC 8785, JCS) as docs/api.md "Authentication" defines it for signed requests.
//
// Keys sorted by UTF-16 code units, no white space, strings with the minimal JSON
// escapes, integers in plain decimal, other numbers as the shortest plain decimal:
// no exponent, no trailing zeros (the server's chalicelib/domain/signing.py is the
// reference). JCS itself writes 1e21 and 1e-7 with an exponent; the marketplace does
// not, so numbers are expanded here. Sending decimals as strings ("0.08") avoids the
// question entirely, and the dashboard does so for every amount it sends.

export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json | undefined };

export class CanonicalisationError extends Error {
  override name = "CanonicalisationError";
}

/** A finite number as the shortest plain decimal that reads back as the same number. */
export function canonicalNumber(value: number | bigint): string {
  if (typeof value === "bigint") return value.toString();
  if (!Number.isFinite(value)) throw new CanonicalisationError("a number must be finite");
  if (Object.is(value, -0)) return "0";
  // String(value) is the shortest round-trip form; it uses an exponent outside [1e-7, 1e21).
  const shortest = String(value);
  const match = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(shortest);
  if (match === null) return shortest;
  const [, sign, lead, fraction = "", exponentText] = match;
  const digits = `${lead}${fraction}`;
  const point = 1 + Number(exponentText); // where the decimal point goes in `digits`
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function canonicalString(text: string): string {
  if (!text.isWellFormed()) throw new CanonicalisationError("a string holds a lone surrogate");
  // JSON.stringify escapes exactly ", \, \b \f \n \r \t and \u00xx (lower-case) for the
  // other control characters, and nothing else: the minimal escapes JCS asks for.
  return JSON.stringify(text);
}

function canonical(value: Json | undefined, inArray: boolean): string | undefined {
  if (value === undefined) return inArray ? "null" : undefined; // as JSON.stringify sends it
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "number" || typeof value === "bigint") return canonicalNumber(value);
  if (typeof value === "string") return canonicalString(value);
  if (Array.isArray(value)) return `[${value.map((item) => canonical(item, true)).join(",")}]`;
  if (typeof value === "object") {
    // Array.prototype.sort compares UTF-16 code units: the order JCS specifies.
    const members = Object.keys(value)
      .sort()
      .flatMap((key) => {
        const text = canonical(value[key], false);
        return text === undefined ? [] : [`${canonicalString(key)}:${text}`];
      });
    return `{${members.join(",")}}`;
  }
  throw new CanonicalisationError(`cannot canonicalise a ${typeof value}`);
}

/** The canonical JSON text of a value (encode it as UTF-8 to sign it). */
export function canonicalJson(value: Json): string {
  const text = canonical(value, false);
  if (text === undefined) throw new CanonicalisationError("undefined has no JSON form");
  return text;
}
