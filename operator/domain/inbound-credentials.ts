// The inbound credential Secrets of one SmtpDomain: read (readCredentials),
// judged purely (planInboundCredentials: issued when missing, and held against
// what was issued), and issued by the reconcile's apply step (issueCredential). Two records make the lifecycle
// one-way whatever the spec's history: the digest of each issued password
// (status.credentials[].passwordSha256: the relay accepts that one only, so a
// Secret edited by hand is reported, never adopted), and the versions ever
// revoked or expired (status.revokedVersions and an annotation on the Secret:
// never Active again, never issued again).
import { timingSafeEqual } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain } from "../../crds/schema.js";
import { rfc3339 } from "../conditions.js";
import { involved, recordEvent } from "../events.js";
import { ownedBy, type Cluster } from "../kube/cluster.js";
import {
  clientSnippets,
  credentialSecretName,
  declaredCredentials,
  inboundMode,
  newCredential,
  planCredentials,
  revokedAtAnnotation,
  type CredentialPlan,
  type IssuedCredential,
} from "./credentials.js";
import { passwordDigest } from "../../relay/contract/digests.js";
import { credentialSecret, relayHostname, type KubeObject, type OperatorSettings } from "./render.js";

export type Problem = { condition: "CredentialsIssued" | "RelayAvailable" | "CertificateReady"; reason: ReasonName; message: string };

export interface InboundCredentials {
  issued: Map<number, IssuedCredential>;
  plan: CredentialPlan[];
  /** Every version ever revoked or expired (for status.revokedVersions). */
  retired: Set<number>;
}

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

/** Compares two hex digests in constant time. */
function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/** An operator-issued Secret that still holds what was issued: its snippets are kept current. */
interface Intact {
  version: number;
  secret: k8s.V1Secret;
  username: string;
  password: string;
}

/** What the credential plan reads: each declared version's Secret, and (Forwarded) the versions this domain has a Secret of. */
export interface CredentialReads {
  /** Operator-issued credential Secrets this domain owns, by version (listed only in Forwarded mode). */
  issuedSecrets: readonly number[];
  /** Each declared version's Secret by name; undefined: it does not exist. */
  secrets: ReadonlyMap<string, k8s.V1Secret | undefined>;
}

/** A credential version to issue: a new username and password, made when it is issued, into its Secret. */
export interface CredentialIssue {
  version: number;
  secretName: string;
  /** An empty Secret of ours that was never recorded: filled only if still the version read. */
  resourceVersion?: string;
  /** The relay host name and the CA the client snippets name. */
  host: string;
  caPem?: string;
}

/** A Secret of ours written only if it is still the version read (a hand edit in between is never overwritten). */
export interface WriteIfUnchanged {
  object: KubeObject;
  resourceVersion: string;
}

export interface PlannedCredentials extends InboundCredentials {
  problems: Problem[];
  /** The versions to issue before anything else is planned. */
  issue: CredentialIssue[];
  /** Intact Secrets whose snippets or revocation annotation are out of date. */
  refresh: WriteIfUnchanged[];
  events: { type: "Normal"; reason: "CredentialRevoked"; message: string }[];
  /** NoActiveCredential: said before every other problem of the domain. */
  first?: Problem;
}

/** The versions of the operator-issued credential Secrets this domain owns (by label, then owner). */
async function credentialSecretVersions(cluster: Cluster, domain: SmtpDomain): Promise<number[]> {
  const selector = encodeURIComponent(`smtpconnector.dev/domain=${domain.metadata.name!},smtpconnector.dev/credential-version`);
  const listed = await cluster.get(`/api/v1/namespaces/${domain.metadata.namespace!}/secrets?labelSelector=${selector}`);
  const items = (JSON.parse(listed.body) as { items?: k8s.V1Secret[] }).items ?? [];
  return items
    .filter((s) => ownedBy(s, domain.metadata.uid!))
    .map((s) => Number(s.metadata?.labels?.["smtpconnector.dev/credential-version"]))
    .filter((v) => Number.isInteger(v) && v >= 1);
}

const declaredSecretName = (domain: SmtpDomain, declared: { version: number; secretRef?: { name: string } }) =>
  declared.secretRef?.name ?? credentialSecretName(domain, declared.version);

/** Reads what planInboundCredentials decides from (from the API, not a cache: a Secret just issued is never issued twice). */
export async function readCredentials(cluster: Cluster, domain: SmtpDomain): Promise<CredentialReads> {
  const namespace = domain.metadata.namespace!;
  // Forwarded: every version this domain has a Secret of is revoked, recorded or not (a reconcile may have
  // issued one and stopped before writing status).
  const issuedSecrets = inboundMode(domain) === "Forwarded" ? await credentialSecretVersions(cluster, domain) : [];
  const secrets = new Map<string, k8s.V1Secret | undefined>();
  for (const declared of declaredCredentials(domain, issuedSecrets)) {
    const name = declaredSecretName(domain, declared);
    secrets.set(name, await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, name));
  }
  return { issuedSecrets, secrets };
}

/**
 * The credential versions, decided from their Secrets as read: what was issued, the plan, what to issue,
 * which Secrets to refresh, the problems and the revocation Events. Pure.
 * `withheld`: the listed host names another domain holds; the snippets name one the certificate covers.
 */
export function planInboundCredentials(
  domain: SmtpDomain,
  settings: OperatorSettings,
  caPem: string | undefined,
  reads: CredentialReads,
  now: Date,
  withheld?: ReadonlySet<string>,
): PlannedCredentials {
  const uid = domain.metadata.uid!;
  const problems: Problem[] = [];
  const toIssue: CredentialIssue[] = [];
  const recorded = new Map((domain.status?.credentials ?? []).map((c) => [c.version, c]));
  const previouslyRetired = new Set(domain.status?.revokedVersions ?? []);
  const retired = new Set(previouslyRetired);
  const issued = new Map<number, IssuedCredential>();
  const intact: Intact[] = [];
  // Reported once the plan says the version is still Active: a revoked version's Secret may go.
  const modified = new Map<number, Problem>();
  const host = relayHostname(domain, settings, withheld);
  const { issuedSecrets } = reads;

  for (const declared of declaredCredentials(domain, issuedSecrets)) {
    const { version } = declared;
    const secretName = declaredSecretName(domain, declared);
    const secret = reads.secrets.get(secretName);
    const username = decode(secret?.data?.username);
    const password = decode(secret?.data?.password);
    if (declared.secretRef) {
      // The user's own Secret: read as it is, never changed.
      if (!secret)
        problems.push({
          condition: "CredentialsIssued",
          reason: "SecretNotFound",
          message: `Secret ${secretName} (credentials version ${version}) does not exist`,
        });
      else if (!username || !password)
        problems.push({
          condition: "CredentialsIssued",
          reason: "SecretInvalid",
          message: `Secret ${secretName} needs non-empty username and password keys`,
        });
      else
        issued.set(version, {
          version,
          secretName,
          username,
          password,
          passwordSha256: passwordDigest(password),
          createdAt: rfc3339(secret.metadata?.creationTimestamp ?? now),
          userSupplied: true,
        });
      continue;
    }
    if (secret && !ownedBy(secret, uid)) {
      problems.push({
        condition: "CredentialsIssued",
        reason: "SecretConflict",
        message: `Secret ${secretName} exists and is not owned by this SmtpDomain; the operator never overwrites it`,
      });
      continue;
    }
    if (secret?.metadata?.annotations?.[revokedAtAnnotation]) {
      retired.add(version);
      previouslyRetired.add(version);
    }
    const record = recorded.get(version);
    if (record?.passwordSha256 && record.username) {
      // Issued before: the relay goes on accepting what was issued, whatever the Secret says now.
      const unchanged =
        username === record.username && password !== undefined && sameDigest(passwordDigest(password), record.passwordSha256);
      if (!unchanged) {
        const what = !secret ? "was deleted" : !username || !password ? "lost its username or password" : "was edited by hand";
        modified.set(version, {
          condition: "CredentialsIssued",
          reason: "SecretModified",
          message: `Secret ${secretName} (credentials version ${version}) ${what}; the relay still accepts only the password issued for version ${version} and nothing else is issued for it: restore the issued username and password, or rotate (add the next version, then revoke this one)`,
        });
      }
      issued.set(version, {
        version,
        secretName,
        username: record.username,
        passwordSha256: record.passwordSha256,
        ...(unchanged ? { password: password } : {}),
        createdAt: record.createdAt ?? rfc3339(secret?.metadata?.creationTimestamp ?? now),
        userSupplied: false,
      });
      if (unchanged) intact.push({ version, secret: secret!, username: username, password: password });
      continue;
    }
    if (secret && username && password) {
      // Ours, not yet recorded (issued by an earlier operator version, or status was lost): recorded from it now.
      issued.set(version, {
        version,
        secretName,
        username,
        password,
        passwordSha256: passwordDigest(password),
        createdAt: rfc3339(secret.metadata?.creationTimestamp ?? now),
        userSupplied: false,
      });
      intact.push({ version, secret, username, password });
      continue;
    }
    // A revoked version is never issued (again).
    if (retired.has(version) || declared.state === "Revoked") continue;
    // Created, never applied over (issueCredential): if another writer (a second replica in a hand-over)
    // issued it first, the create fails with 409 and the next gather reads theirs.
    toIssue.push({
      version,
      secretName,
      host,
      ...(secret ? { resourceVersion: secret.metadata!.resourceVersion! } : {}),
      ...(caPem !== undefined ? { caPem } : {}),
    });
  }

  const plan = planCredentials(domain, issued, now, retired, issuedSecrets);
  for (const p of plan) {
    const problem = modified.get(p.version);
    if (problem && p.state === "Active") problems.push(problem);
    if (p.reactivationRefused) {
      const next = Math.max(0, ...retired, ...plan.map((q) => q.version)) + 1;
      problems.push({
        condition: "CredentialsIssued",
        reason: "VersionRevoked",
        message: `credential version ${p.version} was revoked or expired before and is never made Active again (the relay keeps refusing it): mark it Revoked or remove it from spec.inbound.credentials, and add version ${next} to rotate`,
      });
    }
    if (p.state !== "Active") retired.add(p.version);
  }
  let first: Problem | undefined;
  if (inboundMode(domain) === "Authenticated" && !plan.some((p) => p.state === "Active")) {
    first = {
      condition: "CredentialsIssued",
      reason: "NoActiveCredential",
      message:
        "every credential version is revoked or expired, so nothing can arrive authenticated: add a version with the next unused number to spec.inbound.credentials",
    };
  }

  // The Secrets that still hold what was issued: snippets follow the host name
  // and CA; a retired version's Secret carries its revocation.
  const refresh: WriteIfUnchanged[] = [];
  for (const { version, secret, username, password } of intact) {
    const revokedAt = retired.has(version) ? (secret.metadata?.annotations?.[revokedAtAnnotation] ?? rfc3339(now)) : undefined;
    const snippets = clientSnippets(domain.spec.domain, host, username, password, caPem);
    const stale =
      Object.entries(snippets).some(([key, value]) => decode(secret.data?.[key]) !== value) ||
      (!caPem && secret.data?.["ca.crt"] !== undefined) ||
      secret.metadata?.annotations?.[revokedAtAnnotation] !== revokedAt;
    if (stale)
      refresh.push({
        object: credentialSecret(domain, version, { username, password }, snippets, revokedAt),
        resourceVersion: secret.metadata!.resourceVersion!,
      });
  }
  const events: PlannedCredentials["events"] = [];
  for (const version of retired) {
    if (!previouslyRetired.has(version) && issued.has(version)) {
      const why = inboundMode(domain) === "Forwarded" ? "revoked by the switch to inbound mode Forwarded" : "revoked or expired";
      events.push({
        type: "Normal",
        reason: "CredentialRevoked",
        message: `inbound credential version ${version} is ${why}: the relay refuses it from now on, and it is never made Active again`,
      });
    }
  }
  return { issued, plan, retired, problems, issue: toIssue, refresh, events, ...(first ? { first } : {}) };
}

/**
 * Issues what planInboundCredentials decided: a new username and password into the version's Secret,
 * created (or an empty one of ours filled if unchanged since read), never applied over, and says so.
 */
export async function issueCredential(cluster: Cluster, domain: SmtpDomain, issue: CredentialIssue): Promise<void> {
  const fresh = newCredential(domain, issue.version);
  const object = credentialSecret(
    domain,
    issue.version,
    fresh,
    clientSnippets(domain.spec.domain, issue.host, fresh.username, fresh.password, issue.caPem),
  );
  if (issue.resourceVersion) await cluster.applyIfUnchanged(object, issue.resourceVersion);
  else await cluster.create(object);
  await recordEvent(
    cluster,
    involved(domain),
    "Normal",
    "CredentialIssued",
    `inbound credential version ${issue.version} issued into Secret ${issue.secretName}`,
  );
}
