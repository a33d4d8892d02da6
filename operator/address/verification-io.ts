// The operator's side of verification on the wire: the inbound email over
// SMTP to the configured MTA, and the relay's control API (bearer token from
// the domain's control Secret) for the outbound send and for receipts.
import { hostname } from "node:os";
import nodemailer from "nodemailer";
import type { SmtpDomain } from "../../crds/schema.js";
import { classifyFailure } from "../../relay/outbound/send.js";
import { verificationMessage } from "../../relay/outbound/verification-message.js";
import { names } from "../domain/render.js";
import { controlRequest, type ControlResponse } from "./control-client.js";
import { NotYetServed, type Failure, type Receipt, type VerificationIO } from "./verification.js";

export interface VerificationSettings {
  /** The helpdesk's system sender of inbound verification emails. */
  sender: string;
  /** Where inbound verification emails are submitted: an MTA that routes the customer's domain to its server. */
  smtp?: { host: string; port: number };
  /** The relay control API of a domain; {name} and {namespace} are filled in. */
  controlUrl: string;
  /** Name in the Message-ID and EHLO. */
  hostname?: string;
}

export const defaultControlUrl = "https://{name}-relay-internal.{namespace}.svc:8443";

/** What the operator knows of a domain's relay: its control token, and the fingerprints of the certificate it serves. */
export interface RelayIdentity {
  controlToken(domain: SmtpDomain): string | undefined;
  certificatePins(domain: SmtpDomain): string[];
}

export function verificationIO(settings: VerificationSettings, relay: RelayIdentity): VerificationIO {
  const base = (domain: SmtpDomain) => settings.controlUrl.replaceAll("{name}", domain.metadata.name!).replaceAll("{namespace}", domain.metadata.namespace!);
  const call = async (domain: SmtpDomain, path: string, init: { method?: "GET" | "POST"; headers?: Record<string, string>; body?: string } = {}): Promise<ControlResponse> => {
    const token = relay.controlToken(domain);
    if (!token) throw new Error(`the relay control Secret ${names(domain).control} is not readable yet`);
    try {
      return await controlRequest(`${base(domain)}${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` }, pins: relay.certificatePins(domain) });
    } catch (error) {
      throw new Error(`the relay's control API at ${base(domain)} did not answer: ${(error as Error).message}`);
    }
  };
  return {
    async sendInbound(address: string, token: string): Promise<Failure | undefined> {
      if (!settings.smtp) return { reason: "ConnectionFailed", message: "the operator has no --verification-smtp server to send inbound verification emails through" };
      const transport = nodemailer.createTransport({
        host: settings.smtp.host,
        port: settings.smtp.port,
        secure: false,
        // Server to server: TLS when offered, as MTAs do.
        tls: { rejectUnauthorized: false },
        name: settings.hostname ?? hostname(),
        connectionTimeout: 15_000,
        greetingTimeout: 15_000,
        socketTimeout: 30_000,
      });
      try {
        await transport.sendMail({ envelope: { from: settings.sender, to: [address] }, raw: verificationMessage(settings.hostname ?? hostname(), { from: settings.sender, to: address, token }) });
        return undefined;
      } catch (error) {
        return { reason: classifyFailure(error), message: `sending to ${address} through ${settings.smtp.host}:${settings.smtp.port} failed: ${oneLine(error)}` };
      } finally {
        transport.close();
      }
    },

    async sendOutbound(domain: SmtpDomain, address: string, token: string, credentialSha256: string | undefined): Promise<Failure | undefined> {
      const response = await call(domain, "/v1/verification-sends", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ domain: domain.spec.domain, from: address, to: address, token }),
      });
      const body = (await response.json().catch(() => ({}))) as { result?: string; message?: string; credentialSha256?: string };
      if ((response.status === 200 || response.status === 502) && credentialSha256 && body.credentialSha256 !== credentialSha256) {
        throw new NotYetServed("the relay still uses the address's previous login; its config is on its way");
      }
      if (response.status === 200) return undefined;
      if (response.status === 422) throw new NotYetServed(body.message ?? "the relay does not serve this address yet");
      if (response.status === 502) return { reason: (body.result ?? "ConnectionFailed") as Failure["reason"], message: `the customer's server: ${body.message ?? ""}` };
      throw new Error(`the relay's control API answered ${response.status}: ${body.message ?? ""}`);
    },

    async receipt(domain: SmtpDomain, tokenSha256: string): Promise<Receipt | undefined> {
      const response = await call(domain, `/v1/verification-receipts/${tokenSha256}`);
      if (response.status === 404) return undefined;
      if (response.status !== 200) throw new Error(`the relay's control API answered ${response.status}`);
      return (await response.json()) as Receipt;
    },

    async credentialUse(domain: SmtpDomain): Promise<Map<number, string>> {
      const response = await call(domain, "/v1/credential-use");
      if (response.status !== 200) throw new Error(`the relay's control API answered ${response.status}`);
      const { credentials } = (await response.json()) as { credentials: { domain: string; version: number; lastUsedAt?: string }[] };
      return new Map(credentials.filter((c) => c.domain === domain.spec.domain && c.lastUsedAt).map((c) => [c.version, c.lastUsedAt!]));
    },

    async lastRevokedRefusal(domain: SmtpDomain): Promise<Date | undefined> {
      const response = await call(domain, "/v1/credential-use");
      if (response.status !== 200) return undefined;
      const { credentials } = (await response.json()) as { credentials: { lastRefusedAt?: string }[] };
      const times = credentials.flatMap((c) => (c.lastRefusedAt ? [Date.parse(c.lastRefusedAt)] : []));
      return times.length > 0 ? new Date(Math.max(...times)) : undefined;
    },
  };
}

const oneLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).replace(/[\r\n]+/g, " ").slice(0, 300);
