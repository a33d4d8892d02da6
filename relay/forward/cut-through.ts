// One message from the sender's DATA stream to a next hop, in either
// direction: the sender's bytes go through the message filter into the
// delivery as they arrive, and the result is known only once the next hop
// answered (or failed) and the sender's final dot was read. Every failure
// maps to one SMTP reply.
import type { Readable } from "node:stream";
import type { SMTPServerDataStream } from "smtp-server";
import type { MessageFilter } from "../inbound/message-filter.js";
import type { DeliveryResult } from "./next-hop.js";
import { NextHopError } from "../contract/failures.js";

export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
    this.name = "SmtpReply";
  }
}

export interface CutThrough {
  stream: SMTPServerDataStream;
  filter: MessageFilter;
  /** Budget from the sender's final dot to the next hop's answer. */
  timeoutMs: number;
  /** Hands the filtered message to the next hop; resolves once it accepted. */
  deliver: (message: Readable, signal: AbortSignal) => Promise<DeliveryResult>;
}

/** Resolves with the next hop's answer; rejects with what went wrong (see replyFor). */
export async function cutThrough({ stream, filter, timeoutMs, deliver }: CutThrough): Promise<DeliveryResult> {
  // The filter's errors are the ones we raise to abort it; the reply comes from replyFor().
  filter.on("error", () => undefined);
  const controller = new AbortController();
  const abort = (reason: Error) => {
    if (!filter.destroyed) filter.destroy(reason);
    controller.abort(reason);
    stream.resume();
  };
  const ended = new Promise<void>((resolve) => stream.once("end", () => resolve()));
  const delivery = deliver(filter, controller.signal);
  // A next hop that fails before the end of DATA stops reading the filter:
  // stop feeding it too, and keep draining the sender until the final dot.
  delivery.catch((error: Error) => abort(error));
  stream.on("data", (chunk: Buffer) => {
    if (filter.destroyed) return;
    const more = filter.write(chunk);
    if (filter.rejection) abort(filter.rejection);
    else if (!more) {
      stream.pause();
      filter.once("drain", () => stream.resume());
    }
  });
  let timer: NodeJS.Timeout | undefined;
  stream.once("end", () => {
    if (stream.sizeExceeded) abort(new SmtpReply(552, "5.3.4 Message too big"));
    else if (!filter.destroyed) filter.end();
    timer = setTimeout(() => abort(new NextHopError("next hop did not answer in time", undefined, "Timeout")), timeoutMs);
  });
  try {
    const result = await delivery;
    await ended;
    return result;
  } catch (error) {
    await ended;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The reply for a failed cut-through, and a stable result name for metrics and logs. */
export function replyFor(error: unknown, filter: MessageFilter, stream: SMTPServerDataStream): { result: string; error: SmtpReply } {
  if (stream.sizeExceeded) return { result: "TooBig", error: new SmtpReply(552, "5.3.4 Message too big") };
  if (filter.rejection)
    return { result: filter.rejection.rejection, error: new SmtpReply(filter.rejection.responseCode, filter.rejection.message) };
  if (error instanceof SmtpReply) return { result: "Refused", error };
  if (error instanceof NextHopError) {
    // Our refusal on the next hop's behalf (RFC 6531): its own codes, not "the next hop refused".
    if (error.detail.code === "ESMTPUTF8")
      return { result: "SmtpUtf8Unsupported", error: new SmtpReply(error.responseCode ?? 550, error.message) };
    if (error.kind === "Reply" && error.responseCode !== undefined && error.responseCode >= 500) {
      return {
        result: "NextHopReject",
        error: new SmtpReply(error.responseCode, `5.0.0 Next hop refused the message: ${oneLine(error.message)}`),
      };
    }
    if (error.kind === "Reply" && error.responseCode !== undefined) {
      return {
        result: "NextHopTempFail",
        error: new SmtpReply(error.responseCode, `4.0.0 Next hop deferred the message: ${oneLine(error.message)}`),
      };
    }
    if (error.kind === "Timeout")
      return { result: "NextHopTimeout", error: new SmtpReply(451, "4.4.2 Next hop did not answer in time, try again later") };
    return {
      result: "NextHopUnavailable",
      error: new SmtpReply(451, `4.4.1 Next hop unavailable, try again later (${oneLine(error.message)})`),
    };
  }
  return { result: "InternalError", error: new SmtpReply(451, "4.3.0 Local error, try again later") };
}

export const oneLine = (text: string) => text.replace(/[\r\n]+/g, " ").slice(0, 400);
