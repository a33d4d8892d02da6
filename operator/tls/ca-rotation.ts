// When the installation's CA is replaced, and which CAs a customer's server
// must trust meanwhile. A rotation has two phases, so that a customer whose
// mail server holds a copy of ca.crt (Postfix's tafile, a Windows store) has
// time to install the new one before anything it does not trust is served:
//   1. announced: the next CA is made and published in ca.crt beside the
//      signing one, which goes on signing;
//   2. after the notice (--ca-rotation-notice), the next CA signs; every
//      relay certificate of the old one is reissued, and the old CA stays in
//      ca.crt until no certificate it issued can still be valid.
// All of it is kept in the CA Secret (ca-secret layout below), so a restart
// or another replica resumes where the rotation stands. Pure, apart from the
// key generation the caller injects.
import { X509Certificate } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import type { KeyPair } from "./certificates.js";
import { isUnder } from "./name-policy.js";
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
/** Phase 1: from when the next CA (next.crt) signs (RFC 3339). */
export const nextSignsFromAnnotation = "smtpconnector.dev/next-ca-signs-from";
/** Phase 1: why the CA is being replaced, for the SmtpDomains' status and the operator's log. */
export const nextReasonAnnotation = "smtpconnector.dev/next-ca-reason";
/** The CA Secret's data keys for the next CA, present only in phase 1. */
export const nextCertKey = "next.crt";
export const nextKeyKey = "next.key";
/** The annotations the operator writes on the CA Secret (rotateAnnotation is the user's). */
export const caAnnotations = [rotatedForAnnotation, rotatedAtAnnotation, nextSignsFromAnnotation, nextReasonAnnotation] as const;

/** A CA is replaced this long before it expires: longer than the notice and any relay certificate's life together, so none outlives its CA. */
export const caRenewBeforeMs = 365 * 86_400_000;
/**
 * How long a new CA is published before it signs: one monthly change window
 * of a customer's IT team, and short enough that a CA replaced for its age
 * (a year ahead) is done long before it expires.
 */
export const defaultCaRotationNoticeMs = 30 * 86_400_000;

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
  if (!isDeepStrictEqual(constraints, wanted)) return constraintsMismatch(constraints, wanted);
  const notAfter = new Date(cert.validTo);
  if (now.getTime() >= notAfter.getTime() - caRenewBeforeMs) return `it expires at ${notAfter.toISOString()}`;
  return undefined;
}

function constraintsMismatch(constraints: NameConstraints | undefined, wanted: NameConstraints): string {
  const said = (c: NameConstraints | undefined) => (c ? c.permittedDnsNames.join(", ") : "none");
  return `its name constraints (${said(constraints)}) are not the installation's (${said(wanted)})`;
}

/** The PEM certificates of a bundle, in order. */
export function splitPem(bundle: string): string[] {
  return (
    bundle
      .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)
      ?.map((pem) => (pem.endsWith("\n") ? pem : `${pem}\n`)) ?? []
  );
}

const withNewline = (pem: string) => (pem.endsWith("\n") ? pem : `${pem}\n`);
const samePem = (a: string, b: string) => new X509Certificate(a).raw.equals(new X509Certificate(b).raw);

/** Where a rotation stands, as the CA Secret keeps it. */
export interface CaState {
  /** The CA that signs relay certificates now (tls.crt, tls.key). */
  signing: KeyPair;
  /** Phase 1: the CA published in ca.crt that signs from `signsFrom` (next.crt, next.key). */
  next?: { pair: KeyPair; signsFrom: Date; reason: string };
  /** CAs that signed before `rotatedAt`, trusted while a certificate one of them issued may be valid. */
  retired: string[];
  rotatedAt?: Date;
  /** The rotate annotation's value already handled. */
  rotatedFor?: string;
}

export interface RotationSettings {
  /** The name constraints the installation's CA must carry. */
  constraints: NameConstraints;
  /** Phase 1's length (--ca-rotation-notice); 0: the next CA signs at once. */
  noticeMs: number;
  /** The lifetime of a relay certificate (--certificate-duration). */
  certificateLifetimeMs: number;
}

/** The CA Secret's data (decoded) and annotations as read; throws a readable error when the CA itself is unusable. */
export function readCaState(data: Readonly<Record<string, string | undefined>>, annotations: Readonly<Record<string, string>>): CaState {
  const certPem = data["tls.crt"];
  const keyPem = data["tls.key"];
  if (!certPem || !keyPem) throw new Error("it has no tls.crt and tls.key: delete it to have a new CA issued");
  const signing = { certPem: withNewline(certPem), keyPem };
  const nextCert = data[nextCertKey];
  const nextKey = data[nextKeyKey];
  const signsFrom = Date.parse(annotations[nextSignsFromAnnotation] ?? "");
  // A next CA without a valid time (a hand edit) is no next CA: a new one is published if still needed.
  const next =
    nextCert && nextKey && Number.isFinite(signsFrom)
      ? {
          pair: { certPem: withNewline(nextCert), keyPem: nextKey },
          signsFrom: new Date(signsFrom),
          reason: annotations[nextReasonAnnotation] ?? "",
        }
      : undefined;
  const retired = splitPem(data["ca.crt"] ?? "").filter(
    (pem) => !samePem(pem, signing.certPem) && !(next && samePem(pem, next.pair.certPem)),
  );
  const rotatedAt = Date.parse(annotations[rotatedAtAnnotation] ?? "");
  const rotatedFor = annotations[rotatedForAnnotation];
  return {
    signing,
    ...(next ? { next } : {}),
    retired,
    ...(Number.isFinite(rotatedAt) ? { rotatedAt: new Date(rotatedAt) } : {}),
    ...(rotatedFor !== undefined ? { rotatedFor } : {}),
  };
}

/** What the CA Secret holds for a state: its data (plain text) and the operator's annotations. */
export function caSecretContents(state: CaState): { data: Record<string, string>; annotations: Record<string, string> } {
  const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
  return {
    data: {
      "tls.crt": state.signing.certPem,
      "tls.key": state.signing.keyPem,
      "ca.crt": trustBundle(state),
      ...(state.next ? { [nextCertKey]: state.next.pair.certPem, [nextKeyKey]: state.next.pair.keyPem } : {}),
    },
    annotations: {
      ...(state.rotatedAt && state.retired.length > 0 ? { [rotatedAtAnnotation]: rfc3339(state.rotatedAt) } : {}),
      ...(state.rotatedFor !== undefined ? { [rotatedForAnnotation]: state.rotatedFor } : {}),
      ...(state.next ? { [nextSignsFromAnnotation]: rfc3339(state.next.signsFrom), [nextReasonAnnotation]: state.next.reason } : {}),
    },
  };
}

/** ca.crt: the signing CA, then the next one (phase 1), then the retired ones still trusted. */
export function trustBundle(state: CaState): string {
  return [state.signing.certPem, ...(state.next ? [state.next.pair.certPem] : []), ...state.retired].map(withNewline).join("");
}

/**
 * Until when retired CAs stay trusted: every certificate they issued was issued
 * before the rotation, so none is valid after rotatedAt + a certificate's
 * lifetime. A margin (an hour, less for short lives): a replica whose CA cache
 * had not yet seen the rotation may have issued from the old one.
 */
export function retiredTrustedUntil(rotatedAt: Date, certificateLifetimeMs: number): Date {
  return new Date(rotatedAt.getTime() + certificateLifetimeMs + Math.min(3_600_000, certificateLifetimeMs / 4));
}

/** One step a rotation took, for the operator's log. */
export type RotationStep =
  | { step: "published"; reason: string; signsFrom: Date }
  | { step: "promoted" }
  | { step: "retired-dropped"; count: number }
  | { step: "next-replaced"; reason: string; signsFrom: Date };

/**
 * The CA state after `now`: a rotation started (the next CA published) when
 * one is due, the next CA made the signing one when its notice is over, and
 * retired CAs dropped once no certificate of theirs can be valid. Level-based:
 * the same state and time give the same answer, so a restart or a second
 * replica computing it again agrees (the write is guarded by resourceVersion).
 * `newCa` makes a CA with the installation's constraints.
 */
export function advanceCa(
  observed: CaState,
  now: Date,
  settings: RotationSettings,
  requested: string | undefined,
  newCa: () => KeyPair,
): { state: CaState; steps: RotationStep[] } {
  let state: CaState = { ...observed, retired: [...observed.retired] };
  const steps: RotationStep[] = [];
  const publish = (reason: string): { pair: KeyPair; signsFrom: Date; reason: string } => ({
    pair: newCa(),
    signsFrom: new Date(now.getTime() + settings.noticeMs),
    reason,
  });
  const retire = (pems: string[]) => {
    state.retired = [...pems, ...state.retired];
    state.rotatedAt = now;
  };

  // A next CA made for other constraints cannot sign what the installation now allows: a new one, and a new notice.
  // The stale one is retired, not dropped: it may have signed names the signing CA does not permit (signerFor).
  if (state.next) {
    const nextConstraints = readNameConstraints(new X509Certificate(state.next.pair.certPem).raw);
    if (!isDeepStrictEqual(nextConstraints, settings.constraints)) {
      retire([state.next.pair.certPem]);
      const reason = `the next CA's ${constraintsMismatch(nextConstraints, settings.constraints)}`;
      state.next = publish(reason);
      steps.push({ step: "next-replaced", reason, signsFrom: state.next.signsFrom });
    } else if (requested !== undefined && requested !== state.rotatedFor) {
      // Asked for while a rotation is under way: that rotation is the answer.
      state.rotatedFor = requested;
    }
  }
  if (!state.next) {
    const reason = rotationReason(state.signing.certPem, settings.constraints, now, {
      ...(requested !== undefined ? { [rotateAnnotation]: requested } : {}),
      ...(state.rotatedFor !== undefined ? { [rotatedForAnnotation]: state.rotatedFor } : {}),
    });
    if (reason) {
      state.next = publish(reason);
      if (requested !== undefined) state.rotatedFor = requested;
      steps.push({ step: "published", reason, signsFrom: state.next.signsFrom });
    }
  }
  if (state.next && now.getTime() >= state.next.signsFrom.getTime()) {
    const { pair } = state.next;
    retire([state.signing.certPem]);
    const { next: _promoted, ...rest } = state;
    state = { ...rest, signing: pair };
    steps.push({ step: "promoted" });
  }
  if (
    state.retired.length > 0 &&
    (!state.rotatedAt || now.getTime() >= retiredTrustedUntil(state.rotatedAt, settings.certificateLifetimeMs).getTime())
  ) {
    steps.push({ step: "retired-dropped", count: state.retired.length });
    state.retired = [];
  }
  if (state.retired.length === 0) {
    const { rotatedAt: _done, ...rest } = state;
    state = rest;
  }
  return { state, steps };
}

/** When `advanceCa` next has something to do without any other change: phase 2 begins, or retired CAs are dropped. */
export function nextCaChange(state: CaState, certificateLifetimeMs: number): Date | undefined {
  const moments = [
    state.next?.signsFrom,
    state.rotatedAt && state.retired.length > 0 ? retiredTrustedUntil(state.rotatedAt, certificateLifetimeMs) : undefined,
  ].filter((d): d is Date => d !== undefined);
  return moments.sort((a, b) => a.getTime() - b.getTime())[0];
}

/** Whether a CA's name constraints (none: everything) permit a DNS name. */
export function permits(constraints: NameConstraints | undefined, name: string): boolean {
  return constraints === undefined || constraints.permittedDnsNames.some((subtree) => isUnder(name, subtree));
}

/**
 * Which CA signs a relay certificate for `names` now: the signing CA, as long
 * as its name constraints permit every name. In phase 1 of a rotation for
 * widened constraints (a suffix added), a name only the next CA permits is
 * signed by the next CA at once, rather than by a CA whose certificate every
 * verifier refuses for it, or not at all until phase 2: such a name is new to
 * the domain's customers, who get the bundle with both CAs along with it.
 */
export function signerFor(state: CaState, names: readonly string[]): KeyPair {
  const fits = (pem: string) => {
    const constraints = readNameConstraints(new X509Certificate(pem).raw);
    return names.every((name) => permits(constraints, name));
  };
  if (state.next && !fits(state.signing.certPem) && fits(state.next.pair.certPem)) return state.next.pair;
  return state.signing;
}
