// Delivery to the helpdesk's HTTPS webhook: the raw message as the body
// (message/rfc822), JSON metadata in a header, and an HMAC-SHA256 signature
// over timestamp, metadata and body, so the receiver can check both origin
// and integrity and refuse replays. The message is buffered (the filter
// bounds it by maxMessageBytes) because the signature covers all of it.
import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import type { Readable } from "node:stream";
import type { WebhookDelivery } from "../contract/config.js";
import type { DeliveryResult, Envelope, NextHop } from "./next-hop.js";
import { NextHopError } from "../contract/failures.js";

export const signatureHeader = "x-smtpconnector-signature";
export const timestampHeader = "x-smtpconnector-timestamp";
export const metadataHeader = "x-smtpconnector-metadata";

/** The string the HMAC covers; receivers compute the same to verify. */
export function signedPayload(timestamp: string, metadata: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${timestamp}.${metadata}.`), Buffer.from(createHash("sha256").update(body).digest("hex"))]);
}

export class WebhookNextHop implements NextHop {
  private readonly key: Buffer;
  private readonly ca: string | undefined;

  constructor(
    readonly delivery: WebhookDelivery,
    private readonly timeoutMs: number,
  ) {
    this.key = readFileSync(delivery.hmacKeyFile);
    this.ca = delivery.caFile ? readFileSync(delivery.caFile, "utf8") : undefined;
  }

  async send(envelope: Envelope, message: Readable, signal?: AbortSignal): Promise<DeliveryResult> {
    const body = await collect(message, signal);
    const metadata = Buffer.from(JSON.stringify({ mailFrom: envelope.from, rcptTo: envelope.to, ...envelope.metadata })).toString(
      "base64url",
    );
    const timestamp = String(Math.floor(Date.now() / 1000));
    const signature = createHmac("sha256", this.key)
      .update(signedPayload(timestamp, metadata, body))
      .digest("hex");
    const { status, text } = await post(
      this.delivery.url,
      body,
      {
        "content-type": "message/rfc822",
        [metadataHeader]: metadata,
        [timestampHeader]: timestamp,
        [signatureHeader]: `v1=${signature}`,
      },
      { timeoutMs: this.timeoutMs, ...(this.ca ? { ca: this.ca } : {}), ...(signal ? { signal } : {}) },
    );
    if (status >= 200 && status < 300) return { response: `webhook ${status}` };
    const reason = `webhook answered HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
    // 4xx but 408/429 is the receiver saying no for good; the rest may pass on a retry.
    const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
    throw new NextHopError(reason, permanent ? 554 : 451, "Reply");
  }

  close(): void {
    /* no pooled state beyond the HTTPS agent's */
  }
}

function collect(stream: Readable, signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("error", (e) => reject(new NextHopError(e.message, undefined, "Message")));
    stream.once("close", () => {
      if (!stream.readableEnded) reject(new NextHopError("message aborted", undefined, "Message"));
    });
    signal?.addEventListener(
      "abort",
      () => reject(signal.reason instanceof Error ? signal.reason : new NextHopError("aborted", undefined, "Message")),
      { once: true },
    );
  });
}

function post(
  url: string,
  body: Buffer,
  headers: Record<string, string>,
  options: { timeoutMs: number; ca?: string; signal?: AbortSignal },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-length": String(body.length) },
        timeout: options.timeoutMs,
        minVersion: "TLSv1.2",
        ...(options.ca ? { ca: options.ca } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          if (text.length < 1024) text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: text.replace(/[\r\n]+/g, " ").trim() }));
      },
    );
    req.on("timeout", () => req.destroy(new NextHopError("webhook did not answer in time", undefined, "Timeout")));
    req.on("error", (e) =>
      reject(e instanceof NextHopError ? e : new NextHopError(`webhook unreachable: ${e.message}`, undefined, "Connection")),
    );
    req.end(body);
  });
}
