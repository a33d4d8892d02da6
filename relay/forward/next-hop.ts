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
  /** The server it sends to (`serverEndpoint`), for the control API's verification sends. */
  readonly server?: string;
  /** Delivers the message; resolves only once the next hop accepted it. */
  send(envelope: Envelope, message: Readable, signal?: AbortSignal): Promise<DeliveryResult>;
  /** Closes idle connections; in-flight deliveries finish. */
  close(): void;
}
