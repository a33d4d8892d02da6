// The relay's TLS certificate for one SmtpDomain: a referenced Secret (e.g.
// cert-manager's) is judged; otherwise the operator issues one from the
// installation's CA into a Secret the domain owns, and renews it well before
// it expires. Either way the relay hot-reloads the mounted files.
import type * as k8s from "@kubernetes/client-node";
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain, SmtpDomainStatus } from "../../crds/schema.js";
import { rfc3339, type DesiredCondition } from "../conditions.js";
import { involved, recordEvent } from "../events.js";
import { ActionNeeded } from "../failures.js";
import { ApiError, ownedBy, type Cluster } from "../kube/cluster.js";
import type { TimedCache } from "../timed-cache.js";
import {
  defaultCertificatePolicy,
  inspectCertificate,
  issueServerCertificate,
  judgeCertificate,
  newCertificateAuthority,
  nextVerdictChange,
  renewalReason,
  renewalTime,
  type CertificateFacts,
  type KeyPair,
} from "../tls/certificates.js";
import { certificateNames, customerHostnames, names, relayTlsSecret, type OperatorSettings } from "./render.js";

export interface CertificateState {
  /** The CertificateReady condition. */
  condition: DesiredCondition;
  status?: NonNullable<SmtpDomainStatus["tls"]>;
  /** The CA a customer's server must trust, when the operator issued the certificate. */
  caPem?: string;
  /** When the certificate must be looked at again (renewal, near expiry, expiry). */
  nextCheck?: Date;
}

export const defaultCaSecret = { namespace: "smtp-connector-system", name: "smtp-connector-ca" };

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));
const failed = (reason: ReasonName, message: string): CertificateState => ({ condition: { type: "CertificateReady", status: "False", reason, message } });


/**
 * The installation's CA, created on first use. Created with POST, never
 * applied: if two operators race, the second one reads the first one's CA.
 */
// The CA is read once in a while, not on every reconcile (`caCache`, the
// Controller's); an event on its Secret forgets it at once (see the controller).
async function certificateAuthority(cluster: Cluster, settings: OperatorSettings, now: Date, caCache: TimedCache<KeyPair>): Promise<KeyPair> {
  const { namespace, name } = settings.caSecret ?? defaultCaSecret;
  return caCache.get(`${namespace}/${name}`, 60_000, async () => {
    const read = async (): Promise<KeyPair | undefined> => {
      const secret = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, name);
      if (!secret) return undefined;
      const certPem = decode(secret.data?.["tls.crt"]);
      const keyPem = decode(secret.data?.["tls.key"]);
      if (!certPem || !keyPem) throw new Error(`the operator's CA Secret ${namespace}/${name} has no tls.crt and tls.key: delete it to have a new CA issued`);
      const facts = inspectCertificate(certPem, keyPem);
      if (!facts.keyMatches) throw new Error(`the operator's CA Secret ${namespace}/${name}: tls.key does not belong to tls.crt`);
      return { certPem, keyPem };
    };
    const existing = await read();
    if (existing) return existing;
    const ca = newCertificateAuthority(namespace, now);
    const { status } = await cluster.write(
      "POST",
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name, namespace, labels: { "app.kubernetes.io/managed-by": "smtp-connector", "app.kubernetes.io/component": "ca" } },
        type: "kubernetes.io/tls",
        stringData: { "tls.crt": ca.certPem, "tls.key": ca.keyPem },
      },
      [404, 409],
    );
    if (status === 404) {
      // The Secret's namespace is missing (e.g. the operator started by hand on a fresh cluster).
      throw new ActionNeeded(
        `the operator cannot keep its CA: namespace ${namespace} (--ca-secret ${namespace}/${name}) does not exist; create it (kubectl create namespace ${namespace}) or point --ca-secret at an existing namespace`,
      );
    }
    if (status !== 409) return ca;
    const raced = await read();
    if (!raced) throw new Error(`the operator's CA Secret ${namespace}/${name} was created and deleted at once`);
    return raced;
  });
}

function statusOf(secretName: string, facts: CertificateFacts, issuedByOperator: boolean, renewAt?: Date): NonNullable<SmtpDomainStatus["tls"]> {
  return {
    secretName,
    issuedByOperator,
    dnsNames: facts.dnsNames.slice(0, 64),
    issuer: facts.issuer,
    notAfter: rfc3339(facts.notAfter),
    ...(renewAt ? { renewalTime: rfc3339(renewAt) } : {}),
  };
}

const earliest = (...dates: (Date | undefined)[]) => dates.filter((d): d is Date => d !== undefined).sort((a, b) => a.getTime() - b.getTime())[0];

/** `withheld`: host names another SmtpDomain holds (hostname-claims.ts), never issued to this one. */
export async function relayCertificate(
  cluster: Cluster,
  domain: SmtpDomain,
  settings: OperatorSettings,
  now: Date,
  caCache: TimedCache<KeyPair>,
  withheld: ReadonlySet<string> = new Set(),
): Promise<CertificateState> {
  const namespace = domain.metadata.namespace!;
  const secretName = names(domain).tls;
  const hostnames = customerHostnames(domain, settings, withheld);
  const secret = await cluster.read<k8s.V1Secret>("v1", "Secret", namespace, secretName);

  if (domain.spec.relay?.tls?.secretName) {
    if (!secret) {
      return failed("SecretNotFound", `the relay's TLS Secret ${secretName} does not exist: create a kubernetes.io/tls Secret (e.g. with cert-manager) for ${hostnames.join(", ")}, or remove spec.relay.tls to have the operator issue one`);
    }
    const certPem = decode(secret.data?.["tls.crt"]);
    const keyPem = decode(secret.data?.["tls.key"]);
    if (!certPem || !keyPem) return failed("SecretInvalid", `the relay's TLS Secret ${secretName} needs tls.crt and tls.key`);
    let facts: CertificateFacts;
    try {
      facts = inspectCertificate(certPem, keyPem);
    } catch (error) {
      return failed("SecretInvalid", `the relay's TLS Secret ${secretName}: ${(error as Error).message}`);
    }
    const verdict = judgeCertificate(facts, secretName, hostnames, now, false);
    const nextCheck = nextVerdictChange(facts, now);
    return { condition: { type: "CertificateReady", ...verdict }, status: statusOf(secretName, facts, false), ...(nextCheck ? { nextCheck } : {}) };
  }

  if (secret && !ownedBy(secret, domain.metadata.uid!)) {
    return failed("SecretConflict", `Secret ${secretName} exists and is not owned by this SmtpDomain; the operator never overwrites it (name it in spec.relay.tls.secretName to use it)`);
  }
  let ca: KeyPair;
  try {
    ca = await certificateAuthority(cluster, settings, now, caCache);
  } catch (error) {
    // What only a change fixes (its namespace is missing), and what the API refused (no permission,
    // unreachable: retried with backoff): on the domain as ReconcileFailed, not as a bad CA.
    if (error instanceof ActionNeeded) throw error;
    if (error instanceof ApiError) {
      const { namespace: caNamespace, name } = settings.caSecret ?? defaultCaSecret;
      throw new Error(`reading or creating the operator's CA Secret ${caNamespace}/${name} failed (does the namespace exist? set --ca-secret to the operator's own namespace): ${error.message}`);
    }
    return failed("CAInvalid", (error as Error).message);
  }
  const policy = settings.certificates ?? defaultCertificatePolicy;
  const wanted = certificateNames(domain, settings, withheld);
  let pair: KeyPair | undefined;
  let facts: CertificateFacts | undefined;
  let reason = "none was issued yet";
  const certPem = decode(secret?.data?.["tls.crt"]);
  const keyPem = decode(secret?.data?.["tls.key"]);
  if (certPem && keyPem) {
    try {
      facts = inspectCertificate(certPem, keyPem, ca.certPem);
      pair = { certPem, keyPem };
      // A name the domain no longer lists, or that another domain holds, leaves its certificate at once.
      const extra = facts.dnsNames.filter((name) => !wanted.includes(name.toLowerCase()));
      reason = extra.length > 0 ? `it covers ${extra.join(", ")}, no longer this domain's` : (renewalReason(facts, wanted, now, policy) ?? "");
    } catch (error) {
      reason = (error as Error).message;
    }
  }
  if (reason || !pair || !facts || decode(secret?.data?.["ca.crt"]) !== ca.certPem) {
    if (reason || !pair || !facts) {
      pair = issueServerCertificate(ca, wanted, now, policy);
      facts = inspectCertificate(pair.certPem, pair.keyPem, ca.certPem);
    }
    await cluster.apply(relayTlsSecret(domain, pair, ca.certPem));
    if (reason) await recordEvent(cluster, involved(domain), "Normal", "CertificateIssued", `relay certificate issued into Secret ${secretName} (${reason}), valid until ${facts.notAfter.toISOString()}`);
  }
  const renewAt = renewalTime(facts, policy);
  const verdict = judgeCertificate(facts, secretName, hostnames, now, true);
  return {
    condition: { type: "CertificateReady", ...verdict },
    status: statusOf(secretName, facts, true, renewAt),
    caPem: ca.certPem,
    nextCheck: earliest(renewAt, nextVerdictChange(facts, now)),
  };
}
