// Cut-through delivery to one SMTP or LMTP next hop, over a small pool of
// connections that all carry the same identity (host, TLS, credentials): a
// pool belongs to one next hop and is never shared with another.
//
// A connection that saw any error is closed, never reused: if the message
// stream fails mid-DATA the socket is destroyed before the final dot, so the
// next hop discards the partial message instead of accepting it.
//
// A new connection resumes a TLS session an earlier one was given (as Postfix
// does with smtp_tls_session_cache_database): an abbreviated handshake instead
// of a full one each time the pool opens a connection, which at low traffic is
// once per message (idle connections close after idleCloseMs). Sessions stay
// within this pool, one identity, because a resumed session checks no
// certificate. The pinned Node will not resume a session under another server
// name, but an IP-address next hop sends none, and the same name with another
// CA (a session verified against one CA would skip the other's check) or
// another login (another customer's pool) must not share one either. A
// handshake that fails TLS drops the session: a next hop whose new certificate
// fails is checked in full each time, not resumed where the old one is taken.
// The newest session is offered until a newer one comes, as Postfix's own
// cache does, for at most an hour (Postfix's smtp_tls_session_cache_timeout)
// after a full handshake last verified the certificate: a session a resumed
// handshake brings keeps the time of the one it resumed (RFC 8446 4.6.1), or a
// server that gives a ticket on every resumption would never be checked again.
// Postfix as a server gives a ticket on a full handshake and none on a
// resumed one, so a session used once only would resume every other
// connection. (RFC 8446 C.4 asks for single use for privacy against an
// observer linking connections; between these two servers there is nothing to
// hide by it, and no early data is sent, so nothing can be replayed.) A reload
// builds new pools, and with them a full handshake.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import type { SmtpDelivery } from "../contract/config.js";
import { serverEndpoint } from "../contract/control-api.js";
import { loginDigest, secretFileText } from "../contract/digests.js";
import { NextHopError } from "../contract/failures.js";
import type { DeliveryResult, Envelope, NextHop } from "./next-hop.js";
import { SmtpClient, type Reply } from "./smtp-client.js";

export interface NextHopOptions {
  /** Name we announce in EHLO/LHLO. */
  clientName: string;
  /** Connection, greeting and socket timeout towards the next hop. */
  timeoutMs: number;
  maxIdleConnections?: number;
  maxMessagesPerConnection?: number;
  idleCloseMs?: number;
  /** Monotonic milliseconds, for a TLS session's lifetime (performance.now; tests move their own). */
  now?: () => number;
}

const tlsSessionLifetimeMs = 3_600_000;

interface TlsSession {
  session: Buffer;
  verifiedAt: number;
}

interface Pooled {
  client: SmtpClient;
  /** Taken from the idle list (it carried a message before). */
  reused?: boolean;
  idleTimer?: NodeJS.Timeout;
}

export class SmtpNextHop implements NextHop {
  private readonly idle: Pooled[] = [];
  private readonly password: string | undefined;
  private readonly ca: string | undefined;
  private closed = false;
  /**
   * The newest TLS session the next hop gave one of this pool's connections,
   * and when the certificate behind it was last verified: a full handshake's
   * time, carried over to every session a resumption of it brings.
   */
  private tlsSession: TlsSession | undefined;
  /** Who this next hop's connections are: server, TLS, trust and login. Equal identities may share a pool. */
  readonly identity: string;
  readonly credentialSha256?: string;
  readonly server: string;

  constructor(
    readonly delivery: SmtpDelivery,
    private readonly options: NextHopOptions,
  ) {
    // Read once per config load: a changed file arrives as a new config.
    this.password = delivery.passwordFile ? secretFileText(readFileSync(delivery.passwordFile, "utf8")) : undefined;
    this.ca = delivery.caFile ? readFileSync(delivery.caFile, "utf8") : undefined;
    if (delivery.username && this.password !== undefined) {
      this.credentialSha256 = loginDigest(delivery.username, this.password);
    }
    this.server = serverEndpoint(delivery);
    this.identity = createHash("sha256")
      .update(
        JSON.stringify([
          delivery.host,
          delivery.port,
          delivery.protocol,
          delivery.tls,
          this.ca ?? null,
          delivery.username ?? null,
          this.password ?? null,
        ]),
      )
      .digest("hex");
  }

  async send(envelope: Envelope, message: Readable, signal?: AbortSignal): Promise<DeliveryResult> {
    let pooled = this.take();
    let reply: Reply;
    try {
      reply = await (pooled ??= { client: await this.open(signal) }).client.send(envelope.from, envelope.to, message, signal, {
        smtpUtf8: envelope.smtpUtf8 === true,
      });
    } catch (error) {
      // A pooled connection the next hop closed while it sat idle fails before
      // any of the message was read: that one message may go on a new connection.
      if (!(pooled?.reused && error instanceof NextHopError && error.kind === "Connection" && error.detail.command === "MAIL FROM"))
        throw error;
      pooled = { client: await this.open(signal) };
      reply = await pooled.client.send(envelope.from, envelope.to, message, signal, { smtpUtf8: envelope.smtpUtf8 === true });
    }
    this.release(pooled);
    return { response: reply.text };
  }

  close(): void {
    this.closed = true;
    for (const pooled of this.idle.splice(0)) {
      clearTimeout(pooled.idleTimer);
      pooled.client.quit();
    }
  }

  private take(): Pooled | undefined {
    for (;;) {
      const pooled = this.idle.pop();
      if (!pooled) return undefined;
      clearTimeout(pooled.idleTimer);
      if (pooled.client.usable) return { ...pooled, reused: true };
    }
  }

  private release(pooled: Pooled): void {
    const max = this.options.maxMessagesPerConnection ?? 100;
    if (
      this.closed ||
      !pooled.client.usable ||
      pooled.client.messages >= max ||
      this.idle.length >= (this.options.maxIdleConnections ?? 20)
    ) {
      pooled.client.quit();
      return;
    }
    pooled.idleTimer = setTimeout(() => {
      const at = this.idle.indexOf(pooled);
      if (at !== -1) this.idle.splice(at, 1);
      pooled.client.quit();
    }, this.options.idleCloseMs ?? 5_000);
    pooled.idleTimer.unref();
    this.idle.push(pooled);
  }

  /** The newest session, while its certificate was verified less than the lifetime ago. */
  private currentTlsSession(): TlsSession | undefined {
    if (this.tlsSession && this.now() - this.tlsSession.verifiedAt < tlsSessionLifetimeMs) return this.tlsSession;
    this.tlsSession = undefined;
    return undefined;
  }

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }

  private async open(signal?: AbortSignal): Promise<SmtpClient> {
    const { delivery, options } = this;
    const offered = delivery.tls === "None" ? undefined : this.currentTlsSession();
    // A resumed handshake checked no certificate: its sessions keep the offered one's verification time.
    const keep = (session: Buffer, resumed: boolean) => {
      if (resumed && !offered) return;
      this.tlsSession = { session, verifiedAt: resumed && offered ? offered.verifiedAt : this.now() };
    };
    try {
      return await SmtpClient.open(
        {
          host: delivery.host,
          port: delivery.port,
          lmtp: delivery.protocol === "LMTP",
          tls: delivery.tls,
          ...(this.ca ? { ca: this.ca } : {}),
          clientName: options.clientName,
          timeoutMs: options.timeoutMs,
          ...(delivery.username && this.password !== undefined ? { auth: { username: delivery.username, password: this.password } } : {}),
          ...(offered ? { session: offered.session } : {}),
          ...(delivery.tls === "None" ? {} : { onSession: keep }),
        },
        signal,
      );
    } catch (error) {
      // A failed handshake (a certificate that no longer verifies, or a TLS
      // fault) drops the kept session: offered again, it would resume without
      // a check wherever the server still takes it, and the next hop would
      // flap between a resumed delivery and ETLS.
      if (error instanceof NextHopError && error.detail.code === "ETLS") this.tlsSession = undefined;
      throw error;
    }
  }
}
