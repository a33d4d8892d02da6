// What the relay derives from one config: lookups built once per load and
// swapped atomically on reload, so a session sees one consistent config.
import type { RelayConfig, DomainEntry } from "./config/schema.js";
import { CredentialStore } from "./inbound/credentials.js";
import type { FilterOptions } from "./inbound/message-filter.js";
import type { NextHop } from "./forward/next-hop.js";
import { SmtpNextHop } from "./forward/smtp-next-hop.js";
import { WebhookNextHop } from "./forward/webhook-next-hop.js";

export interface ServedDomain {
  entry: DomainEntry;
  addresses: ReadonlySet<string>;
  nextHop: NextHop;
}

export interface RelayState {
  config: RelayConfig;
  credentials: CredentialStore;
  domains: ReadonlyMap<string, ServedDomain>;
  filter: Omit<FilterOptions, "prepend">;
  nextHopTimeoutMs: number;
}

/**
 * Builds the state for a config. Next hops are built afresh (their password
 * files may have changed under the same path); the previous ones finish their
 * in-flight messages and close.
 */
export function buildState(config: RelayConfig): RelayState {
  const nextHopTimeoutMs = config.limits.nextHopTimeoutSeconds * 1000;
  const domains = new Map<string, ServedDomain>();
  for (const entry of config.domains) {
    const { smtp, webhook } = entry.delivery;
    const nextHop = smtp
      ? new SmtpNextHop(smtp, { clientName: config.hostname, timeoutMs: nextHopTimeoutMs })
      : new WebhookNextHop(webhook!, nextHopTimeoutMs);
    domains.set(entry.domain, { entry, addresses: new Set(entry.addresses.map((a) => a.toLowerCase())), nextHop });
  }
  return {
    config,
    credentials: new CredentialStore(config.domains),
    domains,
    filter: {
      maxBytes: config.limits.maxMessageBytes,
      maxLineBytes: config.limits.maxLineBytes,
      maxHeaderBytes: config.limits.maxHeaderBytes,
      maxReceivedHops: config.limits.maxReceivedHops,
      authservId: config.hostname,
    },
    nextHopTimeoutMs,
  };
}

/** Closes the idle connections of a replaced state; in-flight messages finish first. */
export function retire(previous: RelayState): void {
  for (const domain of previous.domains.values()) domain.nextHop.close();
}
