// Sends one outbound message along its route: straight through when the
// domain has no DKIM key, through the signing spool when it has.
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { DeliveryResult, Envelope } from "../forward/next-hop.js";
import { NextHopError, toNextHopError } from "../forward/next-hop.js";
import { signatures } from "./dkim.js";
import type { SenderRoute } from "./route.js";
import { SigningSpool } from "./spool.js";

/** Bodies up to this size are signed in memory; larger ones spool to a temporary file. */
export const spoolMemoryBytes = 1024 * 1024;

export async function sendOutbound(route: Extract<SenderRoute, { ok: true }>, envelope: Envelope, message: Readable, signal: AbortSignal): Promise<DeliveryResult> {
  if (route.dkim.length === 0) return route.nextHop.send(envelope, message, signal);
  const spool = new SigningSpool({ memoryBytes: spoolMemoryBytes });
  try {
    await pipeline(message, spool, { signal });
    const prefix = signatures(route.dkim, spool.fields(), spool.bodyHash.digest());
    return await route.nextHop.send(envelope, spool.replay(prefix), signal);
  } finally {
    await spool.dispose();
  }
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
