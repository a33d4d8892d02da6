// The Secrets a domain owns whose values the operator generates, each once:
// the helpdesk's submission credential, the relay's control token, and each
// DKIM key without a privateKeySecretRef. Whether to use, create or leave one is
// decided here, purely, from the Secret as read (planGeneratedSecrets, unit-
// tested); reconcile.ts generates the values and writes only what this decides.
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { ownedBy } from "../kube/cluster.js";
import type { Problem } from "./inbound-credentials.js";
import { names } from "./render.js";

/** What a generated Secret holds, and so how its values are made. */
export type Generated = { kind: "submission" } | { kind: "control" } | { kind: "dkim"; selector: string; algorithm: "RSA2048" | "Ed25519" };

/** The keys each kind must hold, every one non-empty, for the Secret to be used as it is. */
export const generatedKeys = (what: Generated): readonly string[] =>
  what.kind === "submission" ? ["username", "password"] : what.kind === "control" ? ["token"] : ["private.pem"];

export type GeneratedDecision =
  /** Ours and complete: its values, as they are. */
  | { name: string; what: Generated; use: Record<string, string> }
  /**
   * To be made with new values: created when it does not exist (a second writer that made it first wins
   * with 409, and its values are read and used), or, when it is ours but incomplete, filled only if it is
   * still the version read (`resourceVersion`).
   */
  | { name: string; what: Generated; create: true; resourceVersion?: string }
  /** Someone else's: never written over; the domain says so. */
  | { name: string; what: Generated; conflict: Problem };

/** The generated Secrets of a domain, in the order their values are needed: submission, control, then each generated DKIM key. */
export function generatedSecrets(domain: SmtpDomain): { name: string; what: Generated }[] {
  const n = names(domain);
  return [
    { name: n.submission, what: { kind: "submission" } },
    { name: n.control, what: { kind: "control" } },
    ...(domain.spec.dkim?.keys ?? [])
      .filter((key) => !key.privateKeySecretRef)
      .map((key) => ({
        name: `${domain.metadata.name}-dkim-${key.selector}`,
        what: { kind: "dkim" as const, selector: key.selector, algorithm: key.algorithm ?? "RSA2048" },
      })),
  ];
}

/** A Secret's values under `keys`, when every one is there and non-empty. */
export function completeValues(secret: k8s.V1Secret | undefined, keys: readonly string[]): Record<string, string> | undefined {
  const values = Object.fromEntries(
    keys.map((k) => [k, secret?.data?.[k] === undefined ? "" : Buffer.from(secret.data[k], "base64").toString("utf8")]),
  );
  return keys.every((k) => values[k]) ? values : undefined;
}

/** What to do with one generated Secret, as read (undefined: it does not exist). Pure. */
export function planGeneratedSecret(
  domain: SmtpDomain,
  name: string,
  what: Generated,
  secret: k8s.V1Secret | undefined,
): GeneratedDecision {
  if (secret && !ownedBy(secret, domain.metadata.uid!)) {
    return {
      name,
      what,
      conflict: {
        condition: "RelayAvailable",
        reason: "SecretConflict",
        message: `Secret ${name} exists and is not owned by this SmtpDomain; the operator never overwrites it`,
      },
    };
  }
  const values = completeValues(secret, generatedKeys(what));
  if (values) return { name, what, use: values };
  return secret ? { name, what, create: true, resourceVersion: secret.metadata!.resourceVersion! } : { name, what, create: true };
}

/**
 * The decisions for every generated Secret of a domain. The DKIM keys are only made once the submission
 * and control Secrets are usable: without them the domain has no outbound at all. Pure.
 */
export function planGeneratedSecrets(domain: SmtpDomain, read: (name: string) => k8s.V1Secret | undefined): GeneratedDecision[] {
  const decisions: GeneratedDecision[] = [];
  for (const { name, what } of generatedSecrets(domain)) {
    if (what.kind === "dkim" && decisions.some((d) => "conflict" in d)) break;
    decisions.push(planGeneratedSecret(domain, name, what, read(name)));
  }
  return decisions;
}
