// Sends one outbound message along its route: straight through when the
// domain has no DKIM key, through the signing spool when it has.
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { DeliveryResult, Envelope } from "../forward/next-hop.js";
import { signatures } from "./dkim.js";
import type { SenderRoute } from "./route.js";
import { SigningSpool, type SpoolBudget } from "./spool.js";

/** Bodies up to this size are signed in memory; larger ones spool to a temporary file. */
export const spoolMemoryBytes = 1024 * 1024;

export async function sendOutbound(
  route: Extract<SenderRoute, { ok: true }>,
  envelope: Envelope,
  message: Readable,
  signal: AbortSignal,
  budget?: SpoolBudget,
): Promise<DeliveryResult> {
  if (route.dkim.length === 0) return route.nextHop.send(envelope, message, signal);
  const spool = new SigningSpool({ memoryBytes: spoolMemoryBytes, ...(budget ? { budget } : {}) });
  try {
    await pipeline(message, spool, { signal });
    const prefix = signatures(route.dkim, spool.fields(), spool.bodyHash.digest());
    return await route.nextHop.send(envelope, spool.replay(prefix), signal);
  } finally {
    await spool.dispose();
  }
}
