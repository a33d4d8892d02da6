// The operator's side of verification on the wire: the inbound email over
// SMTP to the configured MTA, and the relay's control API (bearer token from
// the domain's control Secret) for the outbound send and for receipts.
import type { RelayLockout } from "../domain/lockouts.js";
import { isIP } from "node:net";
import { hostname } from "node:os";
import nodemailer from "nodemailer";
import type { SmtpDomain } from "../../crds/schema.js";
import { classifyFailure } from "../../relay/contract/failures.js";
import type { CredentialUse } from "../../relay/contract/control-api.js";
import { relayPorts } from "../../relay/contract/pod.js";
import { verificationMessage } from "../../relay/contract/verification-message.js";
import { names } from "../domain/render.js";
import { controlRequest, NotSent, type ControlResponse } from "./control-client.js";
import { NotYetServed, type Failure, type OutboundExpectation, type Receipt, type VerificationIO } from "./verification.js";

export interface VerificationSettings {
  /** The helpdesk's system sender of inbound verification emails. */
  sender: string;
  /** Where inbound verification emails are submitted: an MTA that routes the customer's domain to its server. */
  smtp?: { host: string; port: number };
  /** The relay control API of a domain; {name} and {namespace} are filled in. Used when no relay pod is known (see controlEndpoints). */
  controlUrl: string;
  /**
   * Ask every ready relay pod (from the internal Service's EndpointSlices) rather than the Service, which
   * reaches one pod per connection: receipts and last use are each pod's own. Off for an operator outside
   * the cluster, which cannot reach pod addresses. Default on.
   */
  perPod?: boolean;
  /** Name in the Message-ID and EHLO. */
  hostname?: string;
}

export const defaultControlUrl = `https://{name}-relay-internal.{namespace}.svc:${relayPorts.control}`;

/** What the operator knows of a domain's relay: its control token, the fingerprints of the certificate it serves, and its pods. */
export interface RelayIdentity {
  controlToken(domain: SmtpDomain): string | undefined;
  certificatePins(domain: SmtpDomain): string[];
  /** Where each ready relay pod serves its control API; empty when none is known. */
  controlEndpoints?(domain: SmtpDomain): { host: string; port: number }[];
}

type Init = { method?: "GET" | "POST"; headers?: Record<string, string>; body?: string };

export function verificationIO(settings: VerificationSettings, relay: RelayIdentity): VerificationIO {
  const service = (domain: SmtpDomain) =>
    settings.controlUrl.replaceAll("{name}", domain.metadata.name!).replaceAll("{namespace}", domain.metadata.namespace!);
  /** The relay pods' control APIs, or the Service's when no pod is known. */
  const bases = (domain: SmtpDomain): string[] => {
    const pods = settings.perPod === false ? [] : (relay.controlEndpoints?.(domain) ?? []);
    return pods.length > 0 ? pods.map(({ host, port }) => `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`) : [service(domain)];
  };
  const callAt = async (base: string, domain: SmtpDomain, path: string, init: Init = {}): Promise<ControlResponse> => {
    const token = relay.controlToken(domain);
    if (!token) throw new Error(`the relay control Secret ${names(domain).control} is not readable yet`);
    try {
      return await controlRequest(`${base}${path}`, {
        ...init,
        headers: { ...init.headers, authorization: `Bearer ${token}` },
        pins: relay.certificatePins(domain),
      });
    } catch (error) {
      throw new Error(`the relay's control API at ${base} did not answer: ${(error as Error).message}`, { cause: error });
    }
  };
  /**
   * One relay: the first pod that answers. A request is sent to the next pod only if it never reached the
   * one before (a verification send that timed out may have gone out: not sent twice).
   */
  const call = async (domain: SmtpDomain, path: string, init: Init = {}): Promise<ControlResponse> => {
    let failure: Error | undefined;
    for (const base of bases(domain)) {
      try {
        return await callAt(base, domain, path, init);
      } catch (error) {
        failure ??= error instanceof Error ? error : new Error(String(error));
        if (!(error instanceof Error && error.cause instanceof NotSent)) break;
      }
    }
    throw failure ?? new Error("no relay to ask");
  };
  /** Every relay pod, side by side: what each answered, and the first failure if one did not. */
  const callEach = async (domain: SmtpDomain, path: string): Promise<{ answers: ControlResponse[]; failure?: Error }> => {
    const settled = await Promise.allSettled(bases(domain).map((base) => callAt(base, domain, path)));
    const answers = settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    return { answers, ...(failed ? { failure: failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason)) } : {}) };
  };
  const credentialReports = async (domain: SmtpDomain) => {
    const { answers, failure } = await callEach(domain, "/v1/credential-use");
    const ok = answers.filter((r) => r.status === 200);
    if (ok.length === 0) throw failure ?? new Error(`the relay's control API answered ${answers[0]?.status}`);
    const reports = await Promise.all(ok.map(async (r) => ((await r.json()) as { credentials: CredentialUse[] }).credentials));
    return reports.flat();
  };
  return {
    async sendInbound(address: string, token: string): Promise<Failure | undefined> {
      if (!settings.smtp)
        return {
          reason: "ConnectionFailed",
          message: "the operator has no --verification-smtp server to send inbound verification emails through",
        };
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
        await transport.sendMail({
          envelope: { from: settings.sender, to: [address] },
          raw: verificationMessage(settings.hostname ?? hostname(), { from: settings.sender, to: address, token }),
        });
        return undefined;
      } catch (error) {
        return {
          reason: classifyFailure(error),
          message: `sending to ${address} through ${settings.smtp.host}:${settings.smtp.port} failed: ${oneLine(error)}`,
        };
      } finally {
        transport.close();
      }
    },

    async sendOutbound(domain: SmtpDomain, address: string, token: string, expected: OutboundExpectation): Promise<Failure | undefined> {
      const { credentialSha256, server } = expected;
      const response = await call(domain, "/v1/verification-sends", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ domain: domain.spec.domain, from: address, to: address, token, ...(server ? { server } : {}) }),
      });
      const body = (await response.json().catch(() => ({}))) as {
        result?: string;
        message?: string;
        credentialSha256?: string;
        server?: string;
      };
      if ((response.status === 200 || response.status === 502) && credentialSha256 && body.credentialSha256 !== credentialSha256) {
        throw new NotYetServed("the relay still uses the address's previous login; its config is on its way");
      }
      if (response.status === 200) return undefined;
      if (response.status === 422) throw new NotYetServed(body.message ?? "the relay does not serve this address yet");
      if (response.status === 502)
        return {
          reason: (body.result ?? "ConnectionFailed") as Failure["reason"],
          message: `the customer's server: ${body.message ?? ""}`,
        };
      throw new Error(`the relay's control API answered ${response.status}: ${body.message ?? ""}`);
    },

    // The email reached one pod: any pod that has it is the answer. Not found anywhere counts only when
    // every pod answered (the one that did not may hold it).
    async receipt(domain: SmtpDomain, tokenSha256: string): Promise<Receipt | undefined> {
      const { answers, failure } = await callEach(domain, `/v1/verification-receipts/${tokenSha256}`);
      const found = answers.find((r) => r.status === 200);
      if (found) return (await found.json()) as Receipt;
      const odd = answers.find((r) => r.status !== 404);
      if (odd) throw new Error(`the relay's control API answered ${odd.status}`);
      if (failure) throw failure;
      return undefined;
    },

    // Each pod knows the logins it saw: the latest over the pods that answered.
    async credentialUse(domain: SmtpDomain): Promise<Map<number, string>> {
      const latest = new Map<number, string>();
      for (const c of await credentialReports(domain)) {
        if (c.domain !== domain.spec.domain || !c.lastUsedAt) continue;
        const known = latest.get(c.version);
        if (!known || Date.parse(c.lastUsedAt) > Date.parse(known)) latest.set(c.version, c.lastUsedAt);
      }
      return latest;
    },

    async lockouts(domain: SmtpDomain): Promise<RelayLockout[]> {
      const { answers } = await callEach(domain, "/v1/credential-use");
      const bodies = await Promise.all(
        answers.filter((r) => r.status === 200).map(async (r) => ((await r.json()) as { lockouts?: RelayLockout[] }).lockouts ?? []),
      );
      return bodies.flat();
    },

    async lastRevokedRefusal(domain: SmtpDomain): Promise<Date | undefined> {
      const reports = await credentialReports(domain).catch(() => []);
      const times = reports.flatMap((c) => (c.lastRefusedAt ? [Date.parse(c.lastRefusedAt)] : []));
      return times.length > 0 ? new Date(Math.max(...times)) : undefined;
    },
  };
}

const oneLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).replace(/[\r\n]+/g, " ").slice(0, 300);
