// Kubernetes resource quantities (500m, 2, 1.5Gi, 1e3), compared by value.
// The API server stores a quantity in its canonical form ("0.5" reads back as
// "500m", "1024Mi" as "1Gi"), so the operator's "already applied?" test
// compares the values, not the text.

const quantityPattern = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$/;

const decimalSuffix: Record<string, number> = { m: -3, "": 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const binarySuffix: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };

/** A quantity's exact value: mantissa × 10^exp10 × 2^exp2. */
interface Exact {
  mantissa: bigint;
  exp10: number;
  exp2: number;
}

export function parseQuantity(text: string | number): Exact | undefined {
  const match = quantityPattern.exec(String(text).trim());
  if (!match) return undefined;
  const [, sign = "", number = "", exponent, suffix = ""] = match;
  const [whole = "", fraction = ""] = number.split(".");
  const mantissa = BigInt(`${sign}${whole}${fraction}` || "0");
  const exp10 = -fraction.length + (exponent !== undefined ? Number(exponent) : (decimalSuffix[suffix] ?? 0));
  // Beyond any real resource: not compared by value (an exponent of a million would cost a million-digit number).
  if (whole.length + fraction.length > 40 || Math.abs(exp10) > 40) return undefined;
  return { mantissa, exp10, exp2: binarySuffix[suffix] ?? 0 };
}

/** A quantity as a whole number (of bytes), rounded down; undefined when it is not one or beyond 2^53. */
export function quantityInteger(text: string | number): number | undefined {
  const q = parseQuantity(text);
  if (!q) return undefined;
  const scaled = q.mantissa * 2n ** BigInt(q.exp2);
  const value = q.exp10 >= 0 ? scaled * 10n ** BigInt(q.exp10) : scaled / 10n ** BigInt(-q.exp10);
  return value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}

/** Whether two quantities (as written or as the API server returns them) have the same value. */
export function sameQuantity(a: unknown, b: unknown): boolean {
  if ((typeof a !== "string" && typeof a !== "number") || (typeof b !== "string" && typeof b !== "number")) return false;
  const x = parseQuantity(a);
  const y = parseQuantity(b);
  if (!x || !y) return false;
  // Scale both to integers: multiply by 10^-min(exp10) and 2^-min(exp2).
  const low10 = Math.min(x.exp10, y.exp10);
  const low2 = Math.min(x.exp2, y.exp2);
  const scaled = (q: Exact) => q.mantissa * 10n ** BigInt(q.exp10 - low10) * 2n ** BigInt(q.exp2 - low2);
  return scaled(x) === scaled(y);
}
