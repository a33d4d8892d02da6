// The relay's Prometheus metrics. One registry per relay, so tests can run
// several relays in one process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface MetricSources {
  /** Lockouts in force now, by credential kind and scope, read at each scrape. */
  activeLockouts?: () => { kind: string; scope: string; count: number }[];
  /** Bytes of forwarded messages held in memory now (limits.forwardedMemoryBytes bounds them), read at each scrape. */
  forwardedHeldBytes?: () => number;
}

export function createMetrics(sources: MetricSources = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "smtpc_relay_process_" });
  return {
    registry,
    sessions: new Counter({
      name: "smtpc_relay_sessions_total",
      help: "SMTP sessions accepted, by listener.",
      labelNames: ["listener"],
      registers: [registry],
    }),
    connectionsRefused: new Counter({
      name: "smtpc_relay_connections_refused_total",
      help: "Connections closed by a connection limit or a PROXY header, by listener and reason (PerSourceLimit, HandshakeTimeout, TooManyCommands, ProxyHeaderInvalid, ProxyHeaderUntrusted, ProxyClientNotAllowed).",
      labelNames: ["listener", "reason"],
      registers: [registry],
    }),
    activeSessions: new Gauge({ name: "smtpc_relay_sessions_active", help: "SMTP sessions open now.", registers: [registry] }),
    auth: new Counter({
      name: "smtpc_relay_auth_total",
      help: "AUTH attempts by kind (inbound, submission), domain, credential version and result (Success, UnknownUser, WrongPassword, Revoked, Expired, LockedOut, WrongMechanism, AuthzidNotPermitted).",
      labelNames: ["kind", "domain", "version", "result"],
      registers: [registry],
    }),
    authLockouts: new Counter({
      name: "smtpc_relay_auth_lockouts_total",
      help: "Brute-force lockouts started, by kind (inbound, submission), scope (Source, UsernameAndSource), and the domain and credential version of the username that failed (empty when it is none).",
      labelNames: ["kind", "scope", "domain", "version"],
      registers: [registry],
    }),
    authLockoutsActive: new Gauge({
      name: "smtpc_relay_auth_lockouts_active",
      help: "Brute-force lockouts in force now, by kind (inbound, submission) and scope (Source, UsernameAndSource).",
      labelNames: ["kind", "scope"],
      registers: [registry],
      collect() {
        for (const { kind, scope, count } of sources.activeLockouts?.() ?? []) this.set({ kind, scope }, count);
      },
    }),
    messages: new Counter({
      name: "smtpc_relay_messages_total",
      help: "Messages by direction (inbound: the authenticated listeners; forwarded; outbound) and result (Delivered, NextHopTempFail, NextHopReject, Rejected reasons).",
      labelNames: ["direction", "result"],
      registers: [registry],
    }),
    bytes: new Counter({
      name: "smtpc_relay_message_bytes_total",
      help: "Message bytes received, by direction.",
      labelNames: ["direction"],
      registers: [registry],
    }),
    nextHopSeconds: new Histogram({
      name: "smtpc_relay_next_hop_seconds",
      help: "Time from the end of DATA to the next hop's answer.",
      labelNames: ["direction"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    forwardedChecksActive: new Gauge({
      name: "smtpc_relay_forwarded_checks_active",
      help: "Forwarded messages whose SPF/DKIM/DMARC/ARC checks are running now (each holds its message in memory).",
      registers: [registry],
    }),
    forwardedHeldBytes: new Gauge({
      name: "smtpc_relay_forwarded_held_bytes",
      help: "Bytes of forwarded messages held in memory now, from their first byte until their checks and next hop are done (at most limits.forwardedMemoryBytes).",
      registers: [registry],
      collect() {
        this.set(sources.forwardedHeldBytes?.() ?? 0);
      },
    }),
    forwardedVerdicts: new Counter({
      name: "smtpc_relay_forwarded_checks_total",
      help: "Forwarded messages checked, by verdict: DkimAligned (a passing DKIM signature of the recipient domain), ArcTrusted (else a verifying ARC chain of a trusted sealer), Unverified.",
      labelNames: ["verdict"],
      registers: [registry],
    }),
    outbound: new Counter({
      name: "smtpc_relay_outbound_messages_total",
      help: "Outbound messages by sender (support address, or 'default' for the default transport) and result (Delivered, refusal and failure reasons).",
      labelNames: ["sender", "result"],
      registers: [registry],
    }),
    outboundSeconds: new Histogram({
      name: "smtpc_relay_outbound_delivery_seconds",
      help: "Time from the end of DATA to the customer server's answer, by sender.",
      labelNames: ["sender"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    configReloads: new Counter({
      name: "smtpc_relay_config_reloads_total",
      help: "Config reloads by result (Applied, Invalid).",
      labelNames: ["result"],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
