// Kubernetes Events for meaningful transitions (what `kubectl describe`
// shows): a condition changing status, a credential version issued. Never on
// an unchanged world, so steady state writes nothing.
import { apiVersion, type Condition, type SmtpDomain, type SupportAddress } from "../crds/schema.js";
import type { Cluster } from "./kube/cluster.js";

export interface Involved {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid: string;
}

/** The involvedObject reference for one of our resources. */
export function involved(object: SmtpDomain | SupportAddress): Involved {
  const { name, namespace, uid } = object.metadata;
  // Derived from the shape, not from the cached object's apiVersion/kind, which a list may omit.
  return { apiVersion, kind: "address" in object.spec ? "SupportAddress" : "SmtpDomain", name: name!, namespace: namespace!, uid: uid! };
}

export async function recordEvent(
  cluster: Cluster,
  involved: Involved,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
): Promise<void> {
  const now = new Date().toISOString();
  await cluster.write(
    "POST",
    `/api/v1/namespaces/${encodeURIComponent(involved.namespace)}/events`,
    {
      apiVersion: "v1",
      kind: "Event",
      metadata: { generateName: `${involved.name}.`, namespace: involved.namespace },
      involvedObject: involved,
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: "smtp-connector" },
      reportingComponent: "smtpconnector.dev/operator",
      reportingInstance: "smtp-connector",
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
    [403, 404],
  ); // a namespace being deleted refuses new events: nothing to tell anyone there
}

/** Reasons that warn while their condition is True: the thing works, but not as asked or not for long. */
const warningWhileTrue: ReadonlySet<string> = new Set(["ExpiringSoon", "LimitCapped"]);

export interface ConditionEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/**
 * The Events a status change tells: one per condition whose status changed, except kstatus'
 * Reconciling/Stalled (noise in describe), a condition that first appears Unknown (nothing is known
 * yet: "no verification has completed yet" told of every new address), and a Ready that repeats, reason
 * and message, another condition told in the same change (Ready=False names what blocks it). A creation
 * storm of 10,000 addresses otherwise made four Events of each, most of the operator's API requests. Pure.
 */
export function conditionChanges(before: readonly Condition[] | undefined, after: readonly Condition[]): ConditionEvent[] {
  const previous = new Map((before ?? []).map((c) => [c.type, c.status]));
  const changed = after.filter(
    (c) =>
      c.type !== "Reconciling" &&
      c.type !== "Stalled" &&
      previous.get(c.type) !== c.status &&
      !(c.status === "Unknown" && !previous.has(c.type)),
  );
  return changed
    .filter(
      (c) =>
        !(
          c.type === "Ready" && changed.some((other) => other.type !== "Ready" && other.reason === c.reason && other.message === c.message)
        ),
    )
    .map((c) => ({
      type:
        (c.status === "False" && c.reason !== "Progressing" && c.reason !== "VerificationPending") || warningWhileTrue.has(c.reason)
          ? "Warning"
          : "Normal",
      reason: c.reason,
      message: `${c.type}=${c.status}: ${c.message}`,
    }));
}

export async function conditionEvents(
  cluster: Cluster,
  involved: Involved,
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
): Promise<void> {
  for (const event of conditionChanges(before, after)) await recordEvent(cluster, involved, event.type, event.reason, event.message);
}
