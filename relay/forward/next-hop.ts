// What the inbound side needs from a next hop, whatever it speaks.
import type { Readable } from "node:stream";

export interface Envelope {
  from: string;
  to: string[];
  /** The sender gave MAIL the SMTPUTF8 parameter (RFC 6531): the message may carry UTF-8 header fields. */
  smtpUtf8?: boolean;
  /** Facts about the message for next hops that carry metadata (the webhook). */
  metadata?: Record<string, string | number>;
}

export interface DeliveryResult {
  response: string;
}

export interface NextHop {
  /** SHA-256 of the login this next hop uses ("username\0password"), when it logs in. */
  readonly credentialSha256?: string;
  /** Delivers the message; resolves only once the next hop accepted it. */
  send(envelope: Envelope, message: Readable, signal?: AbortSignal): Promise<DeliveryResult>;
  /** Closes idle connections; in-flight deliveries finish. */
  close(): void;
}

/** A next-hop failure: its SMTP reply when it gave one, or a transport error. */
export class NextHopError extends Error {
  constructor(
    message: string,
    readonly responseCode: number | undefined,
    readonly kind: "Reply" | "Connection" | "Timeout" | "Message",
    /** What failed: an error code in nodemailer's names (EAUTH, ETLS, ECONNECTION, ETIMEDOUT, EENVELOPE, …) and the SMTP command. */
    readonly detail: { code?: string; command?: string } = {},
  ) {
    super(message);
    this.name = "NextHopError";
  }
}

/** A NextHopError from whatever failed, nodemailer's errors included (the operator sends with it). */
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
