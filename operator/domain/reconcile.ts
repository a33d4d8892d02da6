// Reconciles one SmtpDomain: gather what is (reads only, from caches and the
// API), plan purely (snapshot.ts, then plan.ts: objects, Events, status, or
// what must be issued first), apply. What is issued (the installation's CA, the certificate, a
// credential version, a generated Secret) gets its secret here, in the apply
// step, each created once; the reconcile then gathers again and plans with it.
// Level-based and idempotent: run twice, it changes nothing the second time.
import { generateKeyPairSync } from "node:crypto";
import { Resolver } from "node:dns/promises";
import type * as k8s from "@kubernetes/client-node";
import { TimedCache } from "../timed-cache.js";
import type { SmtpDomain, SmtpDomainStatus, SupportAddress } from "../../crds/schema.js";
import type { Verdict } from "../address/rules.js";
import { sameStatus } from "../conditions.js";
import { conditionEvents, involved, recordEvent } from "../events.js";
import { ApiError, type Cluster } from "../kube/cluster.js";
import { defaultCaSecret, issueCertificate, issuesCertificate } from "./certificate.js";
import type { HostnameConflict } from "./hostname-claims.js";
import { alphanumeric } from "./credentials.js";
import { dkimRecordName, needsLookup, type Lookup } from "./dkim.js";
import { generatedSecrets, type Generated, type GeneratedDecision } from "./generated.js";
import { issueCredential, readCredentials } from "./inbound-credentials.js";
import { applyCa, readCa, type CaGathered } from "./installation-ca.js";
import { objectKey, planNotServed, relayObjectRefs } from "./plan.js";
import { controlSecret, dkimKeySecret, names, submissionSecret, type KubeObject, type OperatorSettings } from "./render.js";
import {
  dkimKeyReads,
  generatedDecisions,
  outboundUsable,
  planReconcile,
  servedAddresses,
  type DomainReads,
  type IssueAction,
} from "./snapshot.js";

export interface DomainInputs {
  domain: SmtpDomain;
  /** The addresses the rules serve (of this namespace); those of this domain are picked here. */
  addresses: readonly SupportAddress[];
  /** Whether the domain itself is served (limits, cross-namespace conflicts). */
  verdict?: Verdict;
  /** Names in spec.relay.hostnames that another SmtpDomain holds (hostname-claims.ts). */
  hostnameConflicts?: readonly HostnameConflict[];
  /** Secrets from the informer cache (addresses' outbound credentials); read from the API when absent. */
  secret?: (namespace: string, name: string) => k8s.V1Secret | undefined;
  /** How many SupportAddresses name this domain but are not served (their DomainReady says why). */
  addressesNotServed?: number;
  /** The relay's report of each inbound credential version's last use; without it, last use is not reported. */
  credentialUse?: (domain: SmtpDomain) => Promise<Map<number, string>>;
  /** The caches of the Controller this reconcile runs for (never shared between Controllers). */
  caches: DomainCaches;
}

/** What domain reconciles remember between runs, owned by one Controller. */
export interface DomainCaches {
  /** DNS answers for DKIM records: domain reconciles run on every related event; the DNS is asked once per check interval. */
  dnsAnswers: TimedCache<Lookup>;
  /** The installation's CA Secret, read once in a while; an event on its Secret clears it. */
  certificateAuthority: TimedCache<CaGathered>;
}

export function domainCaches(): DomainCaches {
  return { dnsAnswers: new TimedCache<Lookup>(), certificateAuthority: new TimedCache<CaGathered>() };
}

/** Rounds of issuing in one reconcile before it gives up (one is the rule; a lost race may need another). */
const issueRounds = 3;

/** Gather, plan (pure: snapshot.ts, plan.ts), apply; what must be issued first is issued, then gathered again. */
export async function reconcileDomain(
  cluster: Cluster,
  inputs: DomainInputs,
  settings: OperatorSettings,
  now = new Date(),
): Promise<{ requeueAfterMs?: number }> {
  const { domain } = inputs;
  if (inputs.verdict && !inputs.verdict.served) {
    await writeStatus(cluster, domain, planNotServed(domain, inputs.verdict, now));
    return {};
  }
  for (let round = 1; ; round++) {
    // After issuing, read from the API: an informer cache may not have seen what was just written.
    const reads = await gather(cluster, inputs, settings, now, round > 1);
    const planned = planReconcile(reads, settings, now);
    if ("issue" in planned) {
      if (round > issueRounds)
        throw new Error(
          `still to be issued after ${issueRounds} rounds (a concurrent writer?): ${planned.issue.map((a) => issued(a, settings)).join(", ")}`,
        );
      for (const action of planned.issue) await issue(cluster, reads, action, settings, now);
      // The CA Secret is read again after a write of it (or a lost race), not answered from before.
      if (planned.issue.some((a) => a.kind === "ca")) inputs.caches.certificateAuthority.clear();
      continue;
    }
    const { plan, writeIfUnchanged } = planned;
    for (const { object, resourceVersion } of writeIfUnchanged) await cluster.applyIfUnchanged(object, resourceVersion);
    await Promise.all(plan.apply.map((object) => cluster.apply(object)));
    for (const event of plan.events) await recordEvent(cluster, involved(domain), event.type, event.reason, event.message);
    await writeStatus(cluster, domain, plan.status);
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : {};
  }
}

async function writeStatus(cluster: Cluster, domain: SmtpDomain, status: SmtpDomainStatus): Promise<void> {
  if (sameStatus(domain.status, status)) return;
  await cluster.applyStatus("smtpdomains", "SmtpDomain", domain.metadata.namespace!, domain.metadata.name!, status);
  await conditionEvents(cluster, involved(domain), domain.status?.conditions, status.conditions ?? []);
}

/** What gets issued, by the name of its Secret. */
const issued = (action: IssueAction, settings: OperatorSettings) => {
  if (action.kind === "ca") {
    const { namespace, name } = settings.caSecret ?? defaultCaSecret;
    return `${namespace}/${name}`;
  }
  return action.kind === "certificate"
    ? action.certificate.secretName
    : action.kind === "credential"
      ? action.credential.secretName
      : action.generated.name;
};

/**
 * Issues one action: its secret is made now and its Secret created once. A 409 is another writer (a second
 * replica in a hand-over) that made it first: the next gather reads theirs.
 */
async function issue(cluster: Cluster, reads: DomainReads, action: IssueAction, settings: OperatorSettings, now: Date): Promise<void> {
  const { domain } = reads;
  // The installation's CA: a 409 is handled there (applyCa); its other failures are the API's, said as such.
  if (action.kind === "ca") return applyCa(cluster, settings, reads.ca!, action.ca, now);
  try {
    if (action.kind === "certificate") {
      if (!reads.ca || !("secret" in reads.ca)) throw new Error("a certificate planned without the installation's CA read");
      await issueCertificate(cluster, domain, action.certificate, reads.ca.secret.state, settings, now);
    } else if (action.kind === "credential") await issueCredential(cluster, domain, action.credential);
    else await createGenerated(cluster, domain, action.generated);
  } catch (error) {
    if (!(error instanceof ApiError && error.code === 409)) throw error;
  }
}

/**
 * Reads what the plan needs, from the informer caches where they hold it and from the API otherwise;
 * `fresh` (after issuing): the generated Secrets from the API. Writes nothing.
 */
async function gather(cluster: Cluster, inputs: DomainInputs, settings: OperatorSettings, now: Date, fresh: boolean): Promise<DomainReads> {
  const { domain } = inputs;
  const namespace = domain.metadata.namespace!;
  const get = (name: string) => cluster.read<k8s.V1Secret>("v1", "Secret", namespace, name);
  // The informer cache first; a miss is confirmed with a GET, so a Secret just issued is never issued twice.
  const read = async (name: string) => inputs.secret?.(namespace, name) ?? (await get(name));
  const tlsSecret = await get(names(domain).tls);
  // The installation's CA Secret, when this domain's certificate is the operator's: no domain's object,
  // made on first use and rotated for the installation (installation-ca.ts), read through the Controller's cache.
  const ca = issuesCertificate(domain, settings, tlsSecret)
    ? await readCa(cluster, settings, now, inputs.caches.certificateAuthority)
    : undefined;
  const credentials = await readCredentials(cluster, domain);
  const served = servedAddresses(domain, inputs.addresses);

  const secrets = new Map<string, k8s.V1Secret | undefined>();
  const readInto = async (name: string, from: (name: string) => Promise<k8s.V1Secret | undefined>) => {
    if (!secrets.has(name)) secrets.set(name, await from(name));
  };
  const auth = domain.spec.inbound.delivery.smtp?.authSecretRef;
  if (auth) await readInto(auth.name, get);
  for (const { name } of generatedSecrets(domain)) await readInto(name, fresh ? get : read);
  const { decisions } = generatedDecisions(domain, (name) => secrets.get(name));
  // The addresses' and DKIM keys' Secrets matter only to a domain with outbound.
  const dns = new Map<string, Lookup>();
  if (outboundUsable(domain, decisions)) {
    for (const address of served) {
      const spec = address.spec.outbound;
      await readInto(spec.credentialsSecretRef.name, read);
      if (spec.caSecretRef) await readInto(spec.caSecretRef.name, read);
    }
    for (const key of domain.spec.dkim?.keys ?? []) if (key.privateKeySecretRef) await readInto(key.privateKeySecretRef.name, read);
    const resolver = settings.dnsResolver;
    for (const key of dkimKeyReads(domain, (name) => secrets.get(name), decisions).keys) {
      if (!resolver || !("pem" in key) || !needsLookup(key.key, settings)) continue;
      const name = dkimRecordName(domain, key.key.selector);
      dns.set(name, await inputs.caches.dnsAnswers.get(`${resolver} ${name}`, dnsTtl(settings), () => lookupTxt(resolver, name)));
    }
  }

  const existing = new Map<string, Record<string, unknown>>();
  await Promise.all(
    relayObjectRefs(domain, settings).map(async (object) => {
      const live = await cluster.read(object.apiVersion, object.kind, namespace, object.metadata.name);
      if (live) existing.set(objectKey(object), live as unknown as Record<string, unknown>);
    }),
  );
  const deployment = existing.get(objectKey({ kind: "Deployment", metadata: { name: names(domain).relay } })) as
    k8s.V1Deployment | undefined;
  const available = deployment?.status?.availableReplicas ?? 0;
  // Rolled out: the Deployment controller saw the latest template and every replica runs it.
  const rolledOut =
    deployment !== undefined &&
    (deployment.status?.observedGeneration ?? 0) >= (deployment.metadata?.generation ?? 1) &&
    (deployment.status?.updatedReplicas ?? 0) >= (deployment.spec?.replicas ?? 1) &&
    available > 0;

  // Last use per credential version, from the relay itself (it has no API access; we ask it).
  let reportedUse = new Map<number, string>();
  if (available > 0 && inputs.credentialUse) {
    reportedUse = await inputs.credentialUse(domain).catch(() => new Map<number, string>());
  }
  return {
    domain,
    served,
    ...(inputs.addressesNotServed !== undefined ? { addressesNotServed: inputs.addressesNotServed } : {}),
    hostnameConflicts: inputs.hostnameConflicts ?? [],
    tlsSecret,
    ...(ca ? { ca } : {}),
    credentials,
    secrets,
    dns,
    existing,
    available,
    rolledOut,
    reportedUse,
    pollsLastUse: inputs.credentialUse !== undefined,
  };
}

// The DNS is asked once per check interval (kept a little less than the
// interval, so the periodic re-check always asks again).
const dnsTtl = (settings: OperatorSettings) => Math.max(0, (settings.dnsCheckIntervalMs ?? 60_000) - 1_000);

/** TXT records at a name, from the configured resolver; none for NXDOMAIN/NODATA. */
async function lookupTxt(resolver: string, name: string): Promise<Lookup> {
  const dns = new Resolver({ timeout: 3_000, tries: 2 });
  dns.setServers([resolver]);
  try {
    return { found: (await dns.resolveTxt(name)).map((chunks) => chunks.join("")) };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOTFOUND" || code === "ENODATA") return { found: [] };
    return { error: `${code ?? ""} ${(error as Error).message}`.trim() };
  }
}

/**
 * A generated Secret as planGeneratedSecrets decided, its values made now: created (or an incomplete one
 * of ours filled only if unchanged since read), so a second writer that made it first wins with 409.
 */
async function createGenerated(
  cluster: Cluster,
  domain: SmtpDomain,
  decision: Extract<GeneratedDecision, { create: true }>,
): Promise<void> {
  const object = generatedSecret(domain, decision.what);
  if (decision.resourceVersion) await cluster.applyIfUnchanged(object, decision.resourceVersion);
  else await cluster.create(object);
}

/** A generated Secret with new values. */
function generatedSecret(domain: SmtpDomain, what: Generated): KubeObject {
  if (what.kind === "submission")
    return submissionSecret(domain, {
      username: `helpdesk-${domain.metadata.name}-${alphanumeric(6).toLowerCase()}`,
      password: alphanumeric(43),
    });
  if (what.kind === "control") return controlSecret(domain, alphanumeric(43));
  return dkimKeySecret(domain, what.selector, generateDkimKey(what.algorithm));
}

function generateDkimKey(algorithm: "RSA2048" | "Ed25519"): string {
  const { privateKey } = algorithm === "Ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("rsa", { modulusLength: 2048 });
  return privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}
