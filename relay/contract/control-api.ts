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
