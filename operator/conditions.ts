// Conditions in the metav1.Condition shape: lastTransitionTime moves only when
// the status changes, so re-computing the same world writes nothing.
import { isDeepStrictEqual } from "node:util";
import type { Condition } from "../crds/schema.js";
import type { ReasonName } from "../crds/conditions.js";

/** A timestamp as the API server writes it (RFC 3339, whole seconds), so comparisons with status match. */
export function rfc3339(date: Date | string): string {
  return new Date(date).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Whether two statuses are the same as the API server would store them (absent fields and key order aside). */
export function sameStatus(live: unknown, desired: unknown): boolean {
  return isDeepStrictEqual(JSON.parse(JSON.stringify(live ?? {})), JSON.parse(JSON.stringify(desired ?? {})));
}

export interface DesiredCondition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: ReasonName;
  message: string;
}

/**
 * Merges desired conditions into the current ones. kstatus' Reconciling and
 * Stalled are present only while True: a desired False removes them.
 */
export function mergeConditions(
  current: readonly Condition[] | undefined,
  desired: readonly DesiredCondition[],
  generation: number,
  now: Date,
): Condition[] {
  const byType = new Map((current ?? []).map((c) => [c.type, c]));
  const out: Condition[] = [];
  for (const d of desired) {
    if ((d.type === "Reconciling" || d.type === "Stalled") && d.status !== "True") continue;
    const previous = byType.get(d.type);
    out.push({
      type: d.type,
      status: d.status,
      reason: d.reason,
      message: d.message,
      observedGeneration: generation,
      lastTransitionTime: previous && previous.status === d.status ? previous.lastTransitionTime : rfc3339(now),
    });
  }
  return out;
}

/**
 * Replaces some conditions and keeps the others as they are (a failure that
 * says only what blocked the reconcile must not erase what was known).
 */
export function replaceConditions(
  current: readonly Condition[] | undefined,
  replacements: readonly DesiredCondition[],
  generation: number,
  now: Date,
): Condition[] {
  const replaced = new Set(replacements.map((r) => r.type));
  return [...(current ?? []).filter((c) => !replaced.has(c.type)), ...mergeConditions(current, replacements, generation, now)];
}
