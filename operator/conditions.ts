// Conditions in the metav1.Condition shape: lastTransitionTime moves only when
// the status changes, so re-computing the same world writes nothing.
import type { Condition } from "../crds/schema.js";
import type { ReasonName } from "../crds/conditions.js";

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
export function mergeConditions(current: readonly Condition[] | undefined, desired: readonly DesiredCondition[], generation: number, now: Date): Condition[] {
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
      lastTransitionTime: previous && previous.status === d.status ? previous.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, "Z"),
    });
  }
  return out;
}
