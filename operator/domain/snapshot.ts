// From what a domain reconcile read (DomainReads, gathered by reconcile.ts) to
// its plan, purely: the certificate, the credential versions, the generated
// Secrets, the outbound senders and the DKIM keys, each judged by its own
// module, with the problems in the order found (the first is Stalled's), then
// planDomain (plan.ts). What must be issued first (a certificate, a credential
// version, a generated Secret) is planned as actions instead: their secrets are
// made by the apply step, and the reconcile reads again and plans with them.
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { outboundServer } from "../address/rules.js";
import { maxCaBundleBytes, refusedKeys, tooLargeMessage } from "../kube/secrets.js";
import { planCertificate, type CertificateIssue, type CertificateState } from "./certificate.js";
import { planDkim, type DkimKeyRead, type Lookup } from "./dkim.js";
import { generatedKeys, generatedSecrets, planGeneratedSecrets, type GeneratedDecision } from "./generated.js";
import { withheldHostnames, type HostnameConflict } from "./hostname-claims.js";
import {
  planInboundCredentials,
  type CredentialIssue,
  type CredentialReads,
  type Problem,
  type WriteIfUnchanged,
} from "./inbound-credentials.js";
import { planCa, type CaAction, type CaGathered } from "./installation-ca.js";
import { planDomain, type DkimState, type DomainPlan, type DomainSnapshot, type PlannedEvent } from "./plan.js";
import { names, type KubeObject, type OperatorSettings, type OutboundInputs, type OutboundSender } from "./render.js";

/** What the reconcile of one served SmtpDomain read: from caches and the API, nothing written. */
export interface DomainReads {
  domain: SmtpDomain;
  /** This domain's served support addresses (servedAddresses). */
  served: readonly SupportAddress[];
  /** How many SupportAddresses name this domain but are not served (their DomainReady says why). */
  addressesNotServed?: number;
  /** Names in spec.relay.hostnames another SmtpDomain holds (hostname-claims.ts). */
  hostnameConflicts: readonly HostnameConflict[];
  /** The relay's TLS Secret (undefined: it does not exist). */
  tlsSecret: k8s.V1Secret | undefined;
  /** The installation's CA Secret, when the certificate is the operator's to issue (issuesCertificate). */
  ca?: CaGathered;
  credentials: CredentialReads;
  /** Every other Secret read, by name (undefined: it does not exist): the next hop's login, the generated ones, the addresses' and the DKIM keys'. */
  secrets: ReadonlyMap<string, k8s.V1Secret | undefined>;
  /** The DNS answers for DKIM records not declared published, by record name. */
  dns: ReadonlyMap<string, Lookup>;
  existing: DomainSnapshot["existing"];
  available: number;
  rolledOut: boolean;
  reportedUse: ReadonlyMap<number, string>;
  pollsLastUse: boolean;
}

/**
 * What is issued before the domain is planned; its secret (key pair, password, token) is made when it is
 * issued. The installation's CA comes first, alone: the certificate and the credentials' snippets need it.
 */
export type IssueAction =
  | { kind: "ca"; ca: CaAction }
  | { kind: "certificate"; certificate: CertificateIssue }
  | { kind: "credential"; credential: CredentialIssue }
  | { kind: "generated"; generated: Extract<GeneratedDecision, { create: true }> };

export type ReconcilePlan = { issue: IssueAction[] } | { plan: DomainPlan; writeIfUnchanged: WriteIfUnchanged[] };

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

/** The addresses of this domain the relay serves: the config's recipients and its outbound senders alike. Pure. */
export function servedAddresses(domain: SmtpDomain, addresses: readonly SupportAddress[]): SupportAddress[] {
  return addresses.filter(
    (a) =>
      a.spec.domainRef.name === domain.metadata.name &&
      a.spec.address.toLowerCase().endsWith(`@${domain.spec.domain}`) &&
      !a.metadata.deletionTimestamp,
  );
}

/** The generated Secrets' decisions, but for one grown past any value of ours (edited by hand): said, not generated anew over. Pure. */
export function generatedDecisions(
  domain: SmtpDomain,
  secret: (name: string) => k8s.V1Secret | undefined,
): { decisions: GeneratedDecision[]; problems: Problem[] } {
  const tooLarge = new Map<string, string>();
  for (const { name, what } of generatedSecrets(domain)) {
    const key = refusedKeys(secret(name)).find((k) => generatedKeys(what).includes(k));
    if (key) tooLarge.set(name, key);
  }
  return {
    decisions: planGeneratedSecrets(domain, secret).filter((d) => !tooLarge.has(d.name)),
    problems: [...tooLarge].map(([name, key]) => ({
      condition: "RelayAvailable",
      reason: "SecretInvalid",
      message: tooLargeMessage(name, key),
    })),
  };
}

/** Whether the domain has outbound at all: its submission and control Secrets are ours and complete. Pure. */
export function outboundUsable(domain: SmtpDomain, decisions: readonly GeneratedDecision[]): boolean {
  const n = names(domain);
  return [n.submission, n.control].every((name) => decisions.some((d) => d.name === name && "use" in d));
}

/**
 * The DKIM keys as read: each from the user's Secret or the one generated for it, and the problems of
 * keys that could not be read at all, in the keys' order. Pure.
 */
export function dkimKeyReads(
  domain: SmtpDomain,
  secret: (name: string) => k8s.V1Secret | undefined,
  decisions: readonly GeneratedDecision[],
): { keys: DkimKeyRead[]; problems: Problem[] } {
  const keys: DkimKeyRead[] = [];
  const problems: Problem[] = [];
  for (const key of domain.spec.dkim?.keys ?? []) {
    if (key.privateKeySecretRef) {
      const ref = key.privateKeySecretRef;
      const read = secret(ref.name);
      if (refusedKeys(read).includes(ref.key ?? "tls.key")) {
        problems.push({
          condition: "RelayAvailable",
          reason: "SecretInvalid",
          message: `DKIM key ${key.selector}: ${tooLargeMessage(ref.name, ref.key ?? "tls.key")}`,
        });
        continue;
      }
      const pem = decode(read?.data?.[ref.key ?? "tls.key"]);
      keys.push(
        pem
          ? { key, pem }
          : {
              key,
              problem: {
                condition: "RelayAvailable",
                reason: "SecretNotFound",
                message: `DKIM key ${key.selector}: Secret ${ref.name} has no key ${ref.key ?? "tls.key"}`,
              },
            },
      );
      continue;
    }
    const decision = decisions.find((d) => d.name === `${domain.metadata.name}-dkim-${key.selector}`);
    const pem = decision && "use" in decision ? decision.use["private.pem"] : undefined;
    keys.push(pem ? { key, pem } : decision && "conflict" in decision ? { key, problem: decision.conflict } : { key });
  }
  return { keys, problems };
}

/**
 * Outbound: the submission credential and control token (as generated), each served address's server and
 * login from its credentials Secret, and the DKIM keys. An address whose Secret is missing or malformed is
 * left out (its own status says why). Undefined when the submission or control Secret is not usable.
 */
function outboundOf(
  reads: DomainReads,
  settings: OperatorSettings,
  decisions: readonly GeneratedDecision[],
  problems: Problem[],
): (OutboundInputs & { dkimState: DkimState }) | undefined {
  const { domain } = reads;
  const n = names(domain);
  const secret = (name: string) => reads.secrets.get(name);
  const values = (name: string) => {
    const decision = decisions.find((d) => d.name === name);
    if (decision && "conflict" in decision) problems.push(decision.conflict);
    return decision && "use" in decision ? decision.use : undefined;
  };
  const submission = values(n.submission);
  const control = values(n.control);
  if (!submission || !control) return undefined;
  const senders: OutboundSender[] = [];
  for (const address of reads.served) {
    const spec = address.spec.outbound;
    const credentials = secret(spec.credentialsSecretRef.name);
    const username = decode(credentials?.data?.username);
    const password = decode(credentials?.data?.password);
    if (!username || !password) continue;
    let ca: string | undefined;
    if (spec.caSecretRef) {
      const caSecret = secret(spec.caSecretRef.name);
      const caKey = spec.caSecretRef.key ?? "ca.crt";
      if (refusedKeys(caSecret).includes(caKey))
        problems.push({
          condition: "RelayAvailable",
          reason: "SecretInvalid",
          message: `${address.spec.address}: ${tooLargeMessage(spec.caSecretRef.name, caKey, maxCaBundleBytes)}`,
        });
      ca = decode(caSecret?.data?.[caKey]);
      if (!ca) continue;
    }
    senders.push({
      address: address.spec.address.toLowerCase(),
      ready: address.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
      ...outboundServer(spec),
      username,
      password,
      ...(ca !== undefined ? { ca } : {}),
    });
  }
  const dkimKeys = dkimKeyReads(domain, secret, decisions);
  problems.push(...dkimKeys.problems);
  const dkim = planDkim(domain, settings, dkimKeys.keys, (name) => reads.dns.get(name));
  problems.push(...dkim.problems);
  return {
    submission: { username: submission.username!, password: submission.password! },
    controlToken: control.token!,
    senders,
    dkim: dkim.state.signing,
    dkimState: dkim.state,
  };
}

/** The plan of one served domain from what was read, or what to issue first. Pure. */
export function planReconcile(reads: DomainReads, settings: OperatorSettings, now: Date): ReconcilePlan {
  const { domain } = reads;
  const problems: Problem[] = [];
  const issue: IssueAction[] = [];
  const apply: KubeObject[] = [];
  const withheld = withheldHostnames(reads.hostnameConflicts);

  // The installation's CA first, then the relay's certificate: the credentials' client snippets say which CA to trust.
  const ca = reads.ca ? planCa(reads.ca, settings, now) : undefined;
  if (ca && "action" in ca) return { issue: [{ kind: "ca", ca: ca.action }] };
  const planned = planCertificate(domain, settings, now, reads.tlsSecret, ca?.ca, withheld);
  let certificate: CertificateState | undefined;
  const certificateEvents: PlannedEvent[] = [];
  if ("issue" in planned) issue.push({ kind: "certificate", certificate: planned.issue });
  else {
    certificate = planned.state;
    if (planned.apply) apply.push(planned.apply);
    if (planned.events) certificateEvents.push(...planned.events);
    const { condition } = certificate;
    if (condition.status === "False" && condition.reason !== "NotYetValid")
      problems.push({ condition: "CertificateReady", reason: condition.reason, message: condition.message });
  }
  const caPem = "issue" in planned ? planned.issue.trustPem : planned.state.caPem;
  const credentials = planInboundCredentials(domain, settings, caPem, reads.credentials, now, withheld);
  issue.push(...credentials.issue.map((credential) => ({ kind: "credential" as const, credential })));
  problems.push(...credentials.problems);
  if (credentials.first) problems.unshift(credentials.first);

  // The next hop's AUTH username is no secret: it goes into the config; the password stays in its Secret (mounted).
  let nextHopUsername: string | undefined;
  const auth = domain.spec.inbound.delivery.smtp?.authSecretRef;
  if (auth) {
    const secret = reads.secrets.get(auth.name);
    nextHopUsername = decode(secret?.data?.username);
    if (!secret)
      problems.push({
        condition: "RelayAvailable",
        reason: "SecretNotFound",
        message: `Secret ${auth.name} (delivery.smtp.authSecretRef) does not exist`,
      });
    else if (!nextHopUsername || !secret.data?.password)
      problems.push({
        condition: "RelayAvailable",
        reason: "SecretInvalid",
        message: `Secret ${auth.name} needs non-empty username and password keys`,
      });
  }
  const generated = generatedDecisions(domain, (name) => reads.secrets.get(name));
  problems.push(...generated.problems);
  for (const decision of generated.decisions) if ("create" in decision) issue.push({ kind: "generated", generated: decision });
  if (issue.length > 0 || !certificate) return { issue };

  const outbound = outboundOf(reads, settings, generated.decisions, problems);
  const snapshot: DomainSnapshot = {
    domain,
    addresses: reads.served.map((a) => a.spec.address.toLowerCase()),
    ...(reads.addressesNotServed !== undefined ? { addressesNotServed: reads.addressesNotServed } : {}),
    certificate,
    ...(reads.hostnameConflicts.length > 0 ? { hostnameConflicts: reads.hostnameConflicts } : {}),
    credentials,
    problems,
    ...(nextHopUsername !== undefined ? { nextHopUsername } : {}),
    ...(outbound ? { outbound } : {}),
    existing: reads.existing,
    available: reads.available,
    rolledOut: reads.rolledOut,
    reportedUse: reads.reportedUse,
    pollsLastUse: reads.pollsLastUse,
  };
  const plan = planDomain(snapshot, settings, now);
  return {
    plan: { ...plan, apply: [...apply, ...plan.apply], events: [...certificateEvents, ...credentials.events, ...plan.events] },
    writeIfUnchanged: credentials.refresh,
  };
}
