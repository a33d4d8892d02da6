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

export async function recordEvent(cluster: Cluster, involved: Involved, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
  const now = new Date().toISOString();
  await cluster.write("POST", `/api/v1/namespaces/${encodeURIComponent(involved.namespace)}/events`, {
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
  }, [403, 404]); // a namespace being deleted refuses new events: nothing to tell anyone there
}

/** Reasons that warn while their condition is True: the thing works, but not as asked or not for long. */
const warningWhileTrue: ReadonlySet<string> = new Set(["ExpiringSoon", "LimitCapped"]);

/** One event per condition whose status changed (kstatus' Reconciling/Stalled excluded: they are noise in describe). */
export async function conditionEvents(cluster: Cluster, involved: Involved, before: readonly Condition[] | undefined, after: readonly Condition[]): Promise<void> {
  const previous = new Map((before ?? []).map((c) => [c.type, c.status]));
  for (const condition of after) {
    if (condition.type === "Reconciling" || condition.type === "Stalled") continue;
    if (previous.get(condition.type) === condition.status) continue;
    const type = (condition.status === "False" && condition.reason !== "Progressing" && condition.reason !== "VerificationPending") || warningWhileTrue.has(condition.reason) ? "Warning" : "Normal";
    await recordEvent(cluster, involved, type, condition.reason, `${condition.type}=${condition.status}: ${condition.message}`);
  }
}
