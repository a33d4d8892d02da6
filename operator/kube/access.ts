// How the operator reaches the API server: a kubeconfig file (outside a
// cluster) or its ServiceAccount (inside). A small client of our own rather
// than @kubernetes/client-node at runtime: loading that library, even its
// KubeConfig alone, costs about 73 MB of resident memory (all of its generated
// models; 52 MB more than this loader, ADR 0004), more than everything the
// operator keeps. Its types are still used, as types only. Exec plugins and
// the oidc auth-provider: credentials.ts; proxies (proxy-url, HTTPS_PROXY): proxy.ts.
import { existsSync, readFileSync } from "node:fs";
import https from "node:https";
import type { Socket } from "node:net";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { parse } from "yaml";
import type { Logger } from "../../lib/log.js";
import {
  authProviderSource,
  execCredentialSource,
  fixedCredentialSource,
  parseExecConfig,
  type Credential,
  type CredentialSource,
  type ExecClusterInfo,
} from "./credentials.js";
import { parseProxy, proxyFromEnvironment, TunnelAgent, type Proxy } from "./proxy.js";

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly request: string,
    readonly body: string,
    /** The response's Retry-After header as sent (a 429's, a 503's), unparsed. */
    readonly retryAfter?: string,
  ) {
    super(`${request}: HTTP ${code}: ${body.slice(0, 300)}`);
    this.name = "ApiError";
  }
}

/** What one request carries: the TLS agent (CA, client certificate) and the bearer token. */
export interface RequestCredentials {
  agent: https.Agent;
  token?: string;
  /** Where they came from, handed back with a 401. */
  credential: Credential;
}

export interface ClusterAccess {
  server: URL;
  /** The proxy requests go through, as it may be logged (no credentials), and where it was configured. */
  proxy?: string;
  /** Sent with every request: the kubeconfig user's impersonation (Impersonate-User, -Group, -Uid, -Extra-*). */
  headers?: Record<string, string | string[]>;
  /** For the next request: an exec plugin runs here when it has no credential, or it expired. */
  credentials(): Promise<RequestCredentials>;
  /**
   * The server answered 401 to a request made with `used`: they are not used again, and whether
   * one retry may succeed (an exec plugin can give another credential; a fixed token cannot).
   */
  unauthorized(used: RequestCredentials): boolean;
}

export interface AccessOptions {
  /** Where an exec plugin's standard error goes. */
  log?: Logger;
  /** How long an exec plugin may run. */
  execTimeoutMs?: number;
  /** The clock that judges when a credential expires (tests move it). */
  now?: () => number;
}

/**
 * Credentials from `source` over TLS with `tls`: one keep-alive agent per client certificate. When a
 * plugin hands out a new certificate, the old agent's idle connections close, so no request goes on
 * authenticating with the old one.
 */
function accessWith(
  server: URL,
  tls: https.AgentOptions,
  source: CredentialSource,
  proxy?: Proxy,
  headers?: Record<string, string | string[]>,
): ClusterAccess {
  let agent: { cert: string | undefined; key: string | undefined; value: https.Agent } | undefined;
  const agentFor = ({ cert, key }: Credential): https.Agent => {
    if (agent && agent.cert === cert && agent.key === key) return agent.value;
    if (agent) retire(agent.value);
    const options: https.AgentOptions = { keepAlive: true, ...tls, ...(cert && key ? { cert, key } : {}) };
    const ca = Buffer.isBuffer(tls.ca) ? tls.ca : undefined;
    agent = { cert, key, value: proxy ? new TunnelAgent(proxy, options, ca ? { ca } : {}) : new https.Agent(options) };
    return agent.value;
  };
  return {
    server,
    ...(proxy ? { proxy: `${proxy.display} (${proxy.source})` } : {}),
    ...(headers && Object.keys(headers).length > 0 ? { headers } : {}),
    async credentials() {
      const credential = await source.get();
      return { agent: agentFor(credential), ...(credential.token ? { token: credential.token } : {}), credential };
    },
    unauthorized: (used) => source.rejected(used.credential),
  };
}

/** Idle connections close now, busy ones when their request is done. */
function retire(agent: https.Agent): void {
  agent.on("free", (socket: Socket) => {
    socket.destroy();
  });
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * From kubeconfig files (the flag's one file, else every file of $KUBECONFIG, else ~/.kube/config) and a
 * context (the flag, else their current-context), or else the pod's ServiceAccount.
 */
export function clusterAccess(kubeconfig?: string, context?: string, options: AccessOptions = {}): ClusterAccess {
  const home = join(homedir(), ".kube", "config");
  // As kubectl: files of $KUBECONFIG that do not exist are skipped; the flag's file must exist.
  const files = kubeconfig
    ? [kubeconfig]
    : process.env.KUBECONFIG
      ? process.env.KUBECONFIG.split(delimiter).filter((f) => f && existsSync(f))
      : existsSync(home)
        ? [home]
        : [];
  if (files.length > 0) return fromKubeconfig(files, context, options);
  if (process.env.KUBECONFIG) throw new Error(`none of the files in KUBECONFIG exists: ${process.env.KUBECONFIG}`);
  if (context) throw new Error(`--context ${context} needs a kubeconfig (--kubeconfig or KUBECONFIG)`);
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("no --kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST is not set)");
  const tokenFile = `${serviceAccountDir}/token`;
  const server = new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`);
  return accessWith(
    server,
    { ca: readFileSync(`${serviceAccountDir}/ca.crt`) },
    // Projected tokens rotate: read the file each time (it is small and cached by the OS).
    fixedCredentialSource(() => ({ token: readFileSync(tokenFile, "utf8").trim() })),
    // As client-go in a pod: a cluster-wide HTTPS_PROXY applies unless NO_PROXY names the API server.
    proxyFromEnvironment(server),
  );
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
  clusters?: Named<Record<string, unknown>>[];
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
    clusters: new Map<string, Sourced<Record<string, unknown>>>(),
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

function fromKubeconfig(files: string[], contextName: string | undefined, options: AccessOptions): ClusterAccess {
  const merged = mergeKubeconfigs(files);
  const problem = (what: string) => new Error(`kubeconfig ${files.join(delimiter)}: ${what}`);
  const name = contextName ?? merged.currentContext;
  if (contextName && !merged.contexts.has(contextName))
    throw problem(`no context named ${contextName} (there are: ${[...merged.contexts.keys()].join(", ") || "none"})`);
  const context = (name ? merged.contexts.get(name) : undefined)?.value ?? [...merged.contexts.values()][0]?.value;
  if (!context) throw problem("no current context");
  const cluster = merged.clusters.get(context.cluster);
  const user = merged.users.get(context.user) ?? { value: {}, file: files[0]! };
  if (!cluster || typeof cluster.value.server !== "string") throw problem(`no server for cluster ${context.cluster}`);
  const at = (file: string, path: string) => (isAbsolute(path) ? path : resolve(dirname(file), path));
  const material = (entry: Sourced<Record<string, unknown>>, dataKey: string, pathKey: string): Buffer | undefined => {
    const data = entry.value[dataKey];
    const path = entry.value[pathKey];
    return typeof data === "string"
      ? Buffer.from(data, "base64")
      : typeof path === "string"
        ? readFileSync(at(entry.file, path))
        : undefined;
  };
  const ca = material(cluster, "certificate-authority-data", "certificate-authority");
  const cert = material(user, "client-certificate-data", "client-certificate");
  const key = material(user, "client-key-data", "client-key");
  const token = typeof user.value.token === "string" ? user.value.token : undefined;
  const tokenFile = typeof user.value.tokenFile === "string" ? at(user.file, user.value.tokenFile) : undefined;
  const clusterWhere = `kubeconfig ${cluster.file}: cluster ${context.cluster}`;
  let server: URL;
  try {
    server = new URL(cluster.value.server);
  } catch {
    throw new Error(`${clusterWhere}: server ${cluster.value.server} is not a URL`);
  }
  // kubectl would send the token in clear over http://; client-node allows it only with insecure-skip-tls-verify.
  if (server.protocol !== "https:")
    throw new Error(`${clusterWhere}: server ${server.origin} is not https://; the operator talks to the API server over TLS only`);
  const rawProxy = cluster.value["proxy-url"];
  if (rawProxy !== undefined && (typeof rawProxy !== "string" || rawProxy === ""))
    throw new Error(`${clusterWhere}: proxy-url must be a URL such as http://proxy.example.com:3128`);
  // As client-go: proxy-url wins, else HTTPS_PROXY unless NO_PROXY (or loopback) exempts the server.
  const proxy = rawProxy ? parseProxy(rawProxy, `${clusterWhere}: proxy-url`, true) : proxyFromEnvironment(server);
  const insecure = cluster.value["insecure-skip-tls-verify"] === true;
  // As client-go, which refuses the pair: a CA that would not be used is a mistake in the kubeconfig.
  if (insecure && ca)
    throw new Error(
      `${clusterWhere}: insecure-skip-tls-verify with a certificate-authority; remove one (the CA is what makes the connection safe)`,
    );
  if (insecure)
    options.log?.warn(
      `${clusterWhere}: insecure-skip-tls-verify: the API server's certificate is not checked, so anyone on the path to ${server.host} can read the operator's credentials and act as it; give the cluster's certificate-authority instead`,
    );
  const tlsServerName = cluster.value["tls-server-name"];
  if (tlsServerName !== undefined && (typeof tlsServerName !== "string" || tlsServerName === ""))
    throw new Error(`${clusterWhere}: tls-server-name must be a host name`);
  const tls: https.AgentOptions = {
    ...(ca ? { ca } : {}),
    ...(tlsServerName ? { servername: tlsServerName } : {}),
    rejectUnauthorized: !insecure,
  };
  const where = `kubeconfig ${user.file}: user ${context.user}`;
  const { exec, "auth-provider": authProvider } = user.value;
  if (exec && authProvider) throw new Error(`${where}: has both exec and auth-provider; keep one`);
  if (user.value.username !== undefined || user.value.password !== undefined)
    throw new Error(
      `${where}: basic auth (username/password) was removed from the API server in Kubernetes 1.19; use a token, a client certificate or an exec plugin`,
    );
  // kubectl's key is tokenFile; client-node 1.4 reads token-file, which kubectl ignores: with it alone the
  // operator would go anonymous.
  if (user.value["token-file"] !== undefined && tokenFile === undefined)
    throw new Error(`${where}: token-file is not a kubeconfig field (client-node's spelling); kubectl's is tokenFile`);
  const headers = impersonation(user.value, where);
  // As client-go: credentials written in the file win over a plugin (kubectl --token with an exec user).
  const fixed = Boolean(token || tokenFile || (cert && key));
  if (exec && !fixed) {
    return accessWith(
      server,
      tls,
      execCredentialSource(parseExecConfig(exec, user.file, where), {
        cluster: execClusterInfo(cluster.value, ca),
        ...(options.log ? { log: options.log } : {}),
        ...(options.execTimeoutMs ? { timeoutMs: options.execTimeoutMs } : {}),
        ...(options.now ? { now: options.now } : {}),
      }),
      proxy,
      headers,
    );
  }
  if (authProvider && !fixed) return accessWith(server, tls, authProviderSource(authProvider, where, options.now), proxy, headers);
  return accessWith(
    server,
    tls,
    fixedCredentialSource(() => ({
      ...(cert && key ? { cert: cert.toString("utf8"), key: key.toString("utf8") } : {}),
      ...((token ?? tokenFile) ? { token: token ?? readFileSync(tokenFile!, "utf8").trim() } : {}),
    })),
    proxy,
    headers,
  );
}

/**
 * The user entry's `as`, `as-uid`, `as-groups` and `as-user-extra` as client-go sends them. Applied, not
 * ignored: a kubeconfig that says "act as X" must not leave the operator acting with the (usually wider)
 * rights of the user who may impersonate.
 */
function impersonation(user: Record<string, unknown>, where: string): Record<string, string | string[]> {
  const { as, "as-uid": uid, "as-groups": groups, "as-user-extra": extra } = user;
  const headers: Record<string, string | string[]> = {};
  const isText = (value: unknown): value is string => typeof value === "string" && value !== "";
  const isTexts = (value: unknown): value is string[] => Array.isArray(value) && value.every(isText);
  if (as !== undefined) {
    if (!isText(as)) throw new Error(`${where}: as must be a user name`);
    headers["impersonate-user"] = as;
  }
  if (uid !== undefined) {
    if (!isText(uid)) throw new Error(`${where}: as-uid must be a string`);
    headers["impersonate-uid"] = uid;
  }
  if (groups !== undefined) {
    if (!isTexts(groups)) throw new Error(`${where}: as-groups must be a list of group names`);
    if (groups.length > 0) headers["impersonate-group"] = groups;
  }
  if (extra !== undefined) {
    const entries = typeof extra === "object" && extra !== null && !Array.isArray(extra) ? Object.entries(extra) : undefined;
    if (!entries || !entries.every(([, values]) => isTexts(values)))
      throw new Error(`${where}: as-user-extra must map keys to lists of strings`);
    // The key goes into a header name: percent-encoded as client-go does (and the API server decodes).
    for (const [key, values] of entries)
      headers[`impersonate-extra-${encodeURIComponent(key).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`] =
        values as string[];
  }
  // The API server refuses groups, a uid or extras without a user to impersonate; say so at start.
  if (Object.keys(headers).length > 0 && !headers["impersonate-user"])
    throw new Error(`${where}: as-groups, as-uid and as-user-extra need as (the user to impersonate)`);
  return headers;
}

/** The cluster as client-go describes it to an exec plugin (clientauthentication Cluster). */
function execClusterInfo(cluster: Record<string, unknown>, ca: Buffer | undefined): ExecClusterInfo {
  const text = (key: string) => (typeof cluster[key] === "string" && cluster[key] !== "" ? { [key]: cluster[key] } : {});
  const flag = (key: string) => (cluster[key] === true ? { [key]: true } : {});
  const extension = Array.isArray(cluster.extensions)
    ? (cluster.extensions as unknown[]).find(
        (e): e is { extension: unknown } =>
          typeof e === "object" && e !== null && (e as { name?: unknown }).name === "client.authentication.k8s.io/exec",
      )
    : undefined;
  return {
    server: String(cluster.server),
    ...text("tls-server-name"),
    ...text("proxy-url"),
    ...flag("insecure-skip-tls-verify"),
    ...(ca ? { "certificate-authority-data": ca.toString("base64") } : {}),
    ...flag("disable-compression"),
    ...(extension?.extension !== undefined ? { config: extension.extension } : {}),
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
  /** Retry-After, when the server sent one (flow control's 429, an admission webhook's). */
  retryAfter?: string;
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

/**
 * One request; the body is JSON (or an apply patch for PATCH). A 401 is tried once more with new
 * credentials when there can be any (an exec plugin's expired or revoked credential): the server
 * refused before doing anything, so the retry cannot do the request twice.
 */
export async function request(
  access: ClusterAccess,
  method: string,
  path: string,
  payload?: string,
  timeoutMs = 30_000,
  accept = acceptJson,
): Promise<RawResponse> {
  const used = await access.credentials();
  const response = await send(access, used, method, path, payload, timeoutMs, accept);
  if (response.status !== 401 || !access.unauthorized(used)) return response;
  return send(access, await access.credentials(), method, path, payload, timeoutMs, accept);
}

function send(
  access: ClusterAccess,
  { agent, token }: RequestCredentials,
  method: string,
  path: string,
  payload: string | undefined,
  timeoutMs: number,
  accept: string,
): Promise<RawResponse> {
  const url = apiUrl(access.server, path);
  counted(method);
  return new Promise((resolvePromise, reject) => {
    const req = https.request(
      url,
      {
        method,
        agent,
        headers: {
          ...access.headers,
          accept,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload !== undefined
            ? {
                "content-type": method === "PATCH" ? "application/apply-patch+yaml" : "application/json",
                "content-length": Buffer.byteLength(payload),
              }
            : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        const retryAfter = res.headers["retry-after"];
        res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body: text, ...(retryAfter ? { retryAfter } : {}) }));
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url.pathname} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** A watch stream: one JSON event per line, until the server or `signal` ends it. A 401 is tried once more as in request(). */
export async function watchStream(
  access: ClusterAccess,
  path: string,
  onEvent: (event: { type: string; object: unknown }) => void,
  signal: AbortSignal,
  accept = acceptJson,
): Promise<void> {
  const used = await access.credentials();
  try {
    await watchOnce(access, used, path, onEvent, signal, accept);
  } catch (error) {
    // A 401 comes before any event, so nothing was reported twice.
    if (!(error instanceof ApiError && error.code === 401 && access.unauthorized(used))) throw error;
    await watchOnce(access, await access.credentials(), path, onEvent, signal, accept);
  }
}

function watchOnce(
  access: ClusterAccess,
  { agent, token }: RequestCredentials,
  path: string,
  onEvent: (event: { type: string; object: unknown }) => void,
  signal: AbortSignal,
  accept: string,
): Promise<void> {
  const url = apiUrl(access.server, path);
  counted("WATCH");
  return new Promise((resolvePromise, reject) => {
    const req = https.request(
      url,
      { method: "GET", agent, signal, headers: { ...access.headers, accept, ...(token ? { authorization: `Bearer ${token}` } : {}) } },
      (res) => {
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
      },
    );
    req.on("error", (error) => (signal.aborted ? resolvePromise() : reject(error)));
    req.end();
  });
}
