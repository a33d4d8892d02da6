// Why a next hop did not take a message, in names both sides use: the relay
// answers the operator's verification sends with them, and the operator, which
// sends its inbound verification email itself (with nodemailer), classifies
// its own failures the same way. The operator's condition reasons
// (crds/conditions.ts) are these names.

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

/**
 * A stable, machine-readable name for why the customer's server did not take
 * a message — the operator's condition reasons (crds/conditions.ts) use the same names.
 */
export type OutboundFailure =
  | "InvalidCredentials"
  | "ConnectionRefused"
  | "ConnectionTimedOut"
  | "TLSRequired"
  | "CertificateUntrusted"
  | "SenderRejected"
  | "RecipientRejected"
  | "MessageRejected"
  | "Deferred"
  | "ConnectionFailed";

export function classifyFailure(failure: unknown): OutboundFailure {
  // nodemailer's own errors (the operator sends with it too) carry the same facts.
  const error = failure instanceof NextHopError ? failure : toNextHopError(failure);
  const { code, command } = error.detail;
  if (error.kind === "Timeout" || code === "ETIMEDOUT") return "ConnectionTimedOut";
  if (code === "EAUTH" || command?.startsWith("AUTH")) return "InvalidCredentials";
  if (/certificate|self[- ]signed|unable to verify|CERT_|altnames/i.test(error.message)) return "CertificateUntrusted";
  if (code === "ETLS" || /STARTTLS|TLS|SSL/i.test(error.message)) return "TLSRequired";
  if (error.message.includes("ECONNREFUSED")) return "ConnectionRefused";
  if (error.kind === "Reply" && (error.responseCode ?? 0) < 500) return "Deferred";
  if (command?.startsWith("MAIL")) return "SenderRejected";
  if (command?.startsWith("RCPT") || code === "EENVELOPE") return "RecipientRejected";
  if (error.kind === "Reply") return "MessageRejected";
  return "ConnectionFailed";
}
