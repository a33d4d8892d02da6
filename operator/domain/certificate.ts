// The relay's TLS certificate for one SmtpDomain: a referenced Secret (e.g.
// cert-manager's) is judged; otherwise the operator issues one from the
// installation's CA into a Secret the domain owns, and renews it well before
// it expires. Either way the relay hot-reloads the mounted files. What to do
// is decided purely from the Secret as read (planCertificate); the reconcile's
// apply step makes the key pair and writes it (issueCertificate).
import type * as k8s from "@kubernetes/client-node";
import { X509Certificate } from "node:crypto";
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain, SmtpDomainStatus } from "../../crds/schema.js";
import { rfc3339, type DesiredCondition } from "../conditions.js";
import { involved, recordEvent } from "../events.js";
import { ownedBy, type Cluster } from "../kube/cluster.js";
import {
  defaultCertificatePolicy,
  inspectCertificate,
  issueServerCertificate,
  judgeCertificate,
  nextVerdictChange,
  renewalReason,
  renewalTime,
  type CertificateFacts,
  type KeyPair,
} from "../tls/certificates.js";
import { hostnameNotAllowedMessage, permittedDnsNames, refusedHostnames, type HostnamePolicy } from "../tls/name-policy.js";
import type { NameConstraints } from "../tls/x509.js";
import type { PlannedEvent } from "./plan.js";
import { signerFor, type CaState } from "../tls/ca-rotation.js";
import {
  certificateNames,
  customerHostnames,
  defaultRelayHostname,
  names,
  relayTlsSecret,
  type KubeObject,
  type OperatorSettings,
} from "./render.js";

export interface CertificateState {
  /** The CertificateReady condition. */
  condition: DesiredCondition;
  status?: NonNullable<SmtpDomainStatus["tls"]>;
  /** The CAs a customer's server must trust (one, two during a CA rotation), when the operator issued the certificate. */
  caPem?: string;
  /** When the certificate must be looked at again (renewal, near expiry, expiry). */
  nextCheck?: Date;
}

export const defaultCaSecret = { namespace: "smtp-connector-system", name: "smtp-connector-ca" };

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));
/** The names an operator-issued relay certificate may carry, as the CA's critical NameConstraints say them. */
export function caNameConstraints(settings: OperatorSettings): NameConstraints {
  return {
    permittedDnsNames: permittedDnsNames(settings.allowedHostnameSuffixes ?? [], settings.relayHostSuffix),
    excludeAllIpAddresses: true,
  };
}

const hostnamePolicy = (domain: SmtpDomain, settings: OperatorSettings): HostnamePolicy => ({
  allowedSuffixes: settings.allowedHostnameSuffixes ?? [],
  defaultHostname: defaultRelayHostname(domain, settings),
});

const failed = (reason: ReasonName, message: string): CertificateState => ({
  condition: { type: "CertificateReady", status: "False", reason, message },
});

/** The installation's CA (installation-ca.ts): the key pair that signs, and the bundle a customer's server trusts (ca.crt). */
export interface CertificateAuthority extends KeyPair {
  /** The signing CA, the next one (a rotation's phase 1), then any CA it replaced while a certificate from that one may still be valid. */
  trustPem: string;
  /** Where the rotation stands (ca-rotation.ts): which CA signs which names (signerFor), and the next CA. */
  state: CaState;
  /** When the CA Secret must be looked at again without any event: phase 2 begins, or a retired CA is dropped. */
  nextChange?: Date;
}

function statusOf(
  secretName: string,
  facts: CertificateFacts,
  issuedByOperator: boolean,
  renewAt?: Date,
): NonNullable<SmtpDomainStatus["tls"]> {
  return {
    secretName,
    issuedByOperator,
    dnsNames: facts.dnsNames.slice(0, 64),
    issuer: facts.issuer,
    notAfter: rfc3339(facts.notAfter),
    ...(renewAt ? { renewalTime: rfc3339(renewAt) } : {}),
  };
}

const earliest = (...dates: (Date | undefined)[]) =>
  dates.filter((d): d is Date => d !== undefined).sort((a, b) => a.getTime() - b.getTime())[0];

/** The installation's CA as planned for a domain's certificate (planCa, installation-ca.ts), or why it cannot be used (CAInvalid). */
export type CaRead = { ca: CertificateAuthority } | { invalid: string };

/**
 * Whether the relay's certificate is the operator's to issue, and so the installation's CA is needed:
 * every host name is allowed, no TLS Secret is referenced, and the Secret of that name is not someone
 * else's. Pure.
 */
export function issuesCertificate(domain: SmtpDomain, settings: OperatorSettings, secret: k8s.V1Secret | undefined): boolean {
  if (refusedHostnames(customerHostnames(domain, settings), hostnamePolicy(domain, settings)).length > 0) return false;
  if (domain.spec.relay?.tls?.secretName) return false;
  return !(secret && !ownedBy(secret, domain.metadata.uid!));
}

/** A certificate to issue (or reissue) from the installation's CA: the key pair is made when it is issued, not planned. */
export interface CertificateIssue {
  secretName: string;
  dnsNames: string[];
  /** Why (for the CertificateIssued Event): none yet, a name changed, renewal due, … */
  reason: string;
  /** The CA bundle that goes into the Secret's ca.crt. */
  trustPem: string;
  /**
   * Which of the CAs read signs it (signerFor: in a rotation's phase 1, the next one for names only it
   * permits). By name, not its key: the apply step takes the key from what was read.
   */
  signer: "signing" | "next";
  /** The rotation's announcement, when this Secret did not carry the next CA yet. */
  announce?: PlannedEvent;
}

/**
 * The relay's certificate, decided from its Secret as read (undefined: it does not exist) and, when the
 * operator issues it, the installation's CA: its state, or the certificate to issue first. An issued
 * certificate whose Secret lacks the current trust bundle (a CA rotation) gets it (`apply`). Pure.
 * `withheld`: host names another SmtpDomain holds (hostname-claims.ts), never issued to this one.
 */
export function planCertificate(
  domain: SmtpDomain,
  settings: OperatorSettings,
  now: Date,
  secret: k8s.V1Secret | undefined,
  caRead: CaRead | undefined,
  withheld: ReadonlySet<string> = new Set(),
): { state: CertificateState; apply?: KubeObject; events?: PlannedEvent[] } | { issue: CertificateIssue } {
  const secretName = names(domain).tls;
  // Names the installation does not allow: nothing is signed for the domain, and a referenced
  // certificate is not served for them either (the names are what customers connect to).
  const allowed = hostnamePolicy(domain, settings);
  const refused = refusedHostnames(customerHostnames(domain, settings), allowed);
  if (refused.length > 0)
    return { state: failed("HostnameNotAllowed", hostnameNotAllowedMessage(refused, allowed, !domain.spec.relay?.tls?.secretName)) };
  const hostnames = customerHostnames(domain, settings, withheld);

  if (domain.spec.relay?.tls?.secretName) {
    if (!secret) {
      return {
        state: failed(
          "SecretNotFound",
          `the relay's TLS Secret ${secretName} does not exist: create a kubernetes.io/tls Secret (e.g. with cert-manager) for ${hostnames.join(", ")}, or remove spec.relay.tls to have the operator issue one`,
        ),
      };
    }
    const certPem = decode(secret.data?.["tls.crt"]);
    const keyPem = decode(secret.data?.["tls.key"]);
    if (!certPem || !keyPem) return { state: failed("SecretInvalid", `the relay's TLS Secret ${secretName} needs tls.crt and tls.key`) };
    let facts: CertificateFacts;
    try {
      facts = inspectCertificate(certPem, keyPem);
    } catch (error) {
      return { state: failed("SecretInvalid", `the relay's TLS Secret ${secretName}: ${(error as Error).message}`) };
    }
    const verdict = judgeCertificate(facts, secretName, hostnames, now, false);
    const nextCheck = nextVerdictChange(facts, now);
    return {
      state: {
        condition: { type: "CertificateReady", ...verdict },
        status: statusOf(secretName, facts, false),
        ...(nextCheck ? { nextCheck } : {}),
      },
    };
  }

  if (secret && !ownedBy(secret, domain.metadata.uid!)) {
    return {
      state: failed(
        "SecretConflict",
        `Secret ${secretName} exists and is not owned by this SmtpDomain; the operator never overwrites it (name it in spec.relay.tls.secretName to use it)`,
      ),
    };
  }
  if (!caRead) throw new Error(`planCertificate: the installation's CA was not gathered for ${domain.metadata.name}`);
  if ("invalid" in caRead) return { state: failed("CAInvalid", caRead.invalid) };
  const { ca } = caRead;
  const policy = settings.certificates ?? defaultCertificatePolicy;
  const wanted = certificateNames(domain, settings, withheld);
  let pair: KeyPair | undefined;
  let facts: CertificateFacts | undefined;
  let reason = "none was issued yet";
  const certPem = decode(secret?.data?.["tls.crt"]);
  const keyPem = decode(secret?.data?.["tls.key"]);
  // The signing CA, or in a rotation's phase 1 the next one for names only it permits.
  const signer = signerFor(ca.state, wanted);
  if (certPem && keyPem) {
    try {
      facts = inspectCertificate(certPem, keyPem, signer.certPem);
      pair = { certPem, keyPem };
      // A name the domain no longer lists, or that another domain holds, leaves its certificate at once.
      const extra = facts.dnsNames.filter((name) => !wanted.includes(name.toLowerCase()));
      reason =
        extra.length > 0 ? `it covers ${extra.join(", ")}, no longer this domain's` : (renewalReason(facts, wanted, now, policy) ?? "");
    } catch (error) {
      reason = (error as Error).message;
    }
  }
  if (reason || !pair || !facts)
    return {
      issue: {
        secretName,
        dnsNames: wanted,
        reason: reason || "none was issued yet",
        trustPem: ca.trustPem,
        signer: signer === ca.state.signing ? "signing" : "next",
        announce: announcedAnew(ca, secret),
      },
    };
  const renewAt = renewalTime(facts, policy);
  const verdict = judgeCertificate(facts, secretName, hostnames, now, true);
  const announced = announcement(ca);
  const state: CertificateState = {
    condition: { type: "CertificateReady", ...verdict, ...(announced ? { message: `${verdict.message}; ${announced.message}` } : {}) },
    status: { ...statusOf(secretName, facts, true, renewAt), ...(announced ? { nextCA: announced.status } : {}) },
    caPem: ca.trustPem,
    nextCheck: earliest(renewAt, nextVerdictChange(facts, now), ca.nextChange),
  };
  if (decode(secret?.data?.["ca.crt"]) === ca.trustPem) return { state };
  const announce = announcedAnew(ca, secret);
  return { state, apply: relayTlsSecret(domain, pair, ca.trustPem), ...(announce ? { events: [announce] } : {}) };
}

/** A rotation's phase 1, as each operator-issued domain tells it: which CA is new, and from when it signs. */
function announcement(ca: CertificateAuthority): { status: { fingerprint: string; signsFrom: string }; message: string } | undefined {
  const next = ca.state.next;
  if (!next) return undefined;
  const fingerprint = new X509Certificate(next.pair.certPem).fingerprint256;
  const signsFrom = rfc3339(next.signsFrom);
  return {
    status: { fingerprint, signsFrom },
    message: `the installation's CA is being replaced: a new CA (SHA-256 ${fingerprint}) is in ca.crt from now and signs this relay's certificate from ${signsFrom}; a customer's server that keeps its own copy of ca.crt must get the new one (both CAs) before then`,
  };
}

/** The announcement, when the domain's TLS Secret does not carry the next CA yet: it is told once, as the bundle changes. */
function announcedAnew(ca: CertificateAuthority, secret: k8s.V1Secret | undefined): PlannedEvent | undefined {
  const announced = announcement(ca);
  if (!announced || decode(secret?.data?.["ca.crt"])?.includes(ca.state.next!.pair.certPem.trim())) return undefined;
  return { type: "Normal", reason: "CARotationAnnounced", message: announced.message };
}

/**
 * Issues what planCertificate decided: a new key pair signed by the installation's CA (`ca`, the state the
 * plan was made from), into the domain's TLS Secret.
 */
export async function issueCertificate(
  cluster: Cluster,
  domain: SmtpDomain,
  issue: CertificateIssue,
  ca: CaState,
  settings: OperatorSettings,
  now: Date,
): Promise<void> {
  const signer = issue.signer === "next" ? ca.next?.pair : ca.signing;
  if (!signer) throw new Error(`issueCertificate: no next CA was read to sign ${issue.secretName}`);
  const pair = issueServerCertificate(signer, issue.dnsNames, now, settings.certificates ?? defaultCertificatePolicy);
  const { notAfter } = inspectCertificate(pair.certPem, pair.keyPem, signer.certPem);
  await cluster.apply(relayTlsSecret(domain, pair, issue.trustPem));
  if (issue.announce) await recordEvent(cluster, involved(domain), issue.announce.type, issue.announce.reason, issue.announce.message);
  await recordEvent(
    cluster,
    involved(domain),
    "Normal",
    "CertificateIssued",
    `relay certificate issued into Secret ${issue.secretName} (${issue.reason}), valid until ${notAfter.toISOString()}`,
  );
}
