// Numbers for people: energy from Wh, money from micro-BLOCK, prices per kWh, times.

const MICRO = 1_000_000;

function decimal(value: number, maximumFractionDigits: number, minimumFractionDigits = 0): string {
  return value.toLocaleString("en-US", { maximumFractionDigits, minimumFractionDigits });
}

export function integer(value: number): string {
  return decimal(value, 0);
}

/** Energy in the largest unit that keeps the number readable: Wh, kWh, MWh or GWh. */
export function energy(wh: number): string {
  const magnitude = Math.abs(wh);
  if (magnitude >= 1e9) return `${decimal(wh / 1e9, 3)} GWh`;
  if (magnitude >= 1e6) return `${decimal(wh / 1e6, 3)} MWh`;
  if (magnitude >= 1e3) return `${decimal(wh / 1e3, 2)} kWh`;
  return `${integer(wh)} Wh`;
}

export function block(microBlock: number): string {
  return `${decimal(microBlock / MICRO, 6)} BLOCK`;
}

/** A price in micro-BLOCK per kWh as BLOCK per kWh. */
export function price(microBlockPerKwh: number | null | undefined): string {
  if (microBlockPerKwh === null || microBlockPerKwh === undefined) return "—";
  return `${decimal(microBlockPerKwh / MICRO, 6, 2)} BLOCK/kWh`;
}

/** A price in micro-BLOCK per kWh as a number of BLOCK (the unit goes beside it). */
export function blockPerKwh(microBlockPerKwh: number | null | undefined, digits = 6): string {
  if (microBlockPerKwh === null || microBlockPerKwh === undefined) return "—";
  return decimal(microBlockPerKwh / MICRO, digits, 2);
}

/** CO2 from grams, in t once there is a tonne, else in kg. */
export function co2(grams: number): string {
  if (Math.abs(grams) >= 1e6) return `${decimal(grams / 1e6, 3)} t`;
  return `${decimal(grams / 1e3, 3)} kg`;
}

export function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : `${decimal(value, 1)} %`;
}

export function time(ms: number, withSeconds = false): string {
  return new Date(ms).toLocaleTimeString("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    ...(withSeconds ? { second: "2-digit" } : {}),
  });
}

/** "24 h", or what 24 buckets are on a market whose buckets are not hours (a local one). */
export function windowOf(bucketMs: number, buckets = 24): string {
  if (bucketMs === 3_600_000) return `${buckets} h`;
  const minutes = (bucketMs * buckets) / 60_000;
  return minutes >= 60 && minutes % 60 === 0 ? `${minutes / 60} h` : `${decimal(minutes, 1)} min`;
}

export function bucketName(bucketMs: number): string {
  if (bucketMs === 3_600_000) return "hour";
  if (bucketMs === 60_000) return "minute";
  return `${decimal(bucketMs / 1000, 0)} s`;
}

export function titleCase(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
