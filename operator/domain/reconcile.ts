// Reconciles one SmtpDomain: gather a snapshot (reads, and the generated
// secrets made once), plan purely (plan.ts: objects, Events, status), apply
// what is missing or different and write status when it changed. Level-based
// and idempotent: run twice, it changes nothing the second time.
import { generateKeyPairSync } from "node:crypto";
import { Resolver } from "node:dns/promises";
import type * as k8s from "@kubernetes/client-node";
import { TimedCache } from "../timed-cache.js";
import type { SmtpDomain, SmtpDomainStatus, SupportAddress } from "../../crds/schema.js";
import { outboundServer, type Verdict } from "../address/rules.js";
import { sameStatus } from "../conditions.js";
import { conditionEvents, involved, recordEvent } from "../events.js";
import { ApiError, ownedBy, type Cluster } from "../kube/cluster.js";
import { maxCaBundleBytes, refusedKeys, tooLargeMessage } from "../kube/secrets.js";
import { relayCertificate, type CertificateAuthority } from "./certificate.js";
import { withheldHostnames, type HostnameConflict } from "./hostname-claims.js";
import { alphanumeric } from "./credentials.js";
import { dkimRecordName, needsLookup, planDkim, type DkimKeyRead, type Lookup } from "./dkim.js";
import {
  completeValues,
  generatedKeys,
  generatedSecrets,
  planGeneratedSecrets,
  type Generated,
  type GeneratedDecision,
} from "./generated.js";
import { inboundCredentials, type Problem } from "./inbound-credentials.js";
import { objectKey, planDomain, planNotServed, relayObjects, type DkimState, type DomainSnapshot } from "./plan.js";
import {
  controlSecret,
  dkimKeySecret,
  names,
  submissionSecret,
  type KubeObject,
  type OperatorSettings,
  type OutboundInputs,
  type OutboundSender,
} from "./render.js";

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
  /** The installation's CA, read once in a while; an event on its Secret clears it. */
  certificateAuthority: TimedCache<CertificateAuthority>;
}

export function domainCaches(): DomainCaches {
  return { dnsAnswers: new TimedCache<Lookup>(), certificateAuthority: new TimedCache<CertificateAuthority>() };
}

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

/** Gather a snapshot, plan (pure, plan.ts), apply. */
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
  const plan = planDomain(await gather(cluster, inputs, settings, now), settings, now);
  await Promise.all(plan.apply.map((object) => cluster.apply(object)));
  for (const event of plan.events) await recordEvent(cluster, involved(domain), event.type, event.reason, event.message);
  await writeStatus(cluster, domain, plan.status);
  return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : {};
}

async function writeStatus(cluster: Cluster, domain: SmtpDomain, status: SmtpDomainStatus): Promise<void> {
  if (sameStatus(domain.status, status)) return;
  await cluster.applyStatus("smtpdomains", "SmtpDomain", domain.metadata.namespace!, domain.metadata.name!, status);
  await conditionEvents(cluster, involved(domain), domain.status?.conditions, status.conditions ?? []);
}

/**
 * Reads what the plan needs. Generated secrets are made here, each once (the
 * certificate, inbound credentials; the submission credential, the control
 * token and DKIM keys as planGeneratedSecrets decides): what the plan renders
 * depends on them.
 */
async function gather(cluster: Cluster, inputs: DomainInputs, settings: OperatorSettings, now: Date): Promise<DomainSnapshot> {
  const { domain } = inputs;
  const namespace = domain.metadata.namespace!;
  const problems: Problem[] = [];

  // The relay's certificate first: the credentials' client snippets say which CA to trust.
  const hostnameConflicts = inputs.hostnameConflicts ?? [];
  const withheld = withheldHostnames(hostnameConflicts);
  const certificate = await relayCertificate(cluster, domain, settings, now, inputs.caches.certificateAuthority, withheld);
  if (certificate.condition.status === "False" && certificate.condition.reason !== "NotYetValid") {
    problems.push({ condition: "CertificateReady", reason: certificate.condition.reason, message: certificate.condition.message });
  }
  // Credentials: read each version's Secret, issue the missing ones, hold them against what was issued.
  const credentials = await inboundCredentials(cluster, domain, settings, certificate.caPem, problems, now, withheld);

  // The addresses of this domain, once: the relay config's recipients and its outbound senders alike.
  const served = inputs.addresses.filter(
    (a) =>
      a.spec.domainRef.name === domain.metadata.name &&
      a.spec.address.toLowerCase().endsWith(`@${domain.spec.domain}`) &&
      !a.metadata.deletionTimestamp,
  );
  // The next hop's AUTH username is no secret: it goes into the config; the password stays in its Secret (mounted).
  let nextHopUsername: string | undefined;
  const auth = domain.spec.inbound.delivery.smtp?.authSecretRef;
  if (auth) {
    const secret = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, auth.name);
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
  const outbound = await outboundInputs(cluster, inputs, served, settings, problems);
  const addresses = served.map((a) => a.spec.address.toLowerCase());

  // The relay objects as they are (the names are known before rendering: render once to learn them).
  const wanted = relayObjects(
    {
      domain,
      credentials,
      addresses,
      hostnameConflicts,
      ...(nextHopUsername !== undefined ? { nextHopUsername } : {}),
      ...(outbound ? { outbound } : {}),
    },
    settings,
  );
  const existing = new Map<string, Record<string, unknown>>();
  await Promise.all(
    wanted.map(async (object) => {
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
    addresses,
    ...(inputs.addressesNotServed !== undefined ? { addressesNotServed: inputs.addressesNotServed } : {}),
    certificate,
    ...(hostnameConflicts.length > 0 ? { hostnameConflicts } : {}),
    credentials,
    problems,
    ...(nextHopUsername !== undefined ? { nextHopUsername } : {}),
    ...(outbound ? { outbound } : {}),
    existing,
    available,
    rolledOut,
    reportedUse,
    pollsLastUse: inputs.credentialUse !== undefined,
  };
}

/**
 * Outbound: the helpdesk's submission credential and the control token (each
 * issued once into a Secret this domain owns, as planGeneratedSecrets decides),
 * and each served address's server and login, read from its credentials
 * Secret. An address whose Secret is missing or malformed is left out (its own
 * status says why).
 */
async function outboundInputs(
  cluster: Cluster,
  inputs: DomainInputs,
  served: readonly SupportAddress[],
  settings: OperatorSettings,
  problems: Problem[],
): Promise<(OutboundInputs & { dkimState: DkimState }) | undefined> {
  const { domain } = inputs;
  const namespace = domain.metadata.namespace!;
  const n = names(domain);
  // The informer cache first; a miss is confirmed with a GET, so a Secret just
  // issued is never issued twice.
  const read = async (name: string) =>
    inputs.secret?.(namespace, name) ?? (await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, name));
  const wanted = generatedSecrets(domain);
  const current = new Map(await Promise.all(wanted.map(async ({ name }) => [name, await read(name)] as const)));
  // Grown past any value of ours (edited by hand): said, not silently generated anew over it.
  const tooLarge = new Map<string, string>();
  for (const { name, what } of wanted) {
    const key = refusedKeys(current.get(name)).find((k) => generatedKeys(what).includes(k));
    if (key) tooLarge.set(name, key);
  }
  for (const [name, key] of tooLarge)
    problems.push({ condition: "RelayAvailable", reason: "SecretInvalid", message: tooLargeMessage(name, key) });
  const decisions = planGeneratedSecrets(domain, (name) => current.get(name)).filter((d) => !tooLarge.has(d.name));
  const generated = await applyGenerated(cluster, domain, decisions);
  const owned = (name: string): Record<string, string> | undefined => {
    const outcome = generated.get(name);
    if (outcome && "conflict" in outcome) problems.push(outcome.conflict);
    return outcome && "values" in outcome ? outcome.values : undefined;
  };
  const generatedOf = (name: string) => generated.get(name);
  const submission = owned(n.submission);
  const control = owned(n.control);
  if (!submission || !control) return undefined;
  const senders: OutboundSender[] = [];
  for (const address of served) {
    const spec = address.spec.outbound;
    const credentials = await read(spec.credentialsSecretRef.name);
    const username = decode(credentials?.data?.username);
    const password = decode(credentials?.data?.password);
    if (!username || !password) continue;
    let ca: string | undefined;
    if (spec.caSecretRef) {
      const caSecret = await read(spec.caSecretRef.name);
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
  const dkim = await dkimKeys(inputs, settings, read, generatedOf, problems);
  return {
    submission: { username: submission.username!, password: submission.password! },
    controlToken: control.token!,
    senders,
    dkim: dkim.signing,
    dkimState: dkim,
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
 * DKIM keys as read: each from the user's Secret or the one generated for it,
 * and the DNS answer for each record not declared published. What they mean is
 * planDkim's (dkim.ts).
 */
async function dkimKeys(
  inputs: DomainInputs,
  settings: OperatorSettings,
  read: (name: string) => Promise<k8s.V1Secret | undefined>,
  generated: (name: string) => GeneratedOutcome | undefined,
  problems: Problem[],
): Promise<DkimState> {
  const { domain } = inputs;
  const keys: DkimKeyRead[] = [];
  const answers = new Map<string, Lookup>();
  for (const key of domain.spec.dkim?.keys ?? []) {
    let pem: string | undefined;
    if (key.privateKeySecretRef) {
      const ref = key.privateKeySecretRef;
      const secret = await read(ref.name);
      if (refusedKeys(secret).includes(ref.key ?? "tls.key")) {
        problems.push({
          condition: "RelayAvailable",
          reason: "SecretInvalid",
          message: `DKIM key ${key.selector}: ${tooLargeMessage(ref.name, ref.key ?? "tls.key")}`,
        });
        continue;
      }
      pem = decode(secret?.data?.[ref.key ?? "tls.key"]);
      if (!pem) {
        keys.push({
          key,
          problem: {
            condition: "RelayAvailable",
            reason: "SecretNotFound",
            message: `DKIM key ${key.selector}: Secret ${ref.name} has no key ${ref.key ?? "tls.key"}`,
          },
        });
        continue;
      }
    } else {
      const outcome = generated(`${domain.metadata.name}-dkim-${key.selector}`);
      pem = outcome && "values" in outcome ? outcome.values["private.pem"] : undefined;
      if (!pem) {
        keys.push(outcome && "conflict" in outcome ? { key, problem: outcome.conflict } : { key });
        continue;
      }
    }
    keys.push({ key, pem });
    const resolver = settings.dnsResolver;
    if (resolver && needsLookup(key, settings)) {
      const name = dkimRecordName(domain, key.selector);
      answers.set(name, await inputs.caches.dnsAnswers.get(`${resolver} ${name}`, dnsTtl(settings), () => lookupTxt(resolver, name)));
    }
  }
  const planned = planDkim(domain, settings, keys, (name) => answers.get(name));
  problems.push(...planned.problems);
  return planned.state;
}

/** A generated Secret's values: what planGeneratedSecrets found or had made, or why it is not used. */
type GeneratedOutcome = { values: Record<string, string> } | { conflict: Problem };

/**
 * Writes what planGeneratedSecrets decided, generating the values only for the Secrets it creates: created
 * (or an incomplete one of ours filled only if unchanged since read), so a second writer (two replicas in a
 * hand-over) that made it first wins with 409, and what it wrote is read and used.
 */
async function applyGenerated(
  cluster: Cluster,
  domain: SmtpDomain,
  decisions: readonly GeneratedDecision[],
): Promise<Map<string, GeneratedOutcome>> {
  const outcomes = new Map<string, GeneratedOutcome>();
  for (const decision of decisions) {
    if ("conflict" in decision) outcomes.set(decision.name, { conflict: decision.conflict });
    else if ("use" in decision) outcomes.set(decision.name, { values: decision.use });
    else outcomes.set(decision.name, { values: await createGenerated(cluster, domain, decision) });
  }
  return outcomes;
}

async function createGenerated(
  cluster: Cluster,
  domain: SmtpDomain,
  decision: Extract<GeneratedDecision, { create: true }>,
): Promise<Record<string, string>> {
  const object = generatedSecret(domain, decision.what);
  try {
    if (decision.resourceVersion) await cluster.applyIfUnchanged(object, decision.resourceVersion);
    else await cluster.create(object);
  } catch (error) {
    if (!(error instanceof ApiError && error.code === 409)) throw error;
    const winner = await cluster.read<k8s.V1Secret>("v1", "Secret", domain.metadata.namespace!, decision.name);
    const theirs = winner && ownedBy(winner, domain.metadata.uid!) ? completeValues(winner, generatedKeys(decision.what)) : undefined;
    if (!theirs) throw error;
    return theirs;
  }
  return object.stringData as Record<string, string>;
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
