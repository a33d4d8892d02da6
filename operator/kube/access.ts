// How the operator reaches the API server: a kubeconfig file (outside a
// cluster) or its ServiceAccount (inside). A small client of our own rather
// than @kubernetes/client-node at runtime: loading that library alone costs
// about 80 MB of resident memory (all of its generated models), more than
// everything the operator keeps. Its types are still used, as types only.
import { existsSync, readFileSync } from "node:fs";
import https from "node:https";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { parse } from "yaml";

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly request: string,
    readonly body: string,
  ) {
    super(`${request}: HTTP ${code}: ${body.slice(0, 300)}`);
    this.name = "ApiError";
  }
}

export interface ClusterAccess {
  server: URL;
  agent: https.Agent;
  /** The bearer token, when the credentials are one (read again as it rotates). */
  token(): string | undefined;
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

/** From a kubeconfig file (the flag, then $KUBECONFIG, then ~/.kube/config), or else the pod's ServiceAccount. */
export function clusterAccess(kubeconfig?: string): ClusterAccess {
  const file = kubeconfig ?? process.env.KUBECONFIG?.split(":")[0] ?? (existsSync(join(homedir(), ".kube", "config")) ? join(homedir(), ".kube", "config") : undefined);
  if (file) return fromKubeconfig(file);
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("no --kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST is not set)");
  const tokenFile = `${serviceAccountDir}/token`;
  return {
    server: new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`),
    agent: new https.Agent({ keepAlive: true, ca: readFileSync(`${serviceAccountDir}/ca.crt`) }),
    // Projected tokens rotate: read the file each time (it is small and cached by the OS).
    token: () => readFileSync(tokenFile, "utf8").trim(),
  };
}

interface Named<T> {
  name: string;
  [key: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

function fromKubeconfig(file: string): ClusterAccess {
  const doc = parse(readFileSync(file, "utf8")) as {
    "current-context"?: string;
    contexts?: Named<{ cluster: string; user: string }>[];
    clusters?: Named<Record<string, string | boolean>>[];
    users?: Named<Record<string, unknown>>[];
  };
  const problem = (what: string) => new Error(`kubeconfig ${file}: ${what}`);
  const context = doc.contexts?.find((c) => c.name === doc["current-context"])?.context ?? doc.contexts?.[0]?.context;
  if (!context) throw problem("no current context");
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  if (!cluster || typeof cluster.server !== "string") throw problem(`no server for cluster ${context.cluster}`);
  const at = (path: string) => (isAbsolute(path) ? path : resolve(dirname(file), path));
  const material = (data: unknown, path: unknown): Buffer | undefined =>
    typeof data === "string" ? Buffer.from(data, "base64") : typeof path === "string" ? readFileSync(at(path)) : undefined;
  if (user.exec || user["auth-provider"]) throw problem("exec and auth-provider credentials are not supported; use a client certificate or a token");
  const ca = material(cluster["certificate-authority-data"], cluster["certificate-authority"]);
  const cert = material(user["client-certificate-data"], user["client-certificate"]);
  const key = material(user["client-key-data"], user["client-key"]);
  const token = typeof user.token === "string" ? user.token : undefined;
  const tokenFile = typeof user.tokenFile === "string" ? at(user.tokenFile) : undefined;
  return {
    server: new URL(cluster.server),
    agent: new https.Agent({
      keepAlive: true,
      ...(ca ? { ca } : {}),
      ...(cert && key ? { cert, key } : {}),
      rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true,
    }),
    token: () => token ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined),
  };
}

export interface RawResponse {
  status: number;
  body: string;
}

/**
 * Requests made since start (watches included), by verb: the metrics, and the benchmark's
 * requests-per-second at steady state.
 */
export const apiRequests = new Map<string, number>();
const counted = (method: string) => apiRequests.set(method, (apiRequests.get(method) ?? 0) + 1);

/** What a list or a watch asks to be answered with: whole objects, or their metadata only (PartialObjectMetadata). */
export const acceptJson = "application/json";
// No fallback to whole objects: an API server without metadata lists (before 1.15) would
// otherwise send every Secret in full, the very thing the metadata watch is there to avoid.
export const acceptMetadataList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
export const acceptMetadataWatch = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/** One request; the body is JSON (or an apply patch for PATCH). */
export function request(access: ClusterAccess, method: string, path: string, payload?: string, timeoutMs = 30_000, accept = acceptJson): Promise<RawResponse> {
  const url = new URL(path, access.server);
  const token = access.token();
  counted(method);
  return new Promise((resolvePromise, reject) => {
    const req = https.request(
      url,
      {
        method,
        agent: access.agent,
        headers: {
          accept,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload !== undefined ? { "content-type": method === "PATCH" ? "application/apply-patch+yaml" : "application/json", "content-length": Buffer.byteLength(payload) } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url.pathname} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** A watch stream: one JSON event per line, until the server or `signal` ends it. */
export function watchStream(access: ClusterAccess, path: string, onEvent: (event: { type: string; object: unknown }) => void, signal: AbortSignal, accept = acceptJson): Promise<void> {
  const url = new URL(path, access.server);
  const token = access.token();
  counted("WATCH");
  return new Promise((resolvePromise, reject) => {
    const req = https.request(url, { method: "GET", agent: access.agent, signal, headers: { accept, ...(token ? { authorization: `Bearer ${token}` } : {}) } }, (res) => {
      if ((res.statusCode ?? 0) >= 300) {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => reject(new ApiError(res.statusCode ?? 0, `WATCH ${url.pathname}`, text)));
        return;
      }
      let buffer = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffer += chunk;
        for (let newline = buffer.indexOf("\n"); newline !== -1; newline = buffer.indexOf("\n")) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line) onEvent(JSON.parse(line) as { type: string; object: unknown });
        }
      });
      res.on("end", () => resolvePromise());
      res.on("error", reject);
    });
    req.on("error", (error) => (signal.aborted ? resolvePromise() : reject(error)));
    req.end();
  });
}
