// Verification of one support address, both ways. Each attempt sends one
// email with a one-time token and succeeds only when the relay of the
// address's own domain reports that token as arrived through its
// authenticated inbound listener:
//
//   Outbound  the relay sends it (control API) from the address to itself, so
//             it leaves through the customer's server with the address's own
//             login and comes back the way all its mail comes in;
//   Inbound   the operator sends it from the helpdesk's system sender to the
//             address through the configured MTA, so it travels through the
//             customer's server into the relay.
//
// In Forwarded mode (spec.inbound.mode) the same two emails must come back to
// the relay's forwarded listener (port 25), where the customer's mail service
// forwards the address's mail with the recipient unchanged:
//
//   Outbound  leaves through the customer's server (its login, its From rules),
//             is delivered to the address's mailbox there and forwarded back.
//             The relay signed it with d=<domain>, so it must come back with
//             that signature intact (dkimAligned) or under a trusted ARC seal:
//             otherwise the forward breaks what lets the helpdesk tell the
//             customer's forwarded mail from anyone's (ArrivedUnverified).
//   Inbound   is sent from the helpdesk's system sender to the address, as any
//             outside sender's mail is: it proves the route end users' mail
//             takes (MX, the mail service, its forwarding rule, which is often
//             scoped to outside senders). It carries no signature of the
//             customer's domain, so the token's arrival on the forwarded path
//             is the proof; whether a trusted sealer vouched for it is said in
//             the message.
//
// Nothing by the deadline is ForwardingNotSetUp (docs/adr/0014).
//
// The decisions (when to start, what an answer means) are pure functions; the
// sending and asking go through VerificationIO.
import type { RelayLockout } from "../domain/lockouts.js";
import { randomBytes } from "node:crypto";
import type { ReasonName } from "../../crds/conditions.js";
import type { SmtpDomain, SupportAddress, SupportAddressStatus } from "../../crds/schema.js";
import { serverEndpoint } from "../../relay/contract/control-api.js";
import { verificationTokenDigest } from "../../relay/contract/digests.js";
import { inboundMode, parseDuration } from "../domain/credentials.js";
import { outboundServer } from "./rules.js";

export type Attempt = NonNullable<SupportAddressStatus["verifications"]>[number];
export type Direction = Attempt["direction"];

export const verifyRequestAnnotation = "smtpconnector.dev/verify-requested-at";

export interface Failure {
  reason: ReasonName;
  message: string;
}

/** What the relay's control API answers for a token that arrived (GET /v1/verification-receipts/<sha256>). */
export interface Receipt {
  domain: string;
  /** The credential version it authenticated with; absent on the forwarded path. */
  credentialVersion?: number;
  arrivedAt: string;
  /** Which listener it arrived on; relays from before forwarded mode leave it out (authenticated). */
  path?: "authenticated" | "forwarded";
  /** On the forwarded path: what the relay could check of the forwarded message. */
  forwarded?: {
    /** A passing DKIM signature with d= the recipient's domain (or a parent: relaxed alignment). */
    dkimAligned: boolean;
    /** An ARC chain that passes, whose latest sealer is in the installation's trusted sealers. */
    arcTrusted: boolean;
    arcSealer?: string;
  };
}

/** The relay does not serve the address yet (its config is still on its way): try again shortly. */
export class NotYetServed extends Error {}

/** What the relay must send an outbound verification with; each one absent is not checked. */
export interface OutboundExpectation {
  /** The login's digest (loginDigest of the address's credentials Secret). */
  credentialSha256?: string | undefined;
  /** The customer's server, as serverEndpoint writes it. */
  server?: string | undefined;
}

export interface VerificationIO {
  /** Sends the inbound verification email; a failure names its reason. */
  sendInbound(address: string, token: string): Promise<Failure | undefined>;
  /**
   * Asks the domain's relay to send the outbound verification email. When the
   * relay used another login than `expected.credentialSha256` (its config is older than
   * the Secret) or another server than `expected.server` (`serverEndpoint`), throws NotYetServed.
   */
  sendOutbound(domain: SmtpDomain, address: string, token: string, expected: OutboundExpectation): Promise<Failure | undefined>;
  /** Whether the token came back through the domain's relay. Throws when the relay cannot be asked. */
  receipt(domain: SmtpDomain, tokenSha256: string): Promise<Receipt | undefined>;
  /** When the relay last refused a revoked or expired credential version. */
  lastRevokedRefusal(domain: SmtpDomain): Promise<Date | undefined>;
  /** Each inbound credential version's last successful AUTH, as the relay saw it. */
  credentialUse(domain: SmtpDomain): Promise<Map<number, string>>;
  /** The brute-force lockouts in force on the domain's relay pods. */
  lockouts?(domain: SmtpDomain): Promise<RelayLockout[]>;
}

export interface VerificationTiming {
  /** How often a pending attempt is checked. */
  pollMs: number;
  /** How soon a failed attempt is tried again, unless something changes first. */
  retryMs: number;
}

export const defaultTiming: VerificationTiming = { pollMs: 2_000, retryMs: 5 * 60_000 };

/** What a verification proves: when any of it changes, both directions are verified again. */
export function basisOf(address: SupportAddress, credentialsResourceVersion: string | undefined, domain: SmtpDomain): string {
  const parts = [
    `generation=${address.metadata.generation ?? 0}`,
    `credentials=${credentialsResourceVersion ?? ""}`,
    `inbound=${domain.status?.activeVersions ?? ""}`,
  ];
  // Only when Forwarded: an Authenticated address's basis reads as it did before modes existed (no re-verification on upgrade).
  if (inboundMode(domain) === "Forwarded") parts.push("mode=Forwarded");
  return parts.join(";");
}

/** Whether a new attempt starts now. Pure. */
export function shouldStart(
  attempt: Attempt | undefined,
  basis: string,
  requested: boolean,
  intervalMs: number,
  retryMs: number,
  now: Date,
): boolean {
  if (!attempt || requested || attempt.basis !== basis) return true;
  if (attempt.result === "Pending") return false;
  const since = now.getTime() - Date.parse(attempt.completedAt ?? attempt.startedAt);
  return since >= (attempt.result === "Succeeded" ? intervalMs : Math.min(retryMs, intervalMs));
}

/** A basis split into its parts (generation, credentials, inbound). */
function basisParts(basis: string | undefined): Map<string, string> {
  return new Map(
    (basis ?? "").split(";").map((part) => [part.slice(0, part.indexOf("=")), part.slice(part.indexOf("=") + 1)] as [string, string]),
  );
}

const versions = (list: string | undefined) => (list ?? "").split(",").filter(Boolean).map(Number);

/**
 * Whether what the previous attempt proved still stands under `basis`: the
 * same basis, or one where only the domain's inbound versions changed while
 * the version the proof came back with is still Active (adding a version to
 * rotate must not interrupt the helpdesk). Without a recorded version (an
 * attempt from before it was recorded), every version then Active must still be.
 */
export function proofStands(previous: Attempt, basis: string): boolean {
  if (previous.basis === basis) return true;
  const before = basisParts(previous.basis);
  const now = basisParts(basis);
  if (before.get("generation") !== now.get("generation") || before.get("credentials") !== now.get("credentials")) return false;
  // A proof from the other inbound mode came back another way: it proves nothing of this one.
  if (before.get("mode") !== now.get("mode")) return false;
  const active = versions(now.get("inbound"));
  if (previous.credentialVersion !== undefined) return active.includes(previous.credentialVersion);
  const then = versions(before.get("inbound"));
  return then.length > 0 && then.every((v) => active.includes(v));
}

/**
 * When the previous attempt of this direction proved what still stands (see
 * proofStands), with the credential version it proved: a repeat keeps the
 * direction verified while it is on its way (a periodic check, or a rotation
 * adding a version, must not stop the helpdesk sending as the address). Pure.
 */
export function previouslyVerified(previous: Attempt | undefined, basis: string): { at: string; credentialVersion?: number } | undefined {
  if (!previous || !proofStands(previous, basis)) return undefined;
  const version = previous.credentialVersion !== undefined ? { credentialVersion: previous.credentialVersion } : {};
  if (previous.result === "Succeeded") return { at: previous.completedAt ?? previous.startedAt, ...version };
  return previous.result === "Pending" && previous.previouslyVerifiedAt ? { at: previous.previouslyVerifiedAt, ...version } : undefined;
}

/** When the previous attempt proved what still stands (see previouslyVerified). Pure. */
export function previouslyVerifiedAt(previous: Attempt | undefined, basis: string): string | undefined {
  return previouslyVerified(previous, basis)?.at;
}

/** What a receipt (or its absence at the deadline) means for a pending attempt. Pure. */
export function judge(
  pending: Attempt,
  domain: SmtpDomain,
  receipt: Receipt | undefined,
  revokedRefusalAt: Date | undefined,
  timeoutMs: number,
  now: Date,
): Attempt {
  if (inboundMode(domain) === "Forwarded") return judgeForwarded(pending, domain, receipt, timeoutMs, now);
  const at = now.toISOString();
  // A completed attempt stands on its own result.
  const { previouslyVerifiedAt: _, credentialVersion: __, ...attempt } = pending;
  if (receipt?.path === "forwarded") {
    return {
      ...attempt,
      result: "Failed",
      reason: "ArrivedUnauthenticated",
      completedAt: at,
      message: `the token came back forwarded to the relay's port 25 without AUTH, but ${domain.spec.domain} is in Authenticated mode: relay the address's mail to the relay with the domain's current credentials, or set spec.inbound.mode: Forwarded if its mail service can only forward`,
    };
  }
  if (receipt && receipt.credentialVersion === undefined) {
    return {
      ...attempt,
      result: "Failed",
      reason: "ArrivedUnauthenticated",
      completedAt: at,
      message: "the relay reported the token without a credential version: it did not arrive authenticated",
    };
  }
  if (receipt?.credentialVersion !== undefined) {
    const active = (domain.status?.activeVersions ?? "").split(",").filter(Boolean).map(Number);
    if (receipt.domain === domain.spec.domain && active.length > 0 && !active.includes(receipt.credentialVersion)) {
      return {
        ...attempt,
        result: "Failed",
        reason: "ArrivedRevokedCredential",
        completedAt: at,
        message: `the token came back with credential version ${receipt.credentialVersion}, which is no longer active; install the current version on the customer's server`,
      };
    }
    return receipt.domain === domain.spec.domain
      ? {
          ...attempt,
          result: "Succeeded",
          reason: "Verified",
          completedAt: at,
          credentialVersion: receipt.credentialVersion,
          message: `the token came back through the authenticated relay (credential version ${receipt.credentialVersion})`,
        }
      : {
          ...attempt,
          result: "Failed",
          reason: "ArrivedWrongDomain",
          completedAt: at,
          message: `the token came back authenticated for ${receipt.domain}, not ${domain.spec.domain}`,
        };
  }
  const started = Date.parse(attempt.startedAt);
  if (now.getTime() - started < timeoutMs) return pending;
  if (revokedRefusalAt && revokedRefusalAt.getTime() >= started) {
    return {
      ...attempt,
      result: "Failed",
      reason: "ArrivedRevokedCredential",
      completedAt: at,
      message:
        "the customer's server tried to relay with a revoked or expired credential version; install the current one from its Secret (see the SmtpDomain's status.credentials)",
    };
  }
  return {
    ...attempt,
    result: "Failed",
    reason: "VerificationTimedOut",
    completedAt: at,
    message: `the token did not come back within ${Math.round(timeoutMs / 1000)}s; check that the customer's server relays mail for the address to the relay with the domain's current credentials`,
  };
}

/** judge, for a domain in Forwarded mode: the token must come back on the forwarded path (see the top of this file). Pure. */
export function judgeForwarded(pending: Attempt, domain: SmtpDomain, receipt: Receipt | undefined, timeoutMs: number, now: Date): Attempt {
  const at = now.toISOString();
  const { previouslyVerifiedAt: _, credentialVersion: __, ...attempt } = pending;
  const failed = (reason: ReasonName, message: string): Attempt => ({ ...attempt, result: "Failed", reason, completedAt: at, message });
  if (!receipt) {
    if (now.getTime() - Date.parse(attempt.startedAt) < timeoutMs) return pending;
    const seen =
      attempt.direction === "Outbound"
        ? "the verification email the relay sent through the customer's server"
        : "the verification email sent to the address from the helpdesk's system sender";
    return failed(
      "ForwardingNotSetUp",
      `${seen} did not come back to the relay's forwarded listener within ${Math.round(timeoutMs / 1000)}s: forward the address's mail to the relay (status.relay.endpoint of the SmtpDomain, port 25) keeping the recipient unchanged, allow the relay's egress addresses, and do not greylist the verification emails (docs/mail-servers.md, Microsoft 365 / Google Workspace)`,
    );
  }
  if (receipt.domain !== domain.spec.domain)
    return failed("ArrivedWrongDomain", `the token came back for ${receipt.domain}, not ${domain.spec.domain}`);
  if (receipt.path !== "forwarded") {
    return failed(
      "ArrivedRevokedCredential",
      `the token came back authenticated${receipt.credentialVersion !== undefined ? ` with credential version ${receipt.credentialVersion}` : ""}, but ${domain.spec.domain} is in Forwarded mode and every credential version is revoked: forward the address's mail to the relay's port 25 instead of relaying it with AUTH`,
    );
  }
  const checks = receipt.forwarded ?? { dkimAligned: false, arcTrusted: false };
  const arc = checks.arcTrusted ? `sealed by the trusted ARC sealer ${checks.arcSealer ?? "(unnamed)"}` : undefined;
  const dkim = checks.dkimAligned ? `with a DKIM signature of ${domain.spec.domain} intact` : undefined;
  const vouched = [dkim, arc].filter(Boolean).join(" and ");
  if (attempt.direction === "Outbound" && !vouched) {
    const sealer = checks.arcSealer
      ? `; its ARC seal is by ${checks.arcSealer}, which is not a trusted sealer (--trusted-arc-sealers)`
      : "";
    return failed(
      "ArrivedUnverified",
      `the token came back forwarded, but the relay's DKIM signature (d=${domain.spec.domain}) did not verify and no trusted ARC seal vouches for the forward${sealer}, so the helpdesk cannot tell this domain's forwarded mail from anyone's: make the forward keep the message unchanged (no disclaimer, footer or subject tag), or trust the mail service's ARC sealer`,
    );
  }
  return {
    ...attempt,
    result: "Succeeded",
    reason: "Verified",
    completedAt: at,
    message: vouched
      ? `the token came back forwarded to the relay, ${vouched}`
      : "the token came back forwarded to the relay; no trusted ARC seal vouched for the forward, so forwarded mail from outside senders is judged by its own SPF, DKIM and DMARC only",
  };
}

export interface VerifyInputs {
  address: SupportAddress;
  domain: SmtpDomain;
  credentialsResourceVersion: string | undefined;
  /** SHA-256 of "username\0password" from the address's credentials Secret. */
  credentialSha256: string | undefined;
  io: VerificationIO;
  timing?: VerificationTiming;
  now?: Date;
}

export interface VerifyOutcome {
  attempts: Attempt[];
  lastHandledVerifyRequest?: string;
  requeueAfterMs?: number;
}

/** Advances both directions by one step: start, check, or leave as they are. */
export async function verify({
  address,
  domain,
  credentialsResourceVersion,
  credentialSha256,
  io,
  timing = defaultTiming,
  now = new Date(),
}: VerifyInputs): Promise<VerifyOutcome> {
  const basis = basisOf(address, credentialsResourceVersion, domain);
  const request = address.metadata.annotations?.[verifyRequestAnnotation];
  const requested = request !== undefined && request !== address.status?.lastHandledVerifyRequest;
  const intervalMs = parseDuration(address.spec.verification?.interval ?? "24h");
  const timeoutMs = parseDuration(address.spec.verification?.timeout ?? "10m");
  const current = new Map((address.status?.verifications ?? []).map((a) => [a.direction, a]));
  const next = new Map(current);
  let waitMs = Infinity;
  let notServed = false;

  for (const direction of ["Outbound", "Inbound"] as const) {
    const attempt = current.get(direction);
    if (shouldStart(attempt, basis, requested, intervalMs, timing.retryMs, now)) {
      // Inbound goes only once the relay has shown it serves the address
      // (its outbound send was accepted): before that, mail for the address
      // would be refused at RCPT and the attempt would only time out.
      if (direction === "Inbound" && next.get("Outbound")?.result === undefined) continue;
      const token = `vrf_${randomBytes(24).toString("base64url")}`;
      let failure: Failure | undefined;
      try {
        const to = address.spec.address.toLowerCase();
        failure =
          direction === "Outbound"
            ? await io.sendOutbound(domain, to, token, { credentialSha256, server: serverEndpoint(outboundServer(address.spec.outbound)) })
            : await io.sendInbound(to, token);
      } catch (error) {
        if (error instanceof NotYetServed) {
          notServed = true;
          continue;
        }
        failure = { reason: "RelayUnreachable", message: (error as Error).message };
      }
      const startedAt = now.toISOString();
      const proof = previouslyVerified(attempt, basis);
      next.set(direction, {
        direction,
        startedAt,
        basis,
        tokenSha256: verificationTokenDigest(token),
        ...(failure
          ? { result: "Failed" as const, reason: failure.reason, message: failure.message, completedAt: startedAt }
          : {
              result: "Pending" as const,
              reason: "VerificationPending",
              message: "the verification email is on its way",
              ...(proof
                ? {
                    previouslyVerifiedAt: proof.at,
                    ...(proof.credentialVersion !== undefined ? { credentialVersion: proof.credentialVersion } : {}),
                  }
                : {}),
            }),
      });
    } else if (attempt?.result === "Pending" && attempt.tokenSha256) {
      let receipt: Receipt | undefined;
      let refusal: Date | undefined;
      try {
        receipt = await io.receipt(domain, attempt.tokenSha256);
        if (!receipt && now.getTime() - Date.parse(attempt.startedAt) >= timeoutMs) refusal = await io.lastRevokedRefusal(domain);
      } catch {
        // The relay could not be asked this time; the deadline still holds.
        if (now.getTime() - Date.parse(attempt.startedAt) < timeoutMs) {
          waitMs = Math.min(waitMs, timing.pollMs);
          continue;
        }
      }
      next.set(direction, judge(attempt, domain, receipt, refusal, timeoutMs, now));
    }
  }

  const attempts = (["Inbound", "Outbound"] as const).flatMap((d) => (next.has(d) ? [next.get(d)!] : []));
  for (const a of attempts) {
    if (a.result === "Pending") waitMs = Math.min(waitMs, timing.pollMs);
    else {
      const again =
        Date.parse(a.completedAt ?? a.startedAt) +
        (a.result === "Succeeded" ? intervalMs : Math.min(timing.retryMs, intervalMs)) -
        now.getTime();
      waitMs = Math.min(waitMs, Math.max(1_000, again));
    }
  }
  if (notServed || attempts.length < 2) waitMs = Math.min(waitMs, timing.pollMs);
  return {
    attempts,
    ...(request !== undefined ? { lastHandledVerifyRequest: request } : {}),
    ...(Number.isFinite(waitMs) ? { requeueAfterMs: waitMs } : {}),
  };
}

/** The condition a direction's latest attempt gives. */
export function verifiedCondition(
  type: "InboundVerified" | "OutboundVerified",
  attempt: Attempt | undefined,
): { type: string; status: "True" | "False" | "Unknown"; reason: ReasonName; message: string } {
  if (!attempt) return { type, status: "Unknown", reason: "VerificationPending", message: "no verification has completed yet" };
  if (attempt.result === "Succeeded") return { type, status: "True", reason: "Verified", message: attempt.message ?? "verified" };
  if (attempt.result === "Pending" && attempt.previouslyVerifiedAt) {
    return {
      type,
      status: "True",
      reason: "Verified",
      message: `verified at ${attempt.previouslyVerifiedAt}; verifying again (the email is on its way)`,
    };
  }
  if (attempt.result === "Pending")
    return { type, status: "Unknown", reason: "VerificationPending", message: attempt.message ?? "the verification email is on its way" };
  return { type, status: "False", reason: attempt.reason as ReasonName, message: attempt.message ?? attempt.reason };
}
