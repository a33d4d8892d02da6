// Reconciles one SmtpDomain: read the world, plan, apply what is missing or
// different, write status when it changed. Level-based and idempotent: run
// twice, it changes nothing the second time.
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { Resolver } from "node:dns/promises";
import type * as k8s from "@kubernetes/client-node";
import { dnsRecord } from "../../relay/contract/dkim-record.js";
import { TimedCache } from "../timed-cache.js";
import type { SmtpDomain, SmtpDomainStatus, SupportAddress } from "../../crds/schema.js";
import { outboundServer, type Verdict } from "../address/rules.js";
import { mergeConditions, rfc3339, sameStatus, type DesiredCondition } from "../conditions.js";
import { conditionEvents, involved, recordEvent } from "../events.js";
import { ownedBy, type Cluster } from "../kube/cluster.js";
import { alreadyApplied } from "../kube/compare.js";
import { relayCertificate, type CertificateState } from "./certificate.js";
import type { planCredentials} from "./credentials.js";
import { alphanumeric, type IssuedCredential } from "./credentials.js";
import { inboundCredentials, type Problem } from "./inbound-credentials.js";
import {
  controlSecret,
  names,
  publicPorts,
  relayConfigFiles,
  relayInternalService,
  submissionSecret,
  dkimKeySecret,
  type OutboundInputs,
  type OutboundSender,
  relayConfig,
  relayConfigSecret,
  relayDeployment,
  relayDisruptionBudget,
  relayHostname,
  relayNetworkPolicy,
  relayService,
  type KubeObject,
  type OperatorSettings,
} from "./render.js";

export interface DomainInputs {
  domain: SmtpDomain;
  /** The addresses the rules serve for this domain. */
  addresses: readonly SupportAddress[];
  /** Whether the domain itself is served (limits, cross-namespace conflicts). */
  verdict?: Verdict;
  /** Secrets from the informer cache (addresses' outbound credentials); read from the API when absent. */
  secret?: (namespace: string, name: string) => k8s.V1Secret | undefined;
  /** How many SupportAddresses name this domain but are not served (their DomainReady says why). */
  addressesNotServed?: number;
  /** The relay's report of each inbound credential version's last use; without it, last use is not reported. */
  credentialUse?: (domain: SmtpDomain) => Promise<Map<number, string>>;
}

/** How often last use is collected from a running relay. */
export const lastUseIntervalMs = 30_000;

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

export async function reconcileDomain(cluster: Cluster, inputs: DomainInputs, settings: OperatorSettings, now = new Date()): Promise<{ requeueAfterMs?: number }> {
  const { domain } = inputs;
  const namespace = domain.metadata.namespace!;
  const uid = domain.metadata.uid!;
  const problems: Problem[] = [];

  // Not served (another account claimed the domain first, or over the limit): no credentials, no relay.
  if (inputs.verdict && !inputs.verdict.served) {
    const { reason, message } = inputs.verdict;
    const generation = domain.metadata.generation ?? 0;
    const status: SmtpDomainStatus = {
      observedGeneration: generation,
      conditions: mergeConditions(domain.status?.conditions, [
        { type: "Ready", status: "False", reason, message },
        { type: "Stalled", status: "True", reason, message },
      ], generation, now),
      // What was issued and what was revoked stay on record while the domain is not served.
      ...(domain.status?.credentials ? { credentials: domain.status.credentials } : {}),
      ...(domain.status?.revokedVersions ? { revokedVersions: domain.status.revokedVersions } : {}),
    };
    if (!sameStatus(domain.status, status)) {
      await cluster.applyStatus("smtpdomains", "SmtpDomain", namespace, domain.metadata.name!, status);
      await conditionEvents(cluster, involved(domain), domain.status?.conditions, status.conditions ?? []);
    }
    return {};
  }

  // 1. The relay's certificate first: the credentials' client snippets say which CA to trust.
  const certificate = await relayCertificate(cluster, domain, settings, now);
  if (certificate.condition.status === "False" && certificate.condition.reason !== "NotYetValid") {
    problems.push({ condition: "CertificateReady", reason: certificate.condition.reason, message: certificate.condition.message });
  }

  // 2. Credentials: read each version's Secret, issue the missing ones, hold them against what was issued.
  const { issued, plan, retired } = await inboundCredentials(cluster, domain, settings, certificate.caPem, problems, now);

  // 3. The relay: config (digests only), Deployment, Service, NetworkPolicy, PDB.
  const addresses = inputs.addresses
    .filter((a) => a.spec.domainRef.name === domain.metadata.name && a.spec.address.toLowerCase().endsWith(`@${domain.spec.domain}`) && !a.metadata.deletionTimestamp)
    .map((a) => a.spec.address.toLowerCase());
  // The next hop's AUTH username is no secret: it goes into the config; the password stays in its Secret (mounted).
  let nextHopUsername: string | undefined;
  const auth = domain.spec.inbound.delivery.smtp?.authSecretRef;
  if (auth) {
    const secret = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, auth.name);
    nextHopUsername = decode(secret?.data?.username);
    if (!secret) problems.push({ condition: "RelayAvailable", reason: "SecretNotFound", message: `Secret ${auth.name} (delivery.smtp.authSecretRef) does not exist` });
    else if (!nextHopUsername || !secret.data?.password) problems.push({ condition: "RelayAvailable", reason: "SecretInvalid", message: `Secret ${auth.name} needs non-empty username and password keys` });
  }
  const outbound = await outboundInputs(cluster, inputs, settings, problems);
  const objects = [
    relayConfigSecret(domain, relayConfig(domain, plan, issued, addresses, settings, nextHopUsername, outbound), relayConfigFiles(outbound)),
    relayDeployment(domain, settings),
    relayService(domain),
    relayInternalService(domain),
    relayNetworkPolicy(domain, settings),
    relayDisruptionBudget(domain),
  ].filter((o): o is KubeObject => o !== undefined);
  // The objects are independent: read (and, where needed, apply) them side by side.
  // With the spec unchanged since everything was last applied, a missing or different object is drift
  // (deleted or edited by hand), not a change of ours: repaired, and said. The relay config also
  // changes with addresses and Secrets, so only its deletion counts.
  const settled = domain.status?.relay !== undefined && domain.status.observedGeneration === domain.metadata.generation;
  const outcomes = await Promise.all(
    objects.map(async (object): Promise<Problem | undefined> => {
      const existing = await cluster.read(object.apiVersion, object.kind, namespace, object.metadata.name);
      if (existing && !ownedBy(existing, uid)) {
        return { condition: "RelayAvailable", reason: "SecretConflict", message: `${object.kind} ${object.metadata.name} exists and is not owned by this SmtpDomain; the operator never overwrites it` };
      }
      if (existing && alreadyApplied(object, existing as unknown as Record<string, unknown>)) return undefined;
      await cluster.apply(object);
      if (settled && (!existing || object.metadata.name !== names(domain).config)) {
        const what = existing ? "differed from what the operator renders (edited by hand?)" : "was deleted";
        await recordEvent(cluster, involved(domain), "Warning", "DriftRepaired", `${object.kind} ${object.metadata.name} ${what}: restored. The objects a domain owns are the operator's; change the SmtpDomain instead`);
      }
      return undefined;
    }),
  );
  problems.push(...outcomes.filter((p): p is Problem => p !== undefined));

  // 4. Observe the Deployment's availability.
  const n = names(domain);
  const deployment = await cluster.read<k8s.V1Deployment>("apps/v1", "Deployment", namespace, n.relay);
  const available = deployment?.status?.availableReplicas ?? 0;

  // 5. Last use per credential version, from the relay itself (it has no API access; we ask it).
  let lastUsed = new Map<number, string>();
  if (available > 0 && inputs.credentialUse) {
    lastUsed = await inputs.credentialUse(domain).catch(() => new Map<number, string>());
  }

  // 6. Status.
  const status = domainStatus(inputs, { plan, issued, retired }, problems, available, addresses.length, settings, now, lastUsed, outbound?.dkimState, certificate);
  if (!sameStatus(domain.status, status)) {
    await cluster.applyStatus("smtpdomains", "SmtpDomain", namespace, domain.metadata.name!, status);
    await conditionEvents(cluster, involved(domain), domain.status?.conditions, status.conditions ?? []);
  }

  // An older version expires at a known instant: come back then.
  const nextExpiry = plan.map((p) => (p.expiresAt && p.state === "Active" ? Date.parse(p.expiresAt) - now.getTime() : Infinity)).reduce((a, b) => Math.min(a, b), Infinity);
  // A running relay is asked again for last use; pending DKIM records are looked up again.
  const dnsAgain = settings.dnsResolver && (outbound?.dkimState.pending.length ?? 0) > 0 ? (settings.dnsCheckIntervalMs ?? 60_000) : Infinity;
  // The certificate is renewed, and its condition changes near expiry, at known instants too.
  const certificateDue = certificate.nextCheck ? Math.max(1_000, certificate.nextCheck.getTime() - now.getTime() + 500) : Infinity;
  const next = Math.min(Number.isFinite(nextExpiry) ? Math.max(1_000, nextExpiry + 500) : Infinity, available > 0 && inputs.credentialUse ? lastUseIntervalMs : Infinity, dnsAgain, certificateDue);
  return Number.isFinite(next) ? { requeueAfterMs: next } : {};
}

/**
 * Outbound: the helpdesk's submission credential and the control token (each
 * issued once into a Secret this domain owns), and each served address's
 * server and login, read from its credentials Secret. An address whose Secret
 * is missing or malformed is left out (its own status says why).
 */
async function outboundInputs(cluster: Cluster, inputs: DomainInputs, settings: OperatorSettings, problems: Problem[]): Promise<(OutboundInputs & { dkimState: DkimState }) | undefined> {
  const { domain } = inputs;
  const namespace = domain.metadata.namespace!;
  const n = names(domain);
  // The informer cache first; a miss is confirmed with a GET, so a Secret just
  // issued is never issued twice.
  const read = async (name: string) => inputs.secret?.(namespace, name) ?? (await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, name));
  const owned = async (name: string, keys: string[], create: () => KubeObject): Promise<Record<string, string> | undefined> => {
    const secret = await read(name);
    if (secret && !ownedBy(secret, domain.metadata.uid!)) {
      problems.push({ condition: "RelayAvailable", reason: "SecretConflict", message: `Secret ${name} exists and is not owned by this SmtpDomain; the operator never overwrites it` });
      return undefined;
    }
    const values = Object.fromEntries(keys.map((k) => [k, decode(secret?.data?.[k]) ?? ""]));
    if (keys.every((k) => values[k])) return values;
    // Issued once; kept from then on.
    const object = create();
    await cluster.apply(object);
    return object.stringData as Record<string, string>;
  };
  const submission = await owned(n.submission, ["username", "password"], () =>
    submissionSecret(domain, { username: `helpdesk-${domain.metadata.name}-${alphanumeric(6).toLowerCase()}`, password: alphanumeric(43) }),
  );
  const control = await owned(n.control, ["token"], () => controlSecret(domain, alphanumeric(43)));
  if (!submission || !control) return undefined;
  const senders: OutboundSender[] = [];
  for (const address of inputs.addresses) {
    if (address.spec.domainRef.name !== domain.metadata.name || address.metadata.deletionTimestamp) continue;
    const spec = address.spec.outbound;
    const credentials = await read(spec.credentialsSecretRef.name);
    const username = decode(credentials?.data?.username);
    const password = decode(credentials?.data?.password);
    if (!username || !password) continue;
    let ca: string | undefined;
    if (spec.caSecretRef) {
      ca = decode((await read(spec.caSecretRef.name))?.data?.[spec.caSecretRef.key ?? "ca.crt"]);
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
  const dkim = await dkimKeys(inputs, settings, read, owned, problems);
  return { submission: { username: submission.username!, password: submission.password! }, controlToken: control.token!, senders, dkim: dkim.signing, dkimState: dkim };
}

export interface DkimState {
  signing: OutboundInputs["dkim"];
  records: NonNullable<NonNullable<SmtpDomainStatus["dkim"]>["records"]>;
  pending: string[];
  /** The DKIMRecordPublished condition, when the domain has keys. */
  condition?: DesiredCondition;
}

type Lookup = { found: string[] } | { error: string };

// Domain reconciles run on every related event; the DNS is asked once per check interval
// (kept a little less than the interval, so the periodic re-check always asks again).
const dnsAnswers = new TimedCache<Lookup>();
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

/** The public key (p=) of a DKIM record, whitespace removed. */
const publicKeyOf = (record: string) => /(?:^|;)\s*p=([^;]*)/.exec(record.replace(/\s+/g, " "))?.[1]?.replace(/\s+/g, "");

/**
 * DKIM keys: each from the user's Secret or generated once into one the
 * domain owns; its DNS record for status; and, per algorithm, the last key
 * whose record is confirmed as the one the relay signs with. A key whose
 * record is not confirmed is never used.
 */
async function dkimKeys(
  inputs: DomainInputs,
  settings: OperatorSettings,
  read: (name: string) => Promise<k8s.V1Secret | undefined>,
  owned: (name: string, keys: string[], create: () => KubeObject) => Promise<Record<string, string> | undefined>,
  problems: Problem[],
): Promise<DkimState> {
  const { domain } = inputs;
  const state: DkimState = { signing: [], records: [], pending: [] };
  const chosen = new Map<string, OutboundInputs["dkim"][number]>();
  const blocking: DesiredCondition[] = [];
  for (const key of domain.spec.dkim?.keys ?? []) {
    const algorithm = key.algorithm === "Ed25519" ? ("ed25519-sha256" as const) : ("rsa-sha256" as const);
    let pem: string | undefined;
    if (key.privateKeySecretRef) {
      const ref = key.privateKeySecretRef;
      pem = decode((await read(ref.name))?.data?.[ref.key ?? "tls.key"]);
      if (!pem) {
        problems.push({ condition: "RelayAvailable", reason: "SecretNotFound", message: `DKIM key ${key.selector}: Secret ${ref.name} has no key ${ref.key ?? "tls.key"}` });
        continue;
      }
    } else {
      const generated = await owned(`${domain.metadata.name}-dkim-${key.selector}`, ["private.pem"], () => dkimKeySecret(domain, key.selector, generateDkimKey(key.algorithm ?? "RSA2048")));
      pem = generated?.["private.pem"];
      if (!pem) continue;
    }
    let record: string;
    try {
      const privateKey = createPrivateKey(pem);
      if ((algorithm === "rsa-sha256") !== (privateKey.asymmetricKeyType === "rsa")) throw new Error(`it holds a ${privateKey.asymmetricKeyType} key, not ${key.algorithm ?? "RSA2048"}`);
      record = dnsRecord(privateKey);
    } catch (error) {
      problems.push({ condition: "RelayAvailable", reason: "SecretInvalid", message: `DKIM key ${key.selector}: not a usable private key (${(error as Error).message})` });
      continue;
    }
    const name = `${key.selector}._domainkey.${domain.spec.domain}`;
    // Declared published, or found with this very key by the DNS check.
    let published = key.recordPublished ?? false;
    if (!published) {
      const fix = `publish TXT ${name} with the value in status.dkim.records`;
      if (!settings.dnsResolver) {
        blocking.push({ type: "DKIMRecordPublished", status: "False", reason: "RecordNotConfirmed", message: `DKIM key ${key.selector}: ${fix}, then set recordPublished: true` });
      } else {
        const resolver = settings.dnsResolver;
        const lookup = await dnsAnswers.get(`${resolver} ${name}`, dnsTtl(settings), () => lookupTxt(resolver, name));
        if ("error" in lookup) blocking.push({ type: "DKIMRecordPublished", status: "False", reason: "DNSCheckFailed", message: `DKIM key ${key.selector}: looking up ${name} failed: ${lookup.error}` });
        else if (lookup.found.some((r) => publicKeyOf(r) === publicKeyOf(record))) published = true;
        else if (lookup.found.some((r) => publicKeyOf(r) !== undefined)) blocking.push({ type: "DKIMRecordPublished", status: "False", reason: "RecordMismatch", message: `DKIM key ${key.selector}: ${name} publishes another key; ${fix}` });
        else blocking.push({ type: "DKIMRecordPublished", status: "False", reason: "RecordMissing", message: `DKIM key ${key.selector}: no DKIM record at ${name}; ${fix}` });
      }
    }
    if (published) chosen.set(algorithm, { selector: key.selector, algorithm, pem });
    else state.pending.push(key.selector);
    state.records.push({ selector: key.selector, name, value: record, published, signing: false });
  }
  if ((domain.spec.dkim?.keys ?? []).length > 0) {
    state.condition = blocking[0] ?? { type: "DKIMRecordPublished", status: "True", reason: "RecordPublished", message: `${state.records.length} DKIM record(s) published` };
  }
  state.signing = [...chosen.values()];
  for (const record of state.records) record.signing = state.signing.some((k) => k.selector === record.selector);
  return state;
}

function generateDkimKey(algorithm: "RSA2048" | "Ed25519"): string {
  const { privateKey } = algorithm === "Ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("rsa", { modulusLength: 2048 });
  return privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

function domainStatus(
  inputs: DomainInputs,
  { plan, issued, retired }: { plan: ReturnType<typeof planCredentials>; issued: ReadonlyMap<number, IssuedCredential>; retired: ReadonlySet<number> },
  problems: readonly Problem[],
  available: number,
  addressCount: number,
  settings: OperatorSettings,
  now: Date,
  reportedUse: ReadonlyMap<number, string> = new Map(),
  dkim?: DkimState,
  certificate?: CertificateState,
): SmtpDomainStatus {
  const { domain } = inputs;
  const notServed = inputs.addressesNotServed ?? 0;
  const active = plan.filter((p) => p.state === "Active" && issued.has(p.version)).map((p) => p.version);
  // A refused re-addition or a hand-edited Secret changes nothing the relay accepts: with a version
  // still Active the domain serves on, and Stalled (not Ready) says what needs a change.
  const serving = (p: Problem) => active.length > 0 && (p.reason === "VersionRevoked" || p.reason === "SecretModified");
  const credentialProblems = problems.filter((p) => p.condition === "CredentialsIssued");
  const credentialProblem = credentialProblems.find((p) => !serving(p)) ?? credentialProblems[0];
  const relayProblem = problems.find((p) => p.condition === "RelayAvailable");
  const conditions: DesiredCondition[] = [
    credentialProblem
      ? { type: "CredentialsIssued", status: "False", reason: credentialProblem.reason, message: credentialProblem.message }
      : { type: "CredentialsIssued", status: "True", reason: "Issued", message: `${issued.size} credential version(s) issued` },
    ...(certificate ? [certificate.condition] : []),
    relayProblem
      ? { type: "RelayAvailable", status: "False", reason: relayProblem.reason, message: relayProblem.message }
      : available > 0
        ? { type: "RelayAvailable", status: "True", reason: "Available", message: `${available} relay replica(s) available` }
        : { type: "RelayAvailable", status: "False", reason: "Progressing", message: "waiting for the relay Deployment to have an available replica" },
    addressCount > 0
      ? { type: "AddressesConfigured", status: "True", reason: "AddressesServed", message: `${addressCount} support address(es) served${notServed > 0 ? `, ${notServed} not served (see their DomainReady)` : ""}` }
      : {
          type: "AddressesConfigured",
          status: "False",
          reason: "NoAddresses",
          message: notServed > 0 ? `none of the ${notServed} SupportAddress(es) naming this SmtpDomain is served: see their DomainReady` : "add at least one SupportAddress whose domainRef names this SmtpDomain",
        },
  ];
  const blocking = conditions.find((c) => c.status !== "True" && !(c.type === "CredentialsIssued" && credentialProblem && serving(credentialProblem)));
  conditions.push(
    blocking
      ? { type: "Ready", status: "False", reason: blocking.reason, message: blocking.message }
      : { type: "Ready", status: "True", reason: "Ready", message: "the domain is connected" },
  );
  // Informational: an unpublished key is not used, so it does not hold back Ready.
  if (dkim?.condition) conditions.push(dkim.condition);
  const stalled = problems[0];
  conditions.push(
    stalled ? { type: "Stalled", status: "True", reason: stalled.reason, message: stalled.message } : { type: "Stalled", status: "False", reason: "Ready", message: "" },
    !stalled && blocking?.reason === "Progressing"
      ? { type: "Reconciling", status: "True", reason: "Progressing", message: blocking.message }
      : { type: "Reconciling", status: "False", reason: "Ready", message: "" },
  );
  const generation = domain.metadata.generation ?? 0;
  const previous = new Map((domain.status?.credentials ?? []).map((c) => [c.version, c]));
  return {
    observedGeneration: generation,
    conditions: mergeConditions(domain.status?.conditions, conditions, generation, now),
    credentials: plan.flatMap((p) => {
      const credential = issued.get(p.version);
      if (!credential) return [];
      // The later of what status already says and what the relay reports (a restarted relay forgets).
      const known = [previous.get(p.version)?.lastUsedAt, reportedUse.get(p.version)].filter((t): t is string => t !== undefined);
      const lastUsedAt = known.length > 0 ? rfc3339(new Date(Math.max(...known.map((t) => Date.parse(t))))) : undefined;
      return [{
        version: p.version,
        secretName: credential.secretName,
        username: credential.username,
        state: p.state,
        createdAt: credential.createdAt,
        ...(p.expiresAt ? { expiresAt: p.expiresAt } : {}),
        ...(lastUsedAt ? { lastUsedAt } : {}),
        passwordSha256: credential.passwordSha256,
      }];
    }),
    activeVersions: active.join(","),
    ...(retired.size > 0 ? { revokedVersions: [...retired].sort((a, b) => a - b) } : {}),
    addresses: addressCount,
    ...(inputs.addressesNotServed !== undefined ? { addressesNotServed: inputs.addressesNotServed } : {}),
    relay: { serviceName: names(domain).relay, endpoint: `${relayHostname(domain, settings)}:${publicPorts.starttls}` },
    ...(certificate?.status ? { tls: certificate.status } : {}),
    ...(dkim && dkim.records.length > 0 ? { dkim: { records: dkim.records, ...(dkim.pending.length > 0 ? { pending: dkim.pending.join(",") } : {}) } } : {}),
  };
}

