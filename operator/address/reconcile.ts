// Reconciles one SupportAddress: its status from the rules' verdict and its
// domain's readiness, and — once the domain is Ready — one step of its
// verification in each direction (see verification.ts).
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain, SupportAddress, SupportAddressStatus } from "../../crds/schema.js";
import { mergeConditions, sameStatus, type DesiredCondition } from "../conditions.js";
import { conditionEvents, involved } from "../events.js";
import type { Cluster } from "../kube/cluster.js";
import type { Verdict } from "./rules.js";
import { verifiedCondition, verify, type Attempt, type VerificationIO, type VerificationTiming } from "./verification.js";

export interface VerificationContext {
  io: VerificationIO;
  /** resourceVersion of the address's outbound credentials Secret: a change re-verifies. */
  credentialsResourceVersion: string | undefined;
  /** SHA-256 of "username\0password" in that Secret: the login the relay must be using. */
  credentialSha256: string | undefined;
  timing?: VerificationTiming;
}

// Reasons that need a change from the user: the address is Stalled, not progressing.
const stalledReasons = new Set<ReasonName>([
  "DomainMismatch",
  "SystemAddress",
  "LimitExceeded",
  "AddressConflict",
  "CredentialsSecretNotFound",
  "CredentialsSecretInvalid",
  "DomainNotFound",
]);

export async function reconcileAddress(
  cluster: Cluster,
  address: SupportAddress,
  verdict: Verdict,
  domain: SmtpDomain | undefined,
  verification?: VerificationContext,
  now = new Date(),
): Promise<{ requeueAfterMs?: number }> {
  // Its domain was made but has no status yet (not reconciled once): that first status is moments away and
  // brings this address back (a domain's status change enqueues its addresses). A "not Ready" written now
  // would be written over then: in a creation storm, a second status write for most addresses.
  if (verdict.served && domain && !domain.status?.conditions?.length && !domain.metadata.deletionTimestamp) return {};
  const domainReady = domain?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  let outcome: { attempts: Attempt[]; lastHandledVerifyRequest?: string; requeueAfterMs?: number } | undefined;
  if (verification && verdict.served && domain && domainReady) {
    outcome = await verify({
      address,
      domain,
      credentialsResourceVersion: verification.credentialsResourceVersion,
      credentialSha256: verification.credentialSha256,
      io: verification.io,
      ...(verification.timing ? { timing: verification.timing } : {}),
      now,
    });
  }
  const status = addressStatus(address, verdict, domain, now, outcome);
  if (!sameStatus(address.status, status)) {
    await cluster.applyStatus("supportaddresses", "SupportAddress", address.metadata.namespace!, address.metadata.name!, status);
    await conditionEvents(cluster, involved(address), address.status?.conditions, status.conditions ?? []);
  }
  return outcome?.requeueAfterMs !== undefined ? { requeueAfterMs: outcome.requeueAfterMs } : {};
}

export function addressStatus(
  address: SupportAddress,
  verdict: Verdict,
  domain: SmtpDomain | undefined,
  now: Date,
  verification?: { attempts: Attempt[]; lastHandledVerifyRequest?: string },
): SupportAddressStatus {
  const domainReady = domain?.status?.conditions?.find((c) => c.type === "Ready");
  const domainCondition: DesiredCondition = !verdict.served
    ? { type: "DomainReady", status: "False", reason: verdict.reason, message: verdict.message }
    : domainReady?.status === "True"
      ? { type: "DomainReady", status: "True", reason: "Ready", message: `SmtpDomain ${domain!.metadata.name} is ready` }
      : {
          type: "DomainReady",
          status: "False",
          reason: "DomainNotReady",
          message: `SmtpDomain ${address.spec.domainRef.name} is not Ready${domainReady ? `: ${domainReady.message}` : ""}`,
        };
  const attempts = verification?.attempts ?? address.status?.verifications ?? [];
  const lastHandled = verification?.lastHandledVerifyRequest ?? address.status?.lastHandledVerifyRequest;
  const latest = (direction: Attempt["direction"]) => attempts.find((a) => a.direction === direction);
  const conditions: DesiredCondition[] = [
    domainCondition,
    verifiedCondition("InboundVerified", latest("Inbound")),
    verifiedCondition("OutboundVerified", latest("Outbound")),
  ];
  const blocking = conditions.find((c) => c.status !== "True");
  conditions.push(
    blocking
      ? { type: "Ready", status: "False", reason: blocking.reason, message: blocking.message }
      : { type: "Ready", status: "True", reason: "Ready", message: "the address is connected and verified both ways" },
  );
  // Stalled: only a change from the user helps (a rule violated, or a verification that failed).
  const verificationFailed = conditions.find(
    (c) => (c.type === "InboundVerified" || c.type === "OutboundVerified") && c.status === "False",
  );
  const stalledBy = !verdict.served && stalledReasons.has(verdict.reason) ? domainCondition : verificationFailed;
  conditions.push(
    stalledBy
      ? { type: "Stalled", status: "True", reason: stalledBy.reason, message: stalledBy.message }
      : { type: "Stalled", status: "False", reason: "Ready", message: "" },
    !stalledBy && blocking
      ? {
          type: "Reconciling",
          status: "True",
          reason: blocking.reason === "VerificationPending" ? "VerificationPending" : "Progressing",
          message: blocking.message,
        }
      : { type: "Reconciling", status: "False", reason: "Ready", message: "" },
  );
  const generation = address.metadata.generation ?? 0;
  return {
    observedGeneration: generation,
    conditions: mergeConditions(address.status?.conditions, conditions, generation, now),
    ...(attempts.length > 0 ? { verifications: attempts } : {}),
    ...(lastHandled !== undefined ? { lastHandledVerifyRequest: lastHandled } : {}),
  };
}
