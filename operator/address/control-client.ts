// The operator's client for a relay's control API: HTTPS pinned to the
// certificate in the relay's TLS Secret. The TLS handshake is completed and
// the presented certificate compared before a single byte of the request
// (with its bearer token) is written, so an impostor never sees the token.
// Where to reach it: every ready pod of the relay, from its internal
// Service's EndpointSlices (controlEndpoints below).
import http from "node:http";
import tls from "node:tls";
import { isIP } from "node:net";
import type * as k8s from "@kubernetes/client-node";

export interface ControlResponse {
  status: number;
  json(): Promise<unknown>;
}

export interface ControlRequest {
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** SHA-256 fingerprints (as X509Certificate.fingerprint256) the relay may present. */
  pins: readonly string[];
  timeoutMs?: number;
}

/** Failed before a byte of the request was written (connect, TLS handshake, certificate pin): safe to send elsewhere. */
export class NotSent extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NotSent";
  }
}

export async function controlRequest(url: string, request: ControlRequest): Promise<ControlResponse> {
  const target = new URL(url);
  if (target.protocol !== "https:") throw new Error(`the relay control API is HTTPS only, got ${url}`);
  if (request.pins.length === 0) throw new Error("the relay's certificate is not known yet (its TLS Secret is not readable)");
  const host = target.hostname.replace(/^\[|\]$/g, "");
  const port = Number(target.port || 443);
  const timeoutMs = request.timeoutMs ?? 30_000;
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    // Trust is the pin, checked below; the CA chain and names are not what we rely on.
    const s = tls.connect({ host, port, rejectUnauthorized: false, ...(isIP(host) ? {} : { servername: host }) });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    s.once("secureConnect", () => resolve(s));
    s.once("error", (error: Error) => reject(new NotSent(error.message, { cause: error })));
  });
  const presented = socket.getPeerCertificate().fingerprint256;
  if (!request.pins.includes(presented)) {
    socket.destroy();
    throw new NotSent(
      `the relay at ${host}:${port} presented a certificate (SHA-256 ${presented.slice(0, 23)}…) that is not the one in its TLS Secret; not sending the token`,
    );
  }
  return new Promise<ControlResponse>((resolve, reject) => {
    const req = http.request(
      {
        host,
        port,
        path: `${target.pathname}${target.search}`,
        method: request.method ?? "GET",
        headers: { ...request.headers, host: target.host },
        createConnection: () => socket,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          socket.destroy();
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, json: () => Promise.resolve(JSON.parse(text) as unknown) });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(request.body);
  });
}

/**
 * Where each ready pod behind a relay's internal Service serves its control
 * API, from the Service's EndpointSlices. Empty when none is known (no slices
 * yet, or no ready pod): the caller then uses the Service's address.
 */
export function controlEndpoints(
  slices: readonly k8s.V1EndpointSlice[],
  namespace: string,
  service: string,
): { host: string; port: number }[] {
  const found = new Map<string, { host: string; port: number }>();
  for (const slice of slices) {
    if (slice.metadata?.namespace !== namespace || slice.metadata.labels?.["kubernetes.io/service-name"] !== service) continue;
    const port = slice.ports?.find((p) => p.name === "control")?.port;
    if (!port) continue;
    for (const endpoint of slice.endpoints ?? []) {
      // Ready unset means ready (the API's convention); a terminating pod is not asked.
      if (endpoint.conditions?.ready === false || endpoint.conditions?.terminating === true) continue;
      for (const host of endpoint.addresses) found.set(`${host}:${port}`, { host, port });
    }
  }
  return [...found.values()];
}
