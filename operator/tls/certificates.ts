// The relay's TLS certificate: the per-installation CA, the certificates it
// issues for each domain's relay, and the rules that judge any certificate
// (operator-issued or referenced) against the names the customer's server
// uses. Pure, apart from key generation.
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { isIP } from "node:net";
import { issueCertificate, type DistinguishedName, type NameConstraints } from "./x509.js";

export interface KeyPair {
  certPem: string;
  keyPem: string;
}

export interface CertificatePolicy {
  /** Lifetime of an operator-issued relay certificate. */
  durationMs: number;
  /** An operator-issued certificate is renewed this long before it expires. */
  renewBeforeMs: number;
  /** How long a new installation CA is published before it signs (--ca-rotation-notice; default ca-rotation.ts). */
  caRotationNoticeMs?: number;
}

export const defaultCertificatePolicy: CertificatePolicy = { durationMs: 90 * 86_400_000, renewBeforeMs: 30 * 86_400_000 };
const caLifetimeMs = 10 * 365 * 86_400_000;
/** Issued a little in the past (5 minutes, less for a short life), so a peer whose clock lags does not see "not yet valid". */
const backdate = (lifetimeMs: number) => Math.min(5 * 60_000, lifetimeMs / 10);

const caSubject = (installation: string): DistinguishedName => ({
  organization: "smtp-connector",
  commonName: `smtp-connector relay CA ${installation}`.slice(0, 64),
});

const newKey = () => generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
const pkcs8 = (key: KeyObject) => key.export({ format: "pem", type: "pkcs8" }).toString();

/**
 * A new CA for one installation of the operator (named after its CA Secret's
 * namespace). The operator always passes name constraints: the DNS subtrees
 * its relay certificates may name, and no IP address.
 */
export function newCertificateAuthority(installation: string, now: Date, nameConstraints?: NameConstraints): KeyPair {
  const key = newKey();
  const subject = caSubject(installation);
  const certPem = issueCertificate(
    {
      subject,
      publicKey: key,
      notBefore: new Date(now.getTime() - backdate(caLifetimeMs)),
      notAfter: new Date(now.getTime() + caLifetimeMs),
      ca: true,
      ...(nameConstraints ? { nameConstraints } : {}),
    },
    { subject, privateKey: key },
  );
  return { certPem, keyPem: pkcs8(key) };
}

/** A relay's server certificate for `names` (the first one is its common name), signed by the CA. */
export function issueServerCertificate(ca: KeyPair, names: readonly string[], now: Date, policy: CertificatePolicy): KeyPair {
  const caCert = new X509Certificate(ca.certPem);
  const caKey = createPrivateKey(ca.keyPem);
  const key = newKey();
  const commonName = names.find((n) => n.length <= 64 && !isIP(n)) ?? "smtp-connector relay";
  const certPem = issueCertificate(
    {
      subject: { commonName },
      publicKey: key,
      notBefore: new Date(now.getTime() - backdate(policy.durationMs)),
      notAfter: new Date(now.getTime() + policy.durationMs),
      subjectAltNames: names,
    },
    { subject: subjectOf(caCert), privateKey: caKey },
  );
  return { certPem, keyPem: pkcs8(key) };
}

/** The issuer DN as we wrote it (O then CN), read back from a CA certificate. */
function subjectOf(cert: X509Certificate): DistinguishedName {
  const field = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(cert.subject)?.[1];
  const organization = field("O");
  return { commonName: field("CN") ?? "", ...(organization ? { organization } : {}) };
}

/** What a certificate and key say about themselves. */
export interface CertificateFacts {
  dnsNames: string[];
  notBefore: Date;
  notAfter: Date;
  issuer: string;
  /** The private key belongs to the certificate. */
  keyMatches: boolean;
  /** Issued by the given CA (when one is given). */
  issuedBy?: boolean;
  serialNumber: string;
}

/** Parses a PEM certificate (the first in a chain) and its key; throws a readable error when either is malformed. */
export function inspectCertificate(certPem: string, keyPem: string, ca?: string): CertificateFacts {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (error) {
    throw new Error(`tls.crt is not a PEM certificate (${(error as Error).message})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw new Error(`tls.key is not a PEM private key (${(error as Error).message})`);
  }
  const spki = (k: KeyObject) => k.export({ format: "der", type: "spki" });
  const dnsNames = (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:") || entry.startsWith("IP Address:"))
    .map((entry) => entry.replace(/^(DNS|IP Address):/, ""));
  return {
    dnsNames,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    issuer: cert.issuer.replace(/\n/g, ", "),
    keyMatches: spki(createPublicKey(key)).equals(spki(cert.publicKey)),
    ...(ca !== undefined ? { issuedBy: issuedByCa(cert, ca) } : {}),
    serialNumber: cert.serialNumber,
  };
}

function issuedByCa(cert: X509Certificate, caPem: string): boolean {
  try {
    const ca = new X509Certificate(caPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** Whether a certificate's names cover a host name, with RFC 6125 wildcard rules (one leftmost label). */
export function covers(dnsNames: readonly string[], host: string): boolean {
  const wanted = host.toLowerCase();
  return dnsNames.some((raw) => {
    const name = raw.toLowerCase();
    if (name === wanted) return true;
    if (!name.startsWith("*.")) return false;
    const dot = wanted.indexOf(".");
    return dot > 0 && wanted.slice(dot + 1) === name.slice(2);
  });
}

/** Why an operator-issued certificate must be issued again, or undefined when it is still good. */
export function renewalReason(facts: CertificateFacts, names: readonly string[], now: Date, policy: CertificatePolicy): string | undefined {
  if (!facts.keyMatches) return "its key does not match the certificate";
  if (facts.issuedBy === false) return "it was issued by another CA";
  const missing = names.filter((n) => !covers(facts.dnsNames, n));
  if (missing.length > 0) return `it does not cover ${missing.join(", ")}`;
  if (now.getTime() >= renewalTime(facts, policy).getTime()) return `it expires at ${facts.notAfter.toISOString()}`;
  return undefined;
}

/** When an operator-issued certificate is renewed: renewBefore ahead of expiry, or at two thirds of a life shorter than that. */
export function renewalTime(facts: Pick<CertificateFacts, "notBefore" | "notAfter">, policy: CertificatePolicy): Date {
  const lifetime = facts.notAfter.getTime() - facts.notBefore.getTime();
  return new Date(facts.notAfter.getTime() - (policy.renewBeforeMs < lifetime ? policy.renewBeforeMs : lifetime / 3));
}

/** From when a certificate counts as expiring soon: the last third of its life, at most 14 days. */
function warningTime(facts: Pick<CertificateFacts, "notBefore" | "notAfter">): Date {
  const lifetime = facts.notAfter.getTime() - facts.notBefore.getTime();
  return new Date(facts.notAfter.getTime() - Math.min(14 * 86_400_000, lifetime / 3));
}

export type CertificateVerdict =
  | { status: "True"; reason: "Issued" | "Valid" | "ExpiringSoon"; message: string }
  | { status: "False"; reason: "Expired" | "NotYetValid" | "KeyMismatch" | "HostnamesNotCovered"; message: string };

/**
 * Judges a certificate the relay serves against the host names the customer's
 * server connects to. Expiring soon (less than a third of its life, at most 14
 * days, left) is a warning, not a failure: the relay still serves.
 */
export function judgeCertificate(
  facts: CertificateFacts,
  secretName: string,
  hostnames: readonly string[],
  now: Date,
  operatorIssued: boolean,
): CertificateVerdict {
  const expiry = facts.notAfter.toISOString();
  if (!facts.keyMatches)
    return {
      status: "False",
      reason: "KeyMismatch",
      message: `Secret ${secretName}: tls.key is not the key of the certificate in tls.crt`,
    };
  if (now.getTime() >= facts.notAfter.getTime()) {
    return {
      status: "False",
      reason: "Expired",
      message: `the relay's certificate in Secret ${secretName} expired at ${expiry}; ${operatorIssued ? "the operator could not renew it" : "renew it (or let cert-manager renew it)"}`,
    };
  }
  if (now.getTime() < facts.notBefore.getTime()) {
    return {
      status: "False",
      reason: "NotYetValid",
      message: `the relay's certificate in Secret ${secretName} is valid only from ${facts.notBefore.toISOString()}`,
    };
  }
  const missing = hostnames.filter((h) => !covers(facts.dnsNames, h));
  if (missing.length > 0) {
    return {
      status: "False",
      reason: "HostnamesNotCovered",
      message: `the relay's certificate in Secret ${secretName} does not cover ${missing.join(", ")} (it names ${facts.dnsNames.join(", ") || "no DNS names"}): the customer's server would refuse it; reissue it with these names or change spec.relay.hostnames`,
    };
  }
  if (now.getTime() >= warningTime(facts).getTime()) {
    return {
      status: "True",
      reason: "ExpiringSoon",
      message: `the relay's certificate in Secret ${secretName} expires at ${expiry}; ${operatorIssued ? "the operator's renewal has not happened yet" : "renew it before then"}`,
    };
  }
  return operatorIssued
    ? { status: "True", reason: "Issued", message: `issued by the operator's CA, valid until ${expiry}` }
    : { status: "True", reason: "Valid", message: `valid until ${expiry}, covers ${hostnames.join(", ")}` };
}

/** When the verdict on an unchanged certificate next changes (near expiry, expiry), for requeueing. */
export function nextVerdictChange(facts: CertificateFacts, now: Date): Date | undefined {
  const moments = [facts.notBefore.getTime(), warningTime(facts).getTime(), facts.notAfter.getTime()];
  const next = moments.filter((t) => t > now.getTime()).sort((a, b) => a - b)[0];
  return next === undefined ? undefined : new Date(next);
}
