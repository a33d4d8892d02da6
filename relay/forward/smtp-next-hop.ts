// Cut-through delivery to one SMTP or LMTP next hop, over a small pool of
// connections that all carry the same identity (host, TLS, credentials): a
// pool belongs to one next hop and is never shared with another.
//
// A connection that saw any error is closed, never reused: if the message
// stream fails mid-DATA the socket is destroyed before the final dot, so the
// next hop discards the partial message instead of accepting it.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import type { SmtpDelivery } from "../config/schema.js";
import type { DeliveryResult, Envelope, NextHop } from "./next-hop.js";

export interface NextHopOptions {
  /** Name we announce in EHLO/LHLO. */
  clientName: string;
  /** Connection, greeting and socket timeout towards the next hop. */
  timeoutMs: number;
  maxIdleConnections?: number;
  maxMessagesPerConnection?: number;
  idleCloseMs?: number;
}


/** SHA-256 of a login ("username\0password"): how the relay tells the operator which login it used. */
export function loginDigest(username: string, password: string): string {
  return createHash("sha256").update(`${username}\0${password}`).digest("hex");
}

/** A next-hop failure: its SMTP reply when it gave one, or a transport error. */
export class NextHopError extends Error {
  constructor(
    message: string,
    readonly responseCode: number | undefined,
    readonly kind: "Reply" | "Connection" | "Timeout" | "Message",
    /** What nodemailer says failed: its error code (EAUTH, ETLS, ECONNECTION, …) and the SMTP command. */
    readonly detail: { code?: string; command?: string } = {},
  ) {
    super(message);
    this.name = "NextHopError";
  }
}

interface Pooled {
  connection: SMTPConnection;
  messages: number;
  idleTimer?: NodeJS.Timeout;
}

export class SmtpNextHop implements NextHop {
  private readonly idle: Pooled[] = [];
  private readonly password: string | undefined;
  private readonly ca: string | undefined;
  private closed = false;
  /** Who this next hop's connections are: server, TLS, trust and login. Equal identities may share a pool. */
  readonly identity: string;
  readonly credentialSha256?: string;

  constructor(
    readonly delivery: SmtpDelivery,
    private readonly options: NextHopOptions,
  ) {
    // Read once per config load: a changed file arrives as a new config.
    this.password = delivery.passwordFile ? readFileSync(delivery.passwordFile, "utf8").trim() : undefined;
    this.ca = delivery.caFile ? readFileSync(delivery.caFile, "utf8") : undefined;
    if (delivery.username && this.password !== undefined) {
      this.credentialSha256 = loginDigest(delivery.username, this.password);
    }
    this.identity = createHash("sha256")
      .update(JSON.stringify([delivery.host, delivery.port, delivery.protocol, delivery.tls, this.ca ?? null, delivery.username ?? null, this.password ?? null]))
      .digest("hex");
  }

  async send(envelope: Envelope, message: Readable, signal?: AbortSignal): Promise<DeliveryResult> {
    const pooled = this.take() ?? (await this.open(signal));
    let info: SMTPConnection.SentMessageInfo;
    try {
      info = await settle<SMTPConnection.SentMessageInfo>(pooled.connection, signal, (done) => pooled.connection.send({ from: envelope.from, to: envelope.to }, message, done));
    } catch (error) {
      // Closing mid-DATA means the next hop never sees the final dot.
      pooled.connection.close();
      throw error;
    }
    pooled.messages++;
    if (info.rejected.length > 0) {
      // Some recipients refused: fail the message so the sender retries, rather than lose them.
      this.release(pooled);
      const first = info.rejectedErrors?.[0];
      throw new NextHopError(first?.response ?? `recipients refused: ${info.rejected.join(", ")}`, first?.responseCode ?? 450, "Reply");
    }
    this.release(pooled);
    return { response: info.response };
  }

  close(): void {
    this.closed = true;
    for (const pooled of this.idle.splice(0)) {
      clearTimeout(pooled.idleTimer);
      pooled.connection.quit();
    }
  }

  private take(): Pooled | undefined {
    for (;;) {
      const pooled = this.idle.pop();
      if (!pooled) return undefined;
      clearTimeout(pooled.idleTimer);
      if (!pooled.connection.destroyed) return pooled;
    }
  }

  private release(pooled: Pooled): void {
    const max = this.options.maxMessagesPerConnection ?? 100;
    if (this.closed || pooled.connection.destroyed || pooled.messages >= max || this.idle.length >= (this.options.maxIdleConnections ?? 20)) {
      pooled.connection.quit();
      return;
    }
    pooled.idleTimer = setTimeout(() => {
      const at = this.idle.indexOf(pooled);
      if (at !== -1) this.idle.splice(at, 1);
      pooled.connection.quit();
    }, this.options.idleCloseMs ?? 5_000);
    pooled.idleTimer.unref();
    this.idle.push(pooled);
  }

  private async open(signal?: AbortSignal): Promise<Pooled> {
    const { delivery, options } = this;
    const connection = new SMTPConnection({
      host: delivery.host,
      port: delivery.port,
      name: options.clientName,
      lmtp: delivery.protocol === "LMTP",
      secure: delivery.tls === "Implicit",
      requireTLS: delivery.tls === "StartTLS",
      ignoreTLS: delivery.tls === "None",
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      socketTimeout: options.timeoutMs,
      socketCloseTimeout: 0,
      // SNI carries names only (RFC 6066); an IP address is still verified against the certificate's IP SANs.
      tls: { minVersion: "TLSv1.2", ...(isIP(delivery.host) ? {} : { servername: delivery.host }), ...(this.ca ? { ca: this.ca } : {}) },
      logger: false,
    });
    // Errors surface through settle(); this keeps a late one from crashing the process.
    connection.on("error", () => undefined);
    try {
      await settle<void>(connection, signal, (done) => connection.connect(() => done(null)));
      if (delivery.username && this.password !== undefined) {
        await settle<boolean | undefined>(connection, signal, (done) => connection.login({ user: delivery.username, pass: this.password }, done));
      }
    } catch (error) {
      connection.close();
      throw error;
    }
    return { connection, messages: 0 };
  }
}

/**
 * Runs one nodemailer call and settles exactly once: on its callback, on an
 * error or end event of the connection (some failures only emit those), or
 * when the caller aborts.
 */
function settle<T>(connection: SMTPConnection, signal: AbortSignal | undefined, call: (done: (error: Error | null, result?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | null, result?: T) => {
      if (settled) return;
      settled = true;
      connection.off("error", onError);
      connection.off("end", onEnd);
      signal?.removeEventListener("abort", onAbort);
      if (error) reject(error instanceof NextHopError ? error : toNextHopError(error));
      else resolve(result as T);
    };
    const onError = (error: Error) => finish(error);
    const onEnd = () => finish(new NextHopError("the next hop closed the connection", undefined, "Connection"));
    const onAbort = () => finish(signal?.reason instanceof Error ? signal.reason : new NextHopError("aborted", undefined, "Message"));
    if (signal?.aborted) return onAbort();
    connection.on("error", onError);
    connection.on("end", onEnd);
    signal?.addEventListener("abort", onAbort, { once: true });
    call(finish);
  });
}

export function toNextHopError(error: unknown): NextHopError {
  if (error instanceof NextHopError) return error;
  const e = error as { message?: string; response?: string; responseCode?: number; code?: string; command?: string };
  const detail = { ...(e.code ? { code: e.code } : {}), ...(e.command ? { command: e.command } : {}) };
  if (typeof e.responseCode === "number" && e.responseCode >= 400) {
    return new NextHopError(e.response ?? e.message ?? "next hop refused", e.responseCode, "Reply", detail);
  }
  if (e.code === "ETIMEDOUT") return new NextHopError(e.message ?? "timed out", undefined, "Timeout", detail);
  if (e.code === "ESTREAM") return new NextHopError(e.message ?? "message stream failed", undefined, "Message", detail);
  return new NextHopError(e.message ?? String(error), undefined, "Connection", detail);
}
