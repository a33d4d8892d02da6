// When the installation's CA is replaced, and which CAs a customer's server
// must trust meanwhile. The CA Secret keeps the signing CA in tls.crt and
// tls.key and the trust bundle in ca.crt: the signing CA first, then any CA it
// replaced while a certificate that CA issued may still be valid. Pure.
import { X509Certificate } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { readNameConstraints, type NameConstraints } from "./x509.js";

/**
 * Set on the CA Secret to have the CA replaced once per value (e.g. the date:
 * `kubectl annotate secret smtp-connector-ca smtpconnector.dev/rotate="$(date -u +%FT%TZ)" --overwrite`);
 * the value handled is kept in rotatedForAnnotation, as Flux does with requestedAt.
 */
export const rotateAnnotation = "smtpconnector.dev/rotate";
export const rotatedForAnnotation = "smtpconnector.dev/rotated-for";
/** When the signing CA replaced the previous one (RFC 3339); present only while a previous CA is still trusted. */
export const rotatedAtAnnotation = "smtpconnector.dev/rotated-at";
/** A CA is replaced this long before it expires: longer than any relay certificate lives, so none outlives its CA. */
export const caRenewBeforeMs = 365 * 86_400_000;

/** Why the signing CA must be replaced now, or undefined. */
export function rotationReason(
  caPem: string,
  wanted: NameConstraints,
  now: Date,
  annotations: Readonly<Record<string, string>> | undefined,
): string | undefined {
  const cert = new X509Certificate(caPem);
  const asked = annotations?.[rotateAnnotation];
  if (asked !== undefined && asked !== annotations?.[rotatedForAnnotation])
    return `rotation was asked for (annotation ${rotateAnnotation}=${asked})`;
  const constraints = readNameConstraints(cert.raw);
  if (!isDeepStrictEqual(constraints, wanted)) {
    const said = (c: NameConstraints | undefined) => (c ? c.permittedDnsNames.join(", ") : "none");
    return `its name constraints (${said(constraints)}) are not the installation's (${said(wanted)})`;
  }
  const notAfter = new Date(cert.validTo);
  if (now.getTime() >= notAfter.getTime() - caRenewBeforeMs) return `it expires at ${notAfter.toISOString()}`;
  return undefined;
}

/** The PEM certificates of a bundle, in order. */
export function splitPem(bundle: string): string[] {
  return (
    bundle
      .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)
      ?.map((pem) => (pem.endsWith("\n") ? pem : `${pem}\n`)) ?? []
  );
}

/**
 * The trust bundle after `now`: the signing CA, then the CAs it replaced as
 * long as a relay certificate one of them issued may still be valid. Every
 * such certificate was issued before the rotation, so none is valid after
 * rotatedAt + the certificate lifetime; each is reissued from the new CA at
 * its domain's next reconcile (the CA Secret's change requeues every domain)
 * well before that. Without a rotation time, nothing but the signing CA.
 */
export function trustBundle(
  signingPem: string,
  bundle: string | undefined,
  rotatedAt: Date | undefined,
  now: Date,
  certificateLifetimeMs: number,
): string {
  const signing = new X509Certificate(signingPem);
  const previous = splitPem(bundle ?? "").filter((pem) => !new X509Certificate(pem).raw.equals(signing.raw));
  // A margin (an hour, less for short lives): a replica whose CA cache had not yet seen the rotation may have issued from the old one.
  const margin = Math.min(3_600_000, certificateLifetimeMs / 4);
  const keep = rotatedAt !== undefined && now.getTime() < rotatedAt.getTime() + certificateLifetimeMs + margin;
  return [signingPem.endsWith("\n") ? signingPem : `${signingPem}\n`, ...(keep ? previous : [])].join("");
}
