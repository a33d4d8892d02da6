// The relay's control API, called by the operator over the cluster network
// (the relay itself has no Kubernetes access). Bearer-token authenticated
// (digest in the config, constant-time comparison); every body validated.
//
//   POST /v1/verification-sends  send a verification email through exactly the
//                                outbound path of a support address
//   GET  /v1/credential-use      last successful AUTH (and last refusal) per inbound credential version,
//                                and the brute-force lockouts in force (source, kind, credential version)
//   GET  /v1/verification-receipts/<sha256 of token>
//                                whether a verification token came back through
//                                the authenticated relay, with which domain and version
import { timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { Readable } from "node:stream";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { Logger } from "../../lib/log.js";
import type { RelayReports } from "./reports.js";
import type { Metrics } from "./metrics.js";
import type { RelayState } from "../state.js";
import { parseMailbox } from "../inbound/address.js";
import { routeSender } from "../outbound/route.js";
import { classifyFailure, NextHopError } from "../contract/failures.js";
import { sendOutbound } from "../outbound/send.js";
import { verificationMessage } from "../contract/verification-message.js";
import { controlTokenDigest } from "../contract/digests.js";

const maxBodyBytes = 16 * 1024;

export const VerificationSend = Type.Object(
  {
    domain: Type.String({ minLength: 1, maxLength: 253, pattern: "^[a-z0-9.-]+$" }),
    from: Type.String({ minLength: 3, maxLength: 254 }),
    to: Type.String({ minLength: 3, maxLength: 254 }),
    token: Type.String({ pattern: "^[A-Za-z0-9_-]{16,128}$" }),
    // Printable ASCII only: nothing in it can start a new header line.
    subject: Type.Optional(Type.String({ maxLength: 200, pattern: "^[\\x20-\\x7e]*$" })),
    // The server the operator expects the address to send through (`serverEndpoint`): another one means this
    // relay's config is older than the address, and nothing is sent.
    server: Type.Optional(Type.String({ maxLength: 300, pattern: "^[a-z0-9.-]+:[0-9]{1,5}/(StartTLS|Implicit)$" })),
  },
  { additionalProperties: false },
);
export type VerificationSend = Static<typeof VerificationSend>;

export interface ControlSource {
  state(): RelayState;
  reports: RelayReports;
  metrics: Metrics;
  log: Logger;
}

/**
 * The control API's request handler. The relay serves it over HTTPS only, with
 * its own certificate, which the operator pins (the token never crosses the
 * network in clear).
 */
export function controlHandler(source: ControlSource): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const reply = (status: number, body: object) =>
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body) + "\n");
    const tokenSha256 = source.state().config.listeners.control?.tokenSha256;
    if (!tokenSha256 || !authorized(req.headers.authorization, tokenSha256)) {
      reply(401, { result: "Unauthorized", message: "a valid bearer token is required" });
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    const receipt = /^\/v1\/verification-receipts\/([0-9a-f]{64})$/.exec(path ?? "");
    if (path === "/v1/credential-use" && req.method === "GET") {
      reply(200, { credentials: source.reports.credentialUse(), lockouts: source.reports.activeLockouts() });
    } else if (receipt && req.method === "GET") {
      const found = source.reports.receipt(receipt[1]!);
      if (found) reply(200, found);
      else reply(404, { result: "NotArrived", message: "no verification token with this digest came back through this relay" });
    } else if (path === "/v1/verification-sends" && req.method === "POST") {
      readJson(req).then(
        (body) => verificationSend(source, body).then(({ status, body }) => reply(status, body)),
        (error: Error) => reply(400, { result: "InvalidRequest", message: error.message }),
      );
    } else if (path === "/v1/credential-use" || path === "/v1/verification-sends") {
      reply(405, { result: "MethodNotAllowed", message: `${req.method ?? ""} is not allowed on ${path}` });
    } else {
      reply(404, { result: "NotFound", message: `no endpoint ${path}` });
    }
  };
}

/** Which server and login the send used (the login as a digest): the operator checks they are the ones it expects, not ones from before a reload. */
const login = (hop: { credentialSha256?: string; server?: string }) => ({
  ...(hop.credentialSha256 ? { credentialSha256: hop.credentialSha256 } : {}),
  ...(hop.server ? { server: hop.server } : {}),
});

function authorized(header: string | undefined, tokenSha256: string): boolean {
  const presented = /^Bearer (\S+)$/.exec(header ?? "")?.[1] ?? "";
  const digest = Buffer.from(controlTokenDigest(presented), "hex");
  return timingSafeEqual(digest, Buffer.from(tokenSha256, "hex"));
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!(req.headers["content-type"] ?? "").startsWith("application/json")) {
      req.resume();
      return reject(new Error("content-type must be application/json"));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) {
        req.destroy();
        reject(new Error(`body larger than ${maxBodyBytes} bytes`));
      } else chunks.push(chunk);
    });
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        reject(new Error("body is not valid JSON"));
      }
    });
    req.on("error", reject);
  });
}

async function verificationSend(source: ControlSource, body: unknown): Promise<{ status: number; body: object }> {
  const problems = [...Value.Errors(VerificationSend, body)].map((e) => `${e.path || "/"}: ${e.message}`);
  if (problems.length > 0) return { status: 400, body: { result: "InvalidRequest", message: problems.slice(0, 5).join("; ") } };
  const request = body as VerificationSend;
  const state = source.state();
  const route = routeSender(state, request.domain, request.from, "Verification");
  if (!route.ok) return { status: 422, body: { result: route.reason, message: route.message } };
  // A verification proves the address's own path; the default transport proves nothing.
  if (route.transport !== "SupportAddress") {
    return {
      status: 422,
      body: { result: "SenderNotReady", message: `${route.sender} has no outbound server configured on this relay yet` },
    };
  }
  if (request.server !== undefined && route.nextHop.server !== request.server) {
    return {
      status: 422,
      body: {
        result: "ServerNotConfigured",
        message: `this relay sends as ${route.sender} through ${route.nextHop.server ?? "another server"}, not ${request.server}; its config is on its way`,
      },
    };
  }
  const to = parseMailbox(request.to);
  if (!to.ok) return { status: 400, body: { result: "InvalidRequest", message: `/to: not an address we send to (${to.problem})` } };
  const message = verificationMessage(state.config.hostname, { ...request, from: route.sender });
  const started = process.hrtime.bigint();
  try {
    const result = await sendOutbound(
      route,
      { from: route.sender, to: [request.to] },
      Readable.from([message]),
      AbortSignal.timeout(state.nextHopTimeoutMs),
      state.spool,
    );
    source.metrics.outbound.inc({ sender: route.sender, result: "Delivered" });
    source.metrics.outboundSeconds.observe({ sender: route.sender }, Number(process.hrtime.bigint() - started) / 1e9);
    source.log.info("verification email sent", { domain: request.domain, sender: route.sender, server: result.response });
    return { status: 200, body: { result: "Delivered", response: result.response, ...login(route.nextHop) } };
  } catch (error) {
    const failure = classifyFailure(error);
    source.metrics.outbound.inc({ sender: route.sender, result: failure });
    const code = error instanceof NextHopError ? error.responseCode : undefined;
    const text = error instanceof Error ? error.message.replace(/[\r\n]+/g, " ").slice(0, 400) : String(error);
    source.log.warn("verification email not sent", { domain: request.domain, sender: route.sender, result: failure, reply: text });
    return { status: 502, body: { result: failure, ...(code ? { responseCode: code } : {}), message: text, ...login(route.nextHop) } };
  }
}
