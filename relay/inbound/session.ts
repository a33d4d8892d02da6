// The inbound SMTP dialogue, one decision per command: who may AUTH, which
// recipients a session may name, and what happens to the message. Every
// failure path has a defined reply.
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import type { Logger } from "../../lib/log.js";
import type { Metrics } from "../ops/metrics.js";
import type { Readable } from "node:stream";
import { SmtpReply, cutThrough, oneLine, replyFor } from "../forward/cut-through.js";
import type { DeliveryResult } from "../forward/next-hop.js";
import type { ForwardedVerdict } from "../contract/control-api.js";

export { SmtpReply };
import { parseMailbox } from "./address.js";
import { MessageFilter, type FilterOptions } from "./message-filter.js";
import { describeUsername, type AuthResult } from "./credentials.js";
import { failureDelayMs, type AuthThrottle, type Lockout } from "./throttle.js";
import type { RelayState } from "../state.js";

/** What a session knows once AUTH succeeded. */
export interface AuthenticatedUser {
  /** Which credentials: a customer server's inbound ones, or the helpdesk's submission ones. */
  kind: CredentialKind;
  domain: string;
  version: number;
  username: string;
  mechanism: string;
}

export type CredentialKind = "inbound" | "submission";

export type VerificationReceipt = {
  token: string;
  domain: string;
  at: Date;
} & ({ path: "authenticated"; credentialVersion: number } | { path: "forwarded"; forwarded: ForwardedVerdict });

type Callback = (err?: Error | null) => void;

/** A lockout that just started, as the operator is told of it (no username: the credential version, when it is one). */
export interface LockoutReport extends Lockout {
  kind: CredentialKind;
  domain?: string;
  version?: number;
  at: Date;
}

export interface SessionContext {
  state: () => RelayState;
  /** Brute-force limits: one throttle per credential kind, so one listener's failures never lock out the other's clients. */
  throttle: (kind: CredentialKind) => AuthThrottle;
  /** Records a lockout that just started, for the operator's report. */
  lockedOut?: (lockout: LockoutReport) => void;
  metrics: Metrics;
  log: Logger;
  /** Records a successful AUTH for last-use reporting. */
  credentialUsed: (domain: string, version: number, at: Date) => void;
  /** Records an AUTH refused for a known version (Revoked, Expired), for reporting. */
  credentialRefused: (domain: string, version: number, reason: string, at: Date) => void;
  /** Records a verification token that arrived through the authenticated relay. */
  verificationArrived: (receipt: VerificationReceipt) => void;
}

const authFailed = "5.7.8 Authentication credentials invalid";

export class InboundSessions {
  private readonly authFailures = new Map<string, number>();

  constructor(private readonly ctx: SessionContext) {}

  onClose(session: SMTPServerSession): void {
    this.authFailures.delete(session.id);
    this.ctx.metrics.activeSessions.dec();
  }

  onConnect(session: SMTPServerSession, listener: string, callback: Callback): void {
    this.ctx.metrics.sessions.inc({ listener });
    this.ctx.metrics.activeSessions.inc();
    this.ctx.log.debug("session opened", { session: session.id, remote: session.remoteAddress, listener });
    callback();
  }

  onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: { user: AuthenticatedUser }) => void,
    kind: CredentialKind = "inbound",
  ): void {
    const { metrics, log } = this.ctx;
    const state = this.ctx.state();
    const username = auth.username ?? "";
    const ip = session.remoteAddress;
    if (!session.secure) {
      // smtp-server refuses AUTH without TLS already; this is the second lock.
      callback(new SmtpReply(538, "5.7.11 Encryption required for requested authentication mechanism"));
      return;
    }
    const store = kind === "inbound" ? state.credentials : state.submissionCredentials;
    const throttle = this.ctx.throttle(kind);
    const known = store.versionOf(username);
    const labels = { kind, domain: known?.domain ?? "", version: known ? String(known.version) : "" };
    // RFC 4616: a server that does not let one identity act as another must
    // fail an authorization identity other than the authentication identity.
    // smtp-server hands both over (and makes the authzid the username when a
    // client sends it alone, which is the same identity).
    const authzid = auth.authzid ?? "";
    const result: AuthResult =
      authzid !== "" && authzid !== username
        ? { ok: false, reason: "AuthzidNotPermitted", ...known }
        : store.check(username, auth.password ?? "");
    const domain = result.domain ? state.domains.get(result.domain) : undefined;
    // A correct credential is accepted even from a locked-out source: the source
    // may be shared (a provider's egress pool, a NAT, a /64 of rented hosts),
    // and a lockout that refused the right password would let anyone there
    // deny the real client. A lockout slows and ends failures only; guessing a
    // 256-bit password stays hopeless at that rate.
    // Inbound, each domain offers one mechanism; the helpdesk may use either.
    if (result.ok && domain && (kind === "submission" || domain.entry.authProtocol === auth.method)) {
      throttle.recordSuccess(ip, username);
      metrics.auth.inc({ kind, domain: result.domain, version: String(result.version), result: "Success" });
      if (kind === "inbound") this.ctx.credentialUsed(result.domain, result.version, new Date());
      log.info("AUTH accepted", { session: session.id, remote: ip, kind, domain: result.domain, credentialVersion: result.version });
      callback(null, { user: { kind, domain: result.domain, version: result.version, username: result.username, mechanism: auth.method } });
      return;
    }
    const lockout = throttle.lockout(ip, username);
    if (lockout) {
      metrics.auth.inc({ ...labels, result: "LockedOut" });
      this.refuse(session, callback, {
        ip,
        kind,
        reason: "LockedOut",
        describe: describeUsername(store, username),
        reply: new SmtpReply(454, "4.7.0 Too many failed authentication attempts, try again later"),
      });
      return;
    }
    const reason = result.ok ? "WrongMechanism" : result.reason;
    if (kind === "inbound" && (reason === "Revoked" || reason === "Expired") && result.domain && result.version !== undefined) {
      this.ctx.credentialRefused(result.domain, result.version, reason, new Date());
    }
    metrics.auth.inc({ ...labels, result: reason });
    for (const started of throttle.recordFailure(ip, username)) {
      metrics.authLockouts.inc({ ...labels, scope: started.scope });
      log.warn("AUTH lockout started", {
        remote: ip,
        kind,
        scope: started.scope,
        source: started.source,
        until: new Date(started.until).toISOString(),
        ...describeUsername(store, username),
      });
      this.ctx.lockedOut?.({ ...started, kind, ...known, at: new Date() });
    }
    this.refuse(session, callback, {
      ip,
      kind,
      reason,
      describe: describeUsername(store, username),
      reply: new SmtpReply(535, authFailed),
    });
  }

  /**
   * A failed AUTH: answered after a delay that doubles with each failure of the
   * session, and the connection closed at the per-connection limit, whether
   * the credential was wrong or its source is locked out.
   */
  private refuse(
    session: SMTPServerSession,
    callback: (err: Error) => void,
    failure: { ip: string; kind: CredentialKind; reason: string; describe: Record<string, unknown>; reply: SmtpReply },
  ): void {
    const failures = (this.authFailures.get(session.id) ?? 0) + 1;
    this.authFailures.set(session.id, failures);
    this.ctx.log.warn("AUTH refused", {
      session: session.id,
      remote: failure.ip,
      kind: failure.kind,
      reason: failure.reason,
      failures,
      ...failure.describe,
    });
    const limits = this.ctx.state().config.authFailures;
    setTimeout(
      () => {
        callback(
          failures >= limits.perConnection
            ? new SmtpReply(421, "4.7.0 Too many failed authentication attempts, closing connection")
            : failure.reply,
        );
      },
      failureDelayMs(limits.delayMs, failures),
    ).unref();
  }

  onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void {
    const user = authenticatedUser(session);
    if (!user) {
      callback(new SmtpReply(530, "5.7.0 Authentication required"));
      return;
    }
    if (!this.stillValid(user)) {
      this.ctx.log.info("MAIL refused: the session's credential was revoked", {
        session: session.id,
        domain: user.domain,
        credentialVersion: user.version,
      });
      callback(
        new SmtpReply(451, "4.7.0 The credential this session authenticated with is no longer valid; reconnect and authenticate again"),
      );
      return;
    }
    callback();
  }

  /** Whether the credential a session authenticated with still holds in the config now in force. */
  stillValid(user: AuthenticatedUser): boolean {
    const state = this.ctx.state();
    return (user.kind === "inbound" ? state.credentials : state.submissionCredentials).stillValid(user.username, user.version);
  }

  onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: Callback): void {
    const user = authenticatedUser(session);
    if (!user) {
      callback(new SmtpReply(530, "5.7.0 Authentication required"));
      return;
    }
    const parsed = parseMailbox(address.address);
    const domain = this.ctx.state().domains.get(user.domain);
    if (!parsed.ok) {
      this.ctx.log.info("RCPT refused", { session: session.id, reason: parsed.problem });
      callback(new SmtpReply(550, `5.7.1 Recipient address not accepted (${parsed.problem})`));
      return;
    }
    if (parsed.mailbox.domain !== user.domain || !domain?.addresses.has(parsed.mailbox.address)) {
      this.ctx.log.info("RCPT refused", { session: session.id, reason: "NotASupportAddress", domain: user.domain });
      callback(new SmtpReply(550, "5.7.1 Relaying denied: not a support address of the authenticated domain"));
      return;
    }
    // The envelope carries the canonical form from here on: what was checked is what is routed.
    address.address = parsed.mailbox.address;
    callback();
  }

  onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void {
    const user = authenticatedUser(session);
    const state = this.ctx.state();
    const domain = user ? state.domains.get(user.domain) : undefined;
    if (!user || !domain || !this.stillValid(user)) {
      // Revoked (or the domain disconnected) since MAIL: nothing is delivered as authenticated.
      stream.resume();
      stream.on("end", () => callback(new SmtpReply(451, "4.7.0 Domain no longer served or credential revoked, try again later")));
      return;
    }
    const filter = new MessageFilter({ ...state.filter, prepend: traceHeaders(state.filter, session, user) } satisfies FilterOptions);
    const envelope = {
      from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
      to: session.envelope.rcptTo.map((r) => r.address),
      smtpUtf8: session.envelope.smtpUtf8 === true,
      metadata: {
        domain: user.domain,
        credentialVersion: user.version,
        authenticated: "true",
        session: session.id,
        receivedAt: new Date().toISOString(),
      },
    };
    deliverInbound(
      this.ctx,
      {
        direction: "inbound",
        stream,
        session,
        filter,
        timeoutMs: state.nextHopTimeoutMs,
        fields: { domain: user.domain, credentialVersion: user.version },
        deliver: (message, signal) => domain.nextHop.send(envelope, message, signal),
        delivered: () => {
          if (filter.verificationToken)
            this.ctx.verificationArrived({
              token: filter.verificationToken,
              domain: user.domain,
              path: "authenticated",
              credentialVersion: user.version,
              at: new Date(),
            });
        },
      },
      callback,
    );
  }
}

/** One inbound message, authenticated or forwarded, cut through to its next hop with the same replies, metrics and logs. */
export interface InboundDelivery {
  /** The metrics' direction label: inbound (authenticated listeners) or forwarded. */
  direction: "inbound" | "forwarded";
  stream: SMTPServerDataStream;
  session: SMTPServerSession;
  filter: MessageFilter;
  timeoutMs: number;
  /** What the log lines say about the message (never a secret). */
  fields: Record<string, unknown>;
  deliver: (message: Readable, signal: AbortSignal) => Promise<DeliveryResult>;
  /** After the next hop accepted, before the sender hears 250. */
  delivered?: () => void;
}

export function deliverInbound(
  ctx: Pick<SessionContext, "metrics" | "log">,
  d: InboundDelivery,
  callback: (err?: Error | null, message?: string) => void,
): void {
  const { metrics, log } = ctx;
  const { stream, session, filter, direction } = d;
  const started = process.hrtime.bigint();
  cutThrough({ stream, filter, timeoutMs: d.timeoutMs, deliver: d.deliver }).then(
    (result) => {
      metrics.messages.inc({ direction, result: "Delivered" });
      metrics.bytes.inc({ direction }, filter.inputBytes);
      metrics.nextHopSeconds.observe({ direction }, Number(process.hrtime.bigint() - started) / 1e9);
      log.info("message delivered", { session: session.id, ...d.fields, bytes: filter.inputBytes, nextHop: result.response });
      d.delivered?.();
      callback(null, `2.0.0 Accepted by the next hop: ${oneLine(result.response)}`);
    },
    (error: unknown) => {
      const reply = replyFor(error, filter, stream);
      metrics.messages.inc({ direction, result: reply.result });
      log.warn("message not delivered", {
        session: session.id,
        ...d.fields,
        result: reply.result,
        reply: `${reply.error.responseCode} ${reply.error.message}`,
      });
      callback(reply.error);
    },
  );
}

export function authenticatedUser(session: SMTPServerSession, kind: CredentialKind = "inbound"): AuthenticatedUser | undefined {
  const user = session.user as AuthenticatedUser | undefined;
  return user && typeof user.domain === "string" && user.kind === kind ? user : undefined;
}

/** The trace and trust header fields the relay prepends (RFC 5321 Received, RFC 8601 Authentication-Results). */
export function traceHeaders(filter: Pick<FilterOptions, "authservId">, session: SMTPServerSession, user: AuthenticatedUser): string {
  const mechanism = user.mechanism.toLowerCase();
  return [
    receivedHeader(filter.authservId, session, "ESMTPSA", `(authenticated: ${user.username})`),
    `Authentication-Results: ${filter.authservId}; auth=pass (${mechanism}) smtp.auth=${user.username}\r\n`,
    `X-SmtpConnector-Auth: domain=${user.domain}; version=${user.version}\r\n`,
  ].join("");
}

/**
 * Our Received field (RFC 5321 4.4; the protocol names of RFC 3848: ESMTPS
 * with TLS, ESMTPSA with TLS and AUTH). The HELO name is the client's word:
 * only host-name characters of it are kept.
 */
export function receivedHeader(
  authservId: string,
  session: SMTPServerSession,
  protocol: "ESMTP" | "ESMTPS" | "ESMTPSA",
  comment = "",
): string {
  const helo = session.hostNameAppearsAs.replace(/[^A-Za-z0-9.\-[\]:]/g, "");
  const date = new Date().toUTCString().replace("GMT", "+0000");
  return `Received: from ${helo || "unknown"} ([${session.remoteAddress}])\r\n\tby ${authservId} (smtp-connector) with ${protocol} id ${session.id}\r\n\t${comment ? `${comment}; ` : ""}${date}\r\n`;
}
