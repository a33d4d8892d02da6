// How the operator reaches the API server: a kubeconfig file (outside a
// cluster) or its ServiceAccount (inside). A small client of our own rather
// than @kubernetes/client-node at runtime: loading that library alone costs
// about 80 MB of resident memory (all of its generated models), more than
// everything the operator keeps. Its types are still used, as types only.
import { existsSync, readFileSync } from "node:fs";
import https from "node:https";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
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

/**
 * From kubeconfig files (the flag's one file, else every file of $KUBECONFIG, else ~/.kube/config) and a
 * context (the flag, else their current-context), or else the pod's ServiceAccount.
 */
export function clusterAccess(kubeconfig?: string, context?: string): ClusterAccess {
  const home = join(homedir(), ".kube", "config");
  // As kubectl: files of $KUBECONFIG that do not exist are skipped; the flag's file must exist.
  const files = kubeconfig ? [kubeconfig] : process.env.KUBECONFIG ? process.env.KUBECONFIG.split(delimiter).filter((f) => f && existsSync(f)) : existsSync(home) ? [home] : [];
  if (files.length > 0) return fromKubeconfig(files, context);
  if (process.env.KUBECONFIG) throw new Error(`none of the files in KUBECONFIG exists: ${process.env.KUBECONFIG}`);
  if (context) throw new Error(`--context ${context} needs a kubeconfig (--kubeconfig or KUBECONFIG)`);
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

interface KubeconfigFile {
  "current-context"?: string;
  contexts?: Named<{ cluster: string; user: string }>[];
  clusters?: Named<Record<string, string | boolean>>[];
  users?: Named<Record<string, unknown>>[];
}

/** An entry of a kubeconfig and the file it came from (its relative paths are relative to that file). */
interface Sourced<T> {
  value: T;
  file: string;
}

/**
 * Several kubeconfig files read as kubectl reads them: for each cluster, user and context name the
 * first file that defines it wins, and so does the first current-context.
 */
function mergeKubeconfigs(files: string[]) {
  const merged = {
    currentContext: undefined as string | undefined,
    contexts: new Map<string, Sourced<{ cluster: string; user: string }>>(),
    clusters: new Map<string, Sourced<Record<string, string | boolean>>>(),
    users: new Map<string, Sourced<Record<string, unknown>>>(),
  };
  for (const file of files) {
    const doc = (parse(readFileSync(file, "utf8")) ?? {}) as KubeconfigFile;
    merged.currentContext ??= doc["current-context"] || undefined;
    const add = <T>(map: Map<string, Sourced<T>>, entries: Named<T>[] | undefined, field: "context" | "cluster" | "user") => {
      for (const entry of entries ?? []) {
        const value = entry[field];
        if (value && !map.has(entry.name)) map.set(entry.name, { value, file });
      }
    };
    add(merged.contexts, doc.contexts, "context");
    add(merged.clusters, doc.clusters, "cluster");
    add(merged.users, doc.users, "user");
  }
  return merged;
}

function fromKubeconfig(files: string[], contextName?: string): ClusterAccess {
  const merged = mergeKubeconfigs(files);
  const problem = (what: string) => new Error(`kubeconfig ${files.join(delimiter)}: ${what}`);
  const name = contextName ?? merged.currentContext;
  if (contextName && !merged.contexts.has(contextName)) throw problem(`no context named ${contextName} (there are: ${[...merged.contexts.keys()].join(", ") || "none"})`);
  const context = (name ? merged.contexts.get(name) : undefined)?.value ?? [...merged.contexts.values()][0]?.value;
  if (!context) throw problem("no current context");
  const cluster = merged.clusters.get(context.cluster);
  const user = merged.users.get(context.user) ?? { value: {}, file: files[0]! };
  if (!cluster || typeof cluster.value.server !== "string") throw problem(`no server for cluster ${context.cluster}`);
  const at = (file: string, path: string) => (isAbsolute(path) ? path : resolve(dirname(file), path));
  const material = (entry: Sourced<Record<string, unknown>>, dataKey: string, pathKey: string): Buffer | undefined => {
    const data = entry.value[dataKey];
    const path = entry.value[pathKey];
    return typeof data === "string" ? Buffer.from(data, "base64") : typeof path === "string" ? readFileSync(at(entry.file, path)) : undefined;
  };
  if (user.value.exec || user.value["auth-provider"]) throw problem("exec and auth-provider credentials are not supported; use a client certificate or a token");
  const ca = material(cluster, "certificate-authority-data", "certificate-authority");
  const cert = material(user, "client-certificate-data", "client-certificate");
  const key = material(user, "client-key-data", "client-key");
  const token = typeof user.value.token === "string" ? user.value.token : undefined;
  const tokenFile = typeof user.value.tokenFile === "string" ? at(user.file, user.value.tokenFile) : undefined;
  return {
    server: new URL(cluster.value.server),
    agent: new https.Agent({
      keepAlive: true,
      ...(ca ? { ca } : {}),
      ...(cert && key ? { cert, key } : {}),
      rejectUnauthorized: cluster.value["insecure-skip-tls-verify"] !== true,
    }),
    token: () => token ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined),
  };
}

/**
 * An API path on the server, keeping the server URL's own path: behind a proxy such as Rancher's
 * (https://rancher.example.com/k8s/clusters/c-m-abc) the API is under that path, not at the host's root.
 */
export function apiUrl(server: URL, path: string): URL {
  return new URL(`${server.pathname.replace(/\/+$/, "")}${path}`, server);
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
  const url = apiUrl(access.server, path);
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
  const url = apiUrl(access.server, path);
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
