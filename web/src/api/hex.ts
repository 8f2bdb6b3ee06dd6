// Hex encoding of bytes, the form keys and signatures take on the wire.

export function toHex(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += byte.toString(16).padStart(2, "0");
  return text;
}

/** Bytes from hex digits (an optional 0x prefix); throws on anything else. */
export function fromHex(text: string): Uint8Array {
  const digits = text.trim().replace(/^0x/i, "");
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits)) {
    throw new Error("not hex digits");
  }
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
