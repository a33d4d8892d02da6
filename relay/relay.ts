// One relay process: its listeners, its ops endpoint, and the config they
// share, reloaded without dropping a session.
import { createHash } from "node:crypto";
import { readFileSync, watch, type FSWatcher } from "node:fs";
import type http from "node:http";
import https from "node:https";
import { createSecureContext } from "node:tls";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import type { SMTPServerOptions, SMTPServerSession } from "smtp-server";
import { ConfigError } from "./contract/config-parser.js";
import { loadConfig } from "./config/file.js";
import { connectionLimitDefaults, type RelayConfig } from "./contract/config.js";
import { SmtpReply } from "./forward/cut-through.js";
import { ForwardedSessions } from "./inbound/forwarded-session.js";
import { InboundSessions, type CredentialKind, type VerificationReceipt } from "./inbound/session.js";
import { AddressRanges, ProxyTrust } from "./inbound/proxy-protocol.js";
import { GreetingDelayServer, type ConnectionLimits } from "./inbound/smtp-server.js";
import { AuthThrottle, type ThrottleOptions } from "./inbound/throttle.js";
import { OutboundSessions } from "./outbound/session.js";
import { SpoolBudget } from "./outbound/spool.js";
import { controlHandler } from "./ops/control.js";
import { createOpsServer, type Readiness } from "./ops/http.js";
import { RelayReports } from "./ops/reports.js";
import type { Logger } from "../lib/log.js";
import { createMetrics, type Metrics } from "./ops/metrics.js";
import { buildState, retire, type RelayState } from "./state.js";
import { batchAllWrites } from "./write-batching.js";

type Listener = "starttls" | "implicitTls" | "forwarded" | "submission";

export class Relay {
  readonly metrics: Metrics;
  private state: RelayState;
  /** Brute-force limits, one per credential kind (see throttle.ts). */
  private readonly throttles: Record<CredentialKind, AuthThrottle>;
  private readonly sessions: InboundSessions;
  private readonly outbound: OutboundSessions;
  private readonly forwarded: ForwardedSessions;
  private control: https.Server | undefined;
  private readonly servers = new Map<Listener, GreetingDelayServer>();
  private ops: http.Server | undefined;
  private watcher: FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private fingerprint = "";
  private draining = false;
  /** The certificate and key the listeners were last given. */
  private tlsInUse: { key: Buffer; cert: Buffer } | undefined;
  private listening = false;
  /** When the config in force was loaded, and when a reload was last refused since (the pod keeps serving the one in force). */
  private loadedAt = new Date();
  private refusedAt: Date | undefined;
  /** What the operator pulls: credential use and verification receipts. */
  readonly reports = new RelayReports();

  constructor(
    private readonly configFile: string,
    private readonly log: Logger,
  ) {
    const config = loadConfig(configFile);
    this.state = buildState(config, new SpoolBudget(0), new SpoolBudget(0));
    this.throttles = throttlesFor(config);
    this.metrics = createMetrics({
      forwardedHeldBytes: () => this.state.forwardedMemory.inUse,
      activeLockouts: () =>
        (Object.entries(this.throttles) as [CredentialKind, AuthThrottle][]).flatMap(([kind, throttle]) =>
          Object.entries(throttle.activeCounts()).map(([scope, count]) => ({ kind, scope, count })),
        ),
    });
    this.fingerprint = this.currentFingerprint();
    const verificationArrived = (receipt: VerificationReceipt) => {
      this.reports.arrived(receipt);
      log.info("verification token arrived", {
        domain: receipt.domain,
        path: receipt.path,
        ...(receipt.path === "authenticated" ? { credentialVersion: receipt.credentialVersion } : receipt.forwarded),
      });
    };
    this.sessions = new InboundSessions({
      state: () => this.state,
      throttle: (kind) => this.throttles[kind],
      lockedOut: (lockout) => this.reports.lockedOut(lockout),
      metrics: this.metrics,
      log,
      credentialUsed: (domain, version, at) => this.reports.used(domain, version, at),
      credentialRefused: (domain, version, reason, at) => this.reports.refused(domain, version, reason, at),
      verificationArrived,
    });
    this.outbound = new OutboundSessions({ state: () => this.state, metrics: this.metrics, log });
    this.forwarded = new ForwardedSessions({
      state: () => this.state,
      metrics: this.metrics,
      log,
      verificationArrived,
    });
  }

  get config(): RelayConfig {
    return this.state.config;
  }

  async start(): Promise<void> {
    const { config } = this.state;
    const host = config.listeners.bindAddress;
    // The ops endpoint first: /readyz answers "not ready" until every listener is bound, instead of refusing.
    this.ops = await listenHttp(
      createOpsServer(this.metrics.registry, { readiness: () => this.readiness() }),
      config.listeners.health.port,
      host,
    );
    try {
      await this.listenAll(config, host);
    } catch (error) {
      for (const server of [...this.servers.values()]) server.close(() => undefined);
      this.ops.close();
      throw error;
    }
    this.listening = true;
    this.watchConfig();
    this.log.info("relay started", { ports: this.ports(), domains: config.domains.map((d) => d.domain) });
  }

  /**
   * Ready: every listener the config asks for is bound with the certificate loaded, and the relay is not
   * draining. A refused reload leaves the relay ready: it serves the config in force, and every replica reads
   * the same Secret, so failing them all would stop the mail of every domain for one bad edit (a new pod with
   * that config does not start, and the rollout stops there). The body says so; the log says why.
   */
  readiness(): Readiness {
    const notReady: string[] = [];
    if (!this.listening) notReady.push("starting: not every listener is bound yet");
    if (this.draining) notReady.push("draining: shutting down");
    for (const [name, server] of this.servers) if (!server.server.listening) notReady.push(`the ${name} listener is not listening`);
    if (this.listening && this.state.config.listeners.control && !this.control?.listening)
      notReady.push("the control listener is not listening");
    if (!this.tlsInUse) notReady.push("no TLS certificate loaded");
    const notes = [`config loaded at ${this.loadedAt.toISOString()}`];
    if (this.refusedAt)
      notes.push(`a config reload was refused at ${this.refusedAt.toISOString()} (the log says why); serving the config loaded before it`);
    return { ready: notReady.length === 0, detail: [...notReady, ...notes] };
  }

  private async listenAll(config: RelayConfig, host: string | undefined): Promise<void> {
    if (config.listeners.starttls) await this.listen("starttls", config.listeners.starttls.port, host);
    if (config.listeners.implicitTls) await this.listen("implicitTls", config.listeners.implicitTls.port, host);
    if (config.listeners.forwarded) await this.listen("forwarded", config.listeners.forwarded.port, host);
    if (config.listeners.submission)
      await this.listen("submission", config.listeners.submission.port, config.listeners.submission.bindAddress ?? host);
    if (config.listeners.control) {
      // HTTPS with the relay's certificate (reloaded with it): the operator pins it.
      const handler = controlHandler({ state: () => this.state, reports: this.reports, metrics: this.metrics, log: this.log });
      this.control = await listenHttp(
        https.createServer({ ...(this.tlsInUse ??= this.tlsMaterial(config)), minVersion: config.tls.minVersion ?? "TLSv1.2" }, handler),
        config.listeners.control.port,
        host,
      );
    }
  }

  /** The ports actually bound (useful when the config asks for port 0 in tests). */
  ports(): Record<string, number> {
    const ports: Record<string, number> = {};
    for (const [name, server] of this.servers) ports[name] = (server.server.address() as AddressInfo).port;
    if (this.ops) ports.health = (this.ops.address() as AddressInfo).port;
    if (this.control) ports.control = (this.control.address() as AddressInfo).port;
    return ports;
  }

  /** Re-reads the config; an invalid one is refused and the current one stays. */
  reload(): boolean {
    const refuse = (error: unknown) => {
      this.metrics.configReloads.inc({ result: "Invalid" });
      this.refusedAt = new Date();
      this.log.error("config reload refused, keeping the current config", {
        error: error instanceof ConfigError ? error.problems : error instanceof Error ? error.message : String(error),
      });
      return false;
    };
    let config: RelayConfig;
    let material: { key: Buffer; cert: Buffer };
    try {
      config = loadConfig(this.configFile);
      // Read and checked before anything changes: a certificate that cannot be read or does not match its key
      // (a half-written or wrong Secret) refuses the reload instead of ending the process or breaking TLS.
      material = this.tlsMaterial(config);
      createSecureContext({ ...material, minVersion: config.tls.minVersion ?? "TLSv1.2" });
    } catch (error) {
      return refuse(error);
    }
    const previous = this.state;
    try {
      this.state = buildState(config, previous.spool, previous.forwardedMemory);
    } catch (error) {
      return refuse(error);
    }
    for (const throttle of Object.values(this.throttles)) throttle.reconfigure(throttleOptions(config));
    this.reloadCertificate(previous.config, config, material);
    // smtp-server reads these per command: new sessions and commands see the new limits.
    for (const [name, server] of this.servers) {
      server.options.size = config.limits.maxMessageBytes;
      server.options.maxRecipients = config.limits.maxRecipients;
      server.options.maxClients = config.limits.maxConnections;
      server.options.maxAllowedUnauthenticatedCommands = libraryCommandLimit(config);
      server.limits = this.connectionLimits(name, config);
    }
    retire(previous);
    this.loadedAt = new Date();
    this.refusedAt = undefined;
    this.metrics.configReloads.inc({ result: "Applied" });
    this.log.info("config reloaded", { domains: config.domains.map((d) => d.domain) });
    return true;
  }

  /** Stops accepting, lets open sessions finish (up to graceMs), then closes. */
  async stop(graceMs = 30_000): Promise<void> {
    this.draining = true;
    this.watcher?.close();
    clearInterval(this.poller);
    this.log.info("relay draining", { sessions: [...this.servers.values()].reduce((n, s) => n + s.connections.size, 0) });
    await Promise.all(
      [...this.servers.values()].map(
        (server) =>
          new Promise<void>((resolve) => {
            server.options.closeTimeout = graceMs;
            server.close(() => resolve());
          }),
      ),
    );
    retire(this.state);
    await Promise.all(
      [this.ops, this.control].map((server) => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))),
    );
    this.log.info("relay stopped");
  }

  private async listen(name: Listener, port: number, host: string | undefined): Promise<void> {
    const { limits } = this.state.config;
    const server = new GreetingDelayServer(
      this.serverOptions(name),
      { greetingDelayMs: limits.greetingDelayMs, sessionTimeoutMs: limits.sessionTimeoutSeconds * 1000 },
      this.connectionLimits(name, this.state.config),
    );
    server.on("error", (error: Error) => this.log.warn("smtp connection error", { listener: name, error: error.message }));
    await new Promise<void>((resolve, reject) => {
      server.server.once("error", reject);
      server.listen({ port, ...(host ? { host } : {}) }, () => resolve());
    });
    this.servers.set(name, server);
  }

  private connectionLimits(listener: Listener, config: RelayConfig): ConnectionLimits {
    const { limits } = config;
    return {
      perSource: limits.maxConnectionsPerSource ?? connectionLimitDefaults.maxConnectionsPerSource,
      handshakeTimeoutMs: (limits.tlsHandshakeTimeoutSeconds ?? connectionLimitDefaults.tlsHandshakeTimeoutSeconds) * 1000,
      maxUnauthenticatedCommands: limits.maxUnauthenticatedCommands ?? connectionLimitDefaults.maxUnauthenticatedCommands,
      // Without AUTH, a new accepted recipient or an accepted message is the progress that lets a forwarder send many messages on one connection.
      ...(listener === "forwarded" ? { progress: (session: SMTPServerSession) => this.forwarded.progress(session) } : {}),
      refused: (reason) => this.metrics.connectionsRefused.inc({ listener, reason }),
      // smtp-server's own PROXY reader (useProxy) is never used: it knows version 1 only.
      ...(config.proxyProtocol ? { proxy: new ProxyTrust(config.proxyProtocol.trustedRanges) } : {}),
      // The customer-facing listeners, whose allowedSourceRanges these are (a Forwarded domain's: the mail service's
      // egress ranges, which the NetworkPolicy applies to 8025 too, ADR 0014); not submission (the helpdesk's, from
      // inside the cluster).
      ...(config.proxyProtocol?.allowedClients && listener !== "submission"
        ? { proxyClients: new AddressRanges(config.proxyProtocol.allowedClients) }
        : {}),
      proxied: (version, client, balancer) =>
        this.log.debug("PROXY header", { listener, version, client: client ?? "(balancer's own)", balancer }),
    };
  }

  private serverOptions(listener: Listener): SMTPServerOptions {
    const { config } = this.state;
    const { limits } = config;
    const mechanisms = [...new Set(config.domains.map((d) => d.authProtocol))];
    const sessions = this.sessions;
    const outbound = this.outbound;
    const submission = listener === "submission";
    const common: SMTPServerOptions = {
      name: config.hostname,
      banner: "smtp-connector relay",
      ...(this.tlsInUse ??= this.tlsMaterial(config)),
      minVersion: config.tls.minVersion ?? "TLSv1.2",
      size: limits.maxMessageBytes,
      rejectOversized: true,
      maxRecipients: limits.maxRecipients,
      maxClients: limits.maxConnections,
      disableReverseLookup: true,
      useXClient: false,
      useXForward: false,
      // smtp-server's socket timeout also runs while the sender waits for our
      // answer after the final dot: it must outlast the whole next-hop budget.
      socketTimeout: Math.max(limits.idleTimeoutSeconds, limits.nextHopTimeoutSeconds + 5) * 1000,
      closeTimeout: 30_000,
      maxAllowedUnauthenticatedCommands: libraryCommandLimit(config),
      logger: false,
      onClose: (session) => sessions.onClose(session),
    };
    if (listener === "forwarded") return { ...common, ...this.forwardedOptions() };
    return {
      ...common,
      secure: listener === "implicitTls",
      // TLS before anything that matters: AUTH needs TLS, MAIL needs AUTH.
      allowInsecureAuth: false,
      authOptional: false,
      authMethods: submission ? ["PLAIN", "LOGIN"] : mechanisms.length > 0 ? mechanisms : ["PLAIN"],
      disabledCommands: listener === "implicitTls" ? ["STARTTLS"] : [],
      onConnect: (session, callback) => {
        // Before TLS, AUTH is neither offered nor accepted (like Postfix's
        // smtpd_tls_auth_only): a client that sees no AUTH sends no password
        // in clear, not even in an initial response we would refuse.
        if (listener !== "implicitTls") session.disabledCommands = ["AUTH"];
        sessions.onConnect(session, listener, callback);
      },
      onSecure: (socket, session, callback) => {
        batchAllWrites(socket);
        session.disabledCommands = [];
        callback();
      },
      onAuth: (auth, session, callback) => sessions.onAuth(auth, session, callback, submission ? "submission" : "inbound"),
      onMailFrom: (address, session, callback) => (submission ? outbound : sessions).onMailFrom(address, session, callback),
      onRcptTo: (address, session, callback) => (submission ? outbound : sessions).onRcptTo(address, session, callback),
      onData: (stream, session, callback) => (submission ? outbound : sessions).onData(stream, session, callback),
    };
  }

  /**
   * The forwarded listener: no AUTH at all — not advertised, not accepted,
   * before or after STARTTLS (each of the three settings below would be
   * enough alone; a session-level disabledCommands replaces the server's, so
   * it is set on connect and again after TLS). STARTTLS is offered, never
   * required: forwarders use it when they can.
   */
  private forwardedOptions(): SMTPServerOptions {
    const forwarded = this.forwarded;
    return {
      secure: false,
      authOptional: true,
      authMethods: [],
      disabledCommands: ["AUTH"],
      onConnect: (session, callback) => {
        session.disabledCommands = ["AUTH"];
        this.sessions.onConnect(session, "forwarded", callback);
      },
      onSecure: (socket, session, callback) => {
        batchAllWrites(socket);
        session.disabledCommands = ["AUTH"];
        callback();
      },
      onAuth: (_auth, _session, callback) => callback(new SmtpReply(503, "5.5.1 AUTH is not offered on this port")),
      onMailFrom: (address, session, callback) => forwarded.onMailFrom(address, session, callback),
      onRcptTo: (address, session, callback) => forwarded.onRcptTo(address, session, callback),
      onData: (stream, session, callback) => forwarded.onData(stream, session, callback),
    };
  }

  private tlsMaterial(config: RelayConfig): { key: Buffer; cert: Buffer } {
    return { key: readFileSync(config.tls.keyFile), cert: readFileSync(config.tls.certFile) };
  }

  private reloadCertificate(previous: RelayConfig, next: RelayConfig, material: { key: Buffer; cert: Buffer }): void {
    // Compared with what the listeners were given, not with the files: the
    // files are the same paths before and after a renewal.
    const before = this.tlsInUse;
    if (before && material.cert.equals(before.cert) && material.key.equals(before.key) && previous.tls.minVersion === next.tls.minVersion)
      return;
    this.tlsInUse = material;
    // New handshakes use the new certificate; established sessions keep theirs.
    for (const server of this.servers.values()) server.updateSecureContext({ ...material, minVersion: next.tls.minVersion ?? "TLSv1.2" });
    this.control?.setSecureContext({ ...material, minVersion: next.tls.minVersion ?? "TLSv1.2" });
    this.log.info("TLS certificate reloaded");
  }

  /**
   * Kubernetes updates a mounted Secret by swapping a symlink in its
   * directory, which file watches do not always see: watch the directory and
   * also compare contents every two seconds. A burst of events (a swap is
   * several; a busy file beside the config is one per write) makes one check.
   */
  private watchConfig(): void {
    const check = () => {
      const now = this.currentFingerprint();
      if (now !== this.fingerprint) {
        this.fingerprint = now;
        this.reload();
      }
    };
    let pending: NodeJS.Timeout | undefined;
    const soon = () => {
      pending ??= setTimeout(() => {
        pending = undefined;
        check();
      }, 50).unref();
    };
    try {
      this.watcher = watch(dirname(this.configFile), soon);
    } catch {
      /* the poll below still sees changes */
    }
    this.poller = setInterval(check, 2_000);
    this.poller.unref();
  }

  private currentFingerprint(): string {
    const hash = createHash("sha256");
    for (const file of new Set([this.configFile, ...(this.state ? referencedFiles(this.state.config) : [])])) {
      try {
        hash.update(readFileSync(file));
      } catch {
        hash.update("missing");
      }
    }
    return hash.digest("hex");
  }
}

/** Every file the config points at: a renewed certificate or a rotated password or key arrives as a changed file. */
function referencedFiles(config: RelayConfig): string[] {
  const files = [config.tls.certFile, config.tls.keyFile];
  const server = (s: { passwordFile?: string; caFile?: string } | undefined) => {
    if (s?.passwordFile) files.push(s.passwordFile);
    if (s?.caFile) files.push(s.caFile);
  };
  server(config.outbound?.defaultTransport);
  for (const domain of config.domains) {
    server(domain.delivery.smtp);
    if (domain.delivery.webhook) files.push(domain.delivery.webhook.hmacKeyFile);
    server(domain.delivery.webhook);
    for (const sender of domain.outbound?.senders ?? []) server(sender.server);
    for (const key of domain.outbound?.dkim ?? []) files.push(key.keyFile);
  }
  return files;
}

function listenHttp<S extends http.Server | https.Server>(server: S, port: number, host: string | undefined): Promise<S> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * smtp-server's own count of commands before AUTH, a backstop behind ours
 * (GreetingDelayServer): it also counts AUTH LOGIN's username and password
 * lines, so at our limit it would refuse a client still within its AUTH
 * attempts.
 */
function libraryCommandLimit(config: RelayConfig): number {
  return (
    (config.limits.maxUnauthenticatedCommands ?? connectionLimitDefaults.maxUnauthenticatedCommands) +
    2 * config.authFailures.perConnection +
    1
  );
}

function throttleOptions(config: RelayConfig): ThrottleOptions {
  const { authFailures } = config;
  return {
    threshold: authFailures.lockoutThreshold,
    ...(authFailures.usernameLockoutThreshold ? { usernameThreshold: authFailures.usernameLockoutThreshold } : {}),
    windowMs: authFailures.lockoutWindowSeconds * 1000,
    lockoutMs: authFailures.lockoutSeconds * 1000,
  };
}

function throttlesFor(config: RelayConfig): Record<CredentialKind, AuthThrottle> {
  return { inbound: new AuthThrottle(throttleOptions(config)), submission: new AuthThrottle(throttleOptions(config)) };
}
