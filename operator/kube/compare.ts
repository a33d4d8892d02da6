// Whether an object on the server already carries everything we would apply.
// The server adds defaults and fields of other managers, so the test is "is
// the desired object a subset of the live one", not equality. It keeps steady
// state free of API writes while any edit to a field we own is still seen (and
// repaired by the next apply).
import type { KubeObject } from "../domain/render.js";
import { sameQuantity } from "./quantity.js";

export function alreadyApplied(desired: KubeObject, live: Record<string, unknown>): boolean {
  const { stringData, ...rest } = desired as KubeObject & { stringData?: Record<string, string> };
  if (stringData) {
    const data = (live.data ?? {}) as Record<string, string>;
    for (const [key, value] of Object.entries(stringData)) {
      if (data[key] !== Buffer.from(value, "utf8").toString("base64")) return false;
    }
  }
  return isSubset(rest, live);
}

/** `quantities`: below a container's `resources`, where the server returns quantities in canonical form. */
export function isSubset(desired: unknown, live: unknown, quantities = false): boolean {
  if (desired === undefined) return true;
  if (desired === null || typeof desired !== "object") return desired === live || (quantities && sameQuantity(desired, live));
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return false;
    return desired.every((item, i) => isSubset(item, live[i], quantities));
  }
  if (live === null || typeof live !== "object" || Array.isArray(live)) return false;
  return Object.entries(desired as Record<string, unknown>).every(([key, value]) =>
    isSubset(value, (live as Record<string, unknown>)[key], quantities || key === "resources"),
  );
}
