// What the relay derives from one config: lookups built once per load and
// swapped atomically on reload, so a session sees one consistent config.
import type { RelayConfig, DomainEntry, OutboundServer } from "./contract/config.js";
import { CredentialStore } from "./inbound/credentials.js";
import type { FilterOptions } from "./inbound/message-filter.js";
import type { NextHop } from "./forward/next-hop.js";
import { SmtpNextHop } from "./forward/smtp-next-hop.js";
import { WebhookNextHop } from "./forward/webhook-next-hop.js";
import { loadSigningKey, type SigningKey } from "./outbound/dkim.js";
import { SpoolBudget } from "./outbound/spool.js";
import { forwardedMemoryBytes, spoolBudgetBytes } from "./contract/pod.js";

export interface ServedDomain {
  entry: DomainEntry;
  addresses: ReadonlySet<string>;
  nextHop: NextHop;
  /** Outbound: each support address's transport towards the customer's server, and whether it is Ready. */
  senders: ReadonlyMap<string, { nextHop: NextHop; ready: boolean }>;
  dkim: readonly SigningKey[];
}

export interface RelayState {
  config: RelayConfig;
  credentials: CredentialStore;
  submissionCredentials: CredentialStore;
  /** Where unconnected senders go, when the config says so. */
  defaultTransport: NextHop | undefined;
  systemDomains: ReadonlySet<string>;
  domains: ReadonlyMap<string, ServedDomain>;
  filter: Omit<FilterOptions, "prepend">;
  nextHopTimeoutMs: number;
  /** The forwarded listener's checks: its DNS and the ARC sealers it trusts. */
  forwarded: { dnsServers: readonly string[]; trustedArcSealers: readonly string[] };
  /** The disk the outbound signing spools share: one per relay, kept across reloads (what is in use stays counted). */
  spool: SpoolBudget;
  /** The memory the forwarded listener's held messages share: one per relay, kept across reloads like the spool's. */
  forwardedMemory: SpoolBudget;
}

/**
 * Builds the state for a config. Next hops are built afresh (their password
 * files may have changed under the same path); the previous ones finish their
 * in-flight messages and close.
 */
export function buildState(config: RelayConfig, spool = new SpoolBudget(0), forwardedMemory = new SpoolBudget(0)): RelayState {
  spool.setLimit(config.limits.spoolBytes ?? spoolBudgetBytes(config.limits.maxMessageBytes));
  forwardedMemory.setLimit(config.limits.forwardedMemoryBytes ?? forwardedMemoryBytes(config.limits.maxMessageBytes));
  const nextHopTimeoutMs = config.limits.nextHopTimeoutSeconds * 1000;
  const hopOptions = { clientName: config.hostname, timeoutMs: nextHopTimeoutMs };
  // One pool per distinct identity (server and credentials): addresses that
  // share a login share connections; no connection ever carries another
  // address's login.
  const transports = new Map<string, SmtpNextHop>();
  const transport = (server: OutboundServer): SmtpNextHop => {
    const hop = new SmtpNextHop({ ...server, protocol: "SMTP" }, hopOptions);
    const existing = transports.get(hop.identity);
    if (existing) return existing;
    transports.set(hop.identity, hop);
    return hop;
  };
  const domains = new Map<string, ServedDomain>();
  for (const entry of config.domains) {
    const { smtp, webhook } = entry.delivery;
    const nextHop = smtp ? new SmtpNextHop(smtp, hopOptions) : new WebhookNextHop(webhook!, nextHopTimeoutMs);
    const outbound = entry.outbound;
    domains.set(entry.domain, {
      entry,
      addresses: new Set(entry.addresses.map((a) => a.toLowerCase())),
      nextHop,
      senders: new Map((outbound?.senders ?? []).map((s) => [s.address, { nextHop: transport(s.server), ready: s.ready }])),
      dkim: (outbound?.dkim ?? []).map((key) => loadSigningKey(entry.domain, key)),
    });
  }
  const defaultServer = config.outbound?.unconnectedSenders === "DefaultTransport" ? config.outbound.defaultTransport : undefined;
  return {
    spool,
    forwardedMemory,
    config,
    credentials: new CredentialStore(config.domains),
    submissionCredentials: new CredentialStore(
      config.domains.map((d) => ({ domain: d.domain, credentials: d.outbound?.submission ?? [] })),
    ),
    defaultTransport: defaultServer ? transport(defaultServer) : undefined,
    systemDomains: new Set(config.outbound?.systemDomains ?? []),
    domains,
    filter: {
      maxBytes: config.limits.maxMessageBytes,
      maxLineBytes: config.limits.maxLineBytes,
      maxHeaderBytes: config.limits.maxHeaderBytes,
      maxReceivedHops: config.limits.maxReceivedHops,
      authservId: config.hostname,
    },
    nextHopTimeoutMs,
    forwarded: { dnsServers: config.forwarded?.dnsServers ?? [], trustedArcSealers: config.forwarded?.trustedArcSealers ?? [] },
  };
}

/** Closes the idle connections of a replaced state; in-flight messages finish first. */
export function retire(previous: RelayState): void {
  for (const domain of previous.domains.values()) {
    domain.nextHop.close();
    for (const sender of domain.senders.values()) sender.nextHop.close();
  }
  previous.defaultTransport?.close();
}
