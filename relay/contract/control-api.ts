// The shapes the relay's control API answers with, that the operator reads
// (relay/ops/control.ts serves them).

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
