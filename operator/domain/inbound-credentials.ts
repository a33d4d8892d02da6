// The inbound credential Secrets of one SmtpDomain: read, issued when
// missing, and held against what was issued. Two records make the lifecycle
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
import { credentialSecret, relayHostname, type OperatorSettings } from "./render.js";

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

/** `withheld`: the listed host names another domain holds; the snippets name one the certificate covers. */
export async function inboundCredentials(
  cluster: Cluster,
  domain: SmtpDomain,
  settings: OperatorSettings,
  caPem: string | undefined,
  problems: Problem[],
  now: Date,
  withheld?: ReadonlySet<string>,
): Promise<InboundCredentials> {
  const namespace = domain.metadata.namespace!;
  const uid = domain.metadata.uid!;
  const recorded = new Map((domain.status?.credentials ?? []).map((c) => [c.version, c]));
  const previouslyRetired = new Set(domain.status?.revokedVersions ?? []);
  const retired = new Set(previouslyRetired);
  const issued = new Map<number, IssuedCredential>();
  const intact: Intact[] = [];
  // Reported once the plan says the version is still Active: a revoked version's Secret may go.
  const modified = new Map<number, Problem>();
  const host = relayHostname(domain, settings, withheld);

  // Forwarded: every version this domain has a Secret of is revoked, recorded or not (a reconcile may have
  // issued one and stopped before writing status).
  const issuedSecrets = inboundMode(domain) === "Forwarded" ? await credentialSecretVersions(cluster, domain) : [];
  for (const declared of declaredCredentials(domain, issuedSecrets)) {
    const { version } = declared;
    const secretName = declared.secretRef?.name ?? credentialSecretName(domain, version);
    const secret = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, secretName);
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
    const fresh = newCredential(domain, version);
    const issue = credentialSecret(domain, version, fresh, clientSnippets(domain.spec.domain, host, fresh.username, fresh.password, caPem));
    // Created, never applied over: if another writer (a second replica in a
    // hand-over) issued it first, this fails with 409 and the reconcile reads
    // theirs. An empty Secret of ours that was never recorded is filled in place.
    if (secret) await cluster.applyIfUnchanged(issue, secret.metadata!.resourceVersion!);
    else await cluster.create(issue);
    await recordEvent(
      cluster,
      involved(domain),
      "Normal",
      "CredentialIssued",
      `inbound credential version ${version} issued into Secret ${secretName}`,
    );
    issued.set(version, {
      version,
      secretName,
      ...fresh,
      passwordSha256: passwordDigest(fresh.password),
      createdAt: rfc3339(now),
      userSupplied: false,
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
  if (inboundMode(domain) === "Authenticated" && !plan.some((p) => p.state === "Active")) {
    problems.unshift({
      condition: "CredentialsIssued",
      reason: "NoActiveCredential",
      message:
        "every credential version is revoked or expired, so nothing can arrive authenticated: add a version with the next unused number to spec.inbound.credentials",
    });
  }

  // The Secrets that still hold what was issued: snippets follow the host name
  // and CA; a retired version's Secret carries its revocation.
  for (const { version, secret, username, password } of intact) {
    const revokedAt = retired.has(version) ? (secret.metadata?.annotations?.[revokedAtAnnotation] ?? rfc3339(now)) : undefined;
    const snippets = clientSnippets(domain.spec.domain, host, username, password, caPem);
    const stale =
      Object.entries(snippets).some(([key, value]) => decode(secret.data?.[key]) !== value) ||
      (!caPem && secret.data?.["ca.crt"] !== undefined) ||
      secret.metadata?.annotations?.[revokedAtAnnotation] !== revokedAt;
    if (stale)
      await cluster.applyIfUnchanged(
        credentialSecret(domain, version, { username, password }, snippets, revokedAt),
        secret.metadata!.resourceVersion!,
      );
  }
  for (const version of retired) {
    if (!previouslyRetired.has(version) && issued.has(version)) {
      const why = inboundMode(domain) === "Forwarded" ? "revoked by the switch to inbound mode Forwarded" : "revoked or expired";
      await recordEvent(
        cluster,
        involved(domain),
        "Normal",
        "CredentialRevoked",
        `inbound credential version ${version} is ${why}: the relay refuses it from now on, and it is never made Active again`,
      );
    }
  }
  return { issued, plan, retired };
}
