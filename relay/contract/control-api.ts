// The shapes the relay's control API answers with, that the operator reads
// (relay/ops/control.ts serves them).

/**
 * The server a verification send went to, as `host:port/tls` (host in lowercase): the operator compares it with
 * the address's spec, so a send through a server the address no longer names (the relay's mounted config not yet
 * refreshed) is retried rather than judged.
 */
export function serverEndpoint(server: { host: string; port: number; tls: string }): string {
  return `${server.host.toLowerCase()}:${server.port}/${server.tls}`;
}

/** One inbound credential version's last use and last refusal, as the relay saw them. */
export interface CredentialUse {
  domain: string;
  version: number;
  lastUsedAt?: string;
  lastRefusedAt?: string;
  lastRefusedReason?: string;
}

/** A lockout as the control API reports it: the credential version when the username was one, never the username. */
export interface LockoutEntry {
  kind: string;
  scope: string;
  source: string;
  domain?: string;
  version?: number;
  since: string;
  until: string;
}

/**
 * What the relay's forwarded listener could check of a message that carried a
 * verification token (docs/security.md, "Forwarded mail").
 */
export interface ForwardedVerdict {
  /** A passing DKIM signature whose d= is the recipient domain or a parent of it (relaxed alignment). */
  dkimAligned: boolean;
  /** The ARC chain verifies and its latest sealer is in forwarded.trustedArcSealers. */
  arcTrusted: boolean;
  /** The latest ARC-Seal's d=, when there is a chain and it is a plain domain name. */
  arcSealer?: string;
}

/**
 * GET /v1/verification-receipts/<sha256 of the token>: how a token came back
 * (never the token). `path` came with the forwarded listener: an answer
 * without it is from an older relay and means "authenticated".
 */
export type ReceiptAnswer = { domain: string; arrivedAt: string } & (
  { path: "authenticated"; credentialVersion: number } | { path: "forwarded"; forwarded: ForwardedVerdict }
);
