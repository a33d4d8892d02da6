// Reconciles one SupportAddress's status from the rules' verdict and its
// domain's readiness. Verification (InboundVerified, OutboundVerified) is
// reported as pending until the verification loop runs.
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain, SupportAddress, SupportAddressStatus } from "../../crds/schema.js";
import { mergeConditions, sameStatus, type DesiredCondition } from "../conditions.js";
import { conditionEvents, involved } from "../events.js";
import type { Cluster } from "../kube/cluster.js";
import type { Verdict } from "./rules.js";

// Reasons that need a change from the user: the address is Stalled, not progressing.
const stalledReasons = new Set<ReasonName>(["DomainMismatch", "SystemAddress", "LimitExceeded", "AddressConflict", "CredentialsSecretNotFound", "CredentialsSecretInvalid", "DomainNotFound"]);

export async function reconcileAddress(cluster: Cluster, address: SupportAddress, verdict: Verdict, domain: SmtpDomain | undefined, now = new Date()): Promise<void> {
  const status = addressStatus(address, verdict, domain, now);
  if (sameStatus(address.status, status)) return;
  await cluster.applyStatus("supportaddresses", "SupportAddress", address.metadata.namespace!, address.metadata.name!, status);
  await conditionEvents(cluster, involved(address), address.status?.conditions, status.conditions ?? []);
}

export function addressStatus(address: SupportAddress, verdict: Verdict, domain: SmtpDomain | undefined, now: Date): SupportAddressStatus {
  const domainReady = domain?.status?.conditions?.find((c) => c.type === "Ready");
  const domainCondition: DesiredCondition = !verdict.served
    ? { type: "DomainReady", status: "False", reason: verdict.reason, message: verdict.message }
    : domainReady?.status === "True"
      ? { type: "DomainReady", status: "True", reason: "Ready", message: `SmtpDomain ${domain!.metadata.name} is ready` }
      : { type: "DomainReady", status: "False", reason: "DomainNotReady", message: `SmtpDomain ${address.spec.domainRef.name} is not Ready${domainReady ? `: ${domainReady.message}` : ""}` };
  const pending = (type: string): DesiredCondition => ({ type, status: "Unknown", reason: "VerificationPending", message: "no verification has completed yet" });
  const conditions: DesiredCondition[] = [domainCondition, pending("InboundVerified"), pending("OutboundVerified")];
  const blocking = conditions.find((c) => c.status !== "True")!;
  conditions.push({ type: "Ready", status: "False", reason: blocking.reason, message: blocking.message });
  const stalled = !verdict.served && stalledReasons.has(verdict.reason);
  conditions.push(
    stalled ? { type: "Stalled", status: "True", reason: domainCondition.reason, message: domainCondition.message } : { type: "Stalled", status: "False", reason: "Ready", message: "" },
    !stalled ? { type: "Reconciling", status: "True", reason: blocking.reason === "VerificationPending" ? "VerificationPending" : "Progressing", message: blocking.message } : { type: "Reconciling", status: "False", reason: "Ready", message: "" },
  );
  const generation = address.metadata.generation ?? 0;
  return { observedGeneration: generation, conditions: mergeConditions(address.status?.conditions, conditions, generation, now) };
}
