// Credentials a kubeconfig user gets from somewhere else than the file itself, as client-go gets
// them: an exec plugin (client.authentication.k8s.io ExecCredential: EKS, GKE, AKS, kubelogin,
// Teleport, Vault...) and the one legacy auth-provider still in client-go, oidc. The operator is
// never interactive, runs for weeks and must not log a secret: so a plugin runs with no terminal,
// under a deadline, its credential is kept until it expires or the server refuses it, and what it
// writes to standard error reaches the log only with anything credential-shaped blanked.
import { spawn } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { dirname, isAbsolute, resolve, sep } from "node:path";
import type { Logger } from "../../lib/log.js";

/** What a request authenticates with: a bearer token, a client certificate (PEM), or both. */
export interface Credential {
  token?: string;
  cert?: string;
  key?: string;
  /** Epoch milliseconds after which the credential is not used again; none: until a 401. */
  expiresAt?: number;
}

/** A credential that can be fetched again: an exec plugin's, or a fixed one. */
export interface CredentialSource {
  /** The credential for the next request (the plugin runs when there is none, or it expired). */
  get(): Promise<Credential>;
  /**
   * The server answered 401 to a request made with `used`: it is not handed out again. Whether a
   * retry can help, i.e. the next get() may bring another credential.
   */
  rejected(used: Credential): boolean;
}

const execApiVersions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"] as const;
type ExecApiVersion = (typeof execApiVersions)[number];
const interactiveModes = ["Never", "IfAvailable", "Always"] as const;

/** A kubeconfig user's `exec`, validated. */
export interface ExecConfig {
  apiVersion: ExecApiVersion;
  /** As written in the kubeconfig (the name the errors use). */
  command: string;
  /** What is run: absolute, or relative to the kubeconfig's directory if it has a slash, else looked up on PATH. */
  path: string;
  args: string[];
  env: { name: string; value: string }[];
  installHint?: string;
  provideClusterInfo: boolean;
}

/** The cluster as the plugin is told of it (KUBERNETES_EXEC_INFO, with provideClusterInfo). */
export interface ExecClusterInfo {
  server: string;
  "tls-server-name"?: string;
  "proxy-url"?: string;
  "insecure-skip-tls-verify"?: boolean;
  /** Base64, as Go encodes []byte in JSON. */
  "certificate-authority-data"?: string;
  "disable-compression"?: boolean;
  config?: unknown;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Validates a user's `exec` entry from the kubeconfig `file` (`where` names the user in errors), as
 * client-go does: v1 must say its interactiveMode, v1beta1 defaults to IfAvailable; Always is refused
 * because the operator never has a terminal to give the plugin.
 */
export function parseExecConfig(raw: unknown, file: string, where: string): ExecConfig {
  const bad = (what: string) => new Error(`${where}: exec: ${what}`);
  if (!isRecord(raw)) throw bad("must be a mapping");
  const { apiVersion, command, args, env, installHint, provideClusterInfo, interactiveMode } = raw;
  if (typeof apiVersion !== "string" || !(execApiVersions as readonly string[]).includes(apiVersion)) {
    throw bad(
      `apiVersion ${JSON.stringify(apiVersion ?? null)} is not supported (use ${execApiVersions.join(" or ")}; v1alpha1 was removed in Kubernetes 1.24)`,
    );
  }
  if (typeof command !== "string" || command === "") throw bad("command is required");
  if (args != null && !(Array.isArray(args) && args.every((a) => typeof a === "string"))) throw bad("args must be a list of strings");
  if (
    env != null &&
    !(Array.isArray(env) && env.every((e) => isRecord(e) && typeof e.name === "string" && e.name !== "" && typeof e.value === "string"))
  ) {
    throw bad("env must be a list of {name, value} strings");
  }
  if (installHint != null && typeof installHint !== "string") throw bad("installHint must be a string");
  if (provideClusterInfo != null && typeof provideClusterInfo !== "boolean") throw bad("provideClusterInfo must be true or false");
  const mode = interactiveMode ?? (apiVersion === "client.authentication.k8s.io/v1beta1" ? "IfAvailable" : undefined);
  if (mode === undefined) throw bad(`interactiveMode is required with ${apiVersion} (Never or IfAvailable)`);
  if (typeof mode !== "string" || !(interactiveModes as readonly string[]).includes(mode))
    throw bad(`interactiveMode ${JSON.stringify(mode)} is not one of ${interactiveModes.join(", ")}`);
  if (mode === "Always")
    throw bad(
      `interactiveMode Always: ${command} needs a terminal, and the operator never has one; give the plugin credentials it can use without asking (a service account, a cached login), with interactiveMode Never or IfAvailable`,
    );
  return {
    apiVersion: apiVersion as ExecApiVersion,
    command,
    // As client-go's loader: a command with a path separator is relative to its kubeconfig's directory.
    path: isAbsolute(command) || !command.includes(sep) ? command : resolve(dirname(file), command),
    args: args ?? [],
    env: (env as { name: string; value: string }[] | null | undefined) ?? [],
    ...(typeof installHint === "string" && installHint.trim() ? { installHint: installHint.trim() } : {}),
    provideClusterInfo: provideClusterInfo === true,
  };
}

export interface ExecOptions {
  /** Told to the plugin when it asks for it (provideClusterInfo). */
  cluster: ExecClusterInfo;
  log?: Logger;
  /** How long one run may take before it is killed. */
  timeoutMs?: number;
  /** The clock that judges expirationTimestamp (tests move it). */
  now?: () => number;
}

export const defaultExecTimeoutMs = 30_000;
/** More than any credential needs: a plugin that writes more is broken, not slow. */
const maxOutput = 1 << 20;

/**
 * Runs the plugin when a credential is needed and there is none, or it expired; a credential the
 * server refused (401) is dropped, so the next request runs the plugin again. Concurrent requests
 * share one run.
 */
export function execCredentialSource(config: ExecConfig, options: ExecOptions): CredentialSource {
  const now = options.now ?? Date.now;
  let current: Credential | undefined;
  let running: Promise<Credential> | undefined;
  return {
    get() {
      if (current && (current.expiresAt === undefined || now() < current.expiresAt)) return Promise.resolve(current);
      running ??= runExecPlugin(config, options).then(
        (credential) => {
          running = undefined;
          current = credential;
          return credential;
        },
        (error: unknown) => {
          running = undefined;
          throw error;
        },
      );
      return running;
    },
    rejected(used) {
      if (current === used) current = undefined;
      return true;
    },
  };
}

/** A credential that never changes (a static token or an oidc id-token): a 401 is final. */
export function fixedCredentialSource(credential: Credential | (() => Credential)): CredentialSource {
  return {
    // A throw in the executor (an expired id-token) rejects the promise.
    get: () => new Promise((done) => done(typeof credential === "function" ? credential() : credential)),
    rejected: () => false,
  };
}

function pluginProblem(config: ExecConfig, what: string): Error {
  return new Error(`exec plugin ${config.command}: ${what}${config.installHint ? `\n${config.installHint}` : ""}`);
}

async function runExecPlugin(config: ExecConfig, options: ExecOptions): Promise<Credential> {
  const timeoutMs = options.timeoutMs ?? defaultExecTimeoutMs;
  const execInfo = {
    apiVersion: config.apiVersion,
    kind: "ExecCredential",
    spec: { interactive: false, ...(config.provideClusterInfo ? { cluster: options.cluster } : {}) },
  };
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const { name, value } of config.env) env[name] = value;
  env.KUBERNETES_EXEC_INFO = JSON.stringify(execInfo);
  const { code, signal, stdout, stderr, timedOut, spawnError } = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
    timedOut: boolean;
    spawnError?: NodeJS.ErrnoException;
  }>((done) => {
    // No standard input: the plugin must not wait for a person (interactive is false in its exec info).
    const child = spawn(config.path, config.args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let timedOut = false;
    let spawnError: NodeJS.ErrnoException | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      if (out.length > maxOutput) child.kill("SIGKILL");
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      if (err.length < maxOutput) err += chunk;
    });
    child.on("error", (error: NodeJS.ErrnoException) => (spawnError = error));
    child.on("close", (exitCode, exitSignal) => {
      clearTimeout(timer);
      done({ code: exitCode, signal: exitSignal, stdout: out, stderr: err, timedOut, ...(spawnError ? { spawnError } : {}) });
    });
  });
  const ran = !spawnError && !timedOut && code === 0 && stdout.length <= maxOutput;
  let credential: Credential | Error | undefined;
  if (ran) {
    try {
      credential = execCredential(config, JSON.parse(stdout) as unknown);
    } catch (error) {
      // Not the parser's message: it quotes the output, which may be a bare token.
      credential =
        error instanceof SyntaxError
          ? pluginProblem(config, `its output (${stdout.length} bytes) is not JSON; an ExecCredential object is expected`)
          : (error as Error);
    }
  }
  if (stderr.trim()) {
    const known = credential && !(credential instanceof Error) ? [credential.token, credential.key, credential.cert] : [];
    options.log?.warn("exec plugin wrote to standard error", { plugin: config.command, stderr: redact(stderr, known) });
  }
  if (spawnError?.code === "ENOENT")
    throw pluginProblem(config, `not found (${config.path === config.command ? "looked up on PATH" : config.path})`);
  if (spawnError) throw pluginProblem(config, `cannot be run: ${spawnError.message}`);
  if (timedOut) throw pluginProblem(config, `gave no credential within ${timeoutMs / 1000} s and was stopped`);
  if (stdout.length > maxOutput) throw pluginProblem(config, `wrote more than ${maxOutput} bytes and was stopped`);
  if (code !== 0)
    throw pluginProblem(
      config,
      `${signal ? `was killed by ${signal}` : `exited with code ${code}`}${stderr.trim() ? " (its standard error is in the log)" : ""}`,
    );
  if (!credential || credential instanceof Error) throw credential ?? pluginProblem(config, "gave no credential");
  return credential;
}

/** The plugin's ExecCredential, checked as client-go checks it (and the certificate against its key). */
export function execCredential(config: ExecConfig, output: unknown): Credential {
  const bad = (what: string) => pluginProblem(config, `its ExecCredential ${what}`);
  if (!isRecord(output)) throw bad("is not a JSON object");
  if (output.kind !== "ExecCredential") throw bad(`has kind ${JSON.stringify(output.kind ?? null)}, not ExecCredential`);
  if (output.apiVersion !== config.apiVersion)
    throw bad(`has apiVersion ${JSON.stringify(output.apiVersion ?? null)}, but the kubeconfig asks for ${config.apiVersion}`);
  const status = output.status;
  if (!isRecord(status)) throw bad("has no status");
  const { token, clientCertificateData: cert, clientKeyData: key, expirationTimestamp } = status;
  for (const [name, value] of Object.entries({ token, clientCertificateData: cert, clientKeyData: key, expirationTimestamp })) {
    if (value != null && typeof value !== "string") throw bad(`status.${name} is not a string`);
  }
  const has = (value: unknown): value is string => typeof value === "string" && value !== "";
  if (has(cert) !== has(key)) throw bad("has only one of clientCertificateData and clientKeyData; both or neither");
  if (!has(token) && !has(cert)) throw bad("has neither a token nor clientCertificateData and clientKeyData");
  let expiresAt: number | undefined;
  if (has(expirationTimestamp)) {
    expiresAt = Date.parse(expirationTimestamp);
    if (!/^\d{4}-\d\d-\d\dT/.test(expirationTimestamp) || !Number.isFinite(expiresAt))
      throw bad(`status.expirationTimestamp ${JSON.stringify(expirationTimestamp)} is not an RFC 3339 time`);
  }
  if (has(cert) && has(key)) {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(cert);
    } catch {
      throw bad("status.clientCertificateData is not a PEM certificate");
    }
    let privateKey: ReturnType<typeof createPrivateKey>;
    try {
      privateKey = createPrivateKey(key);
    } catch {
      throw bad("status.clientKeyData is not a PEM private key");
    }
    if (!certificate.checkPrivateKey(privateKey)) throw bad("status.clientKeyData is not the key of status.clientCertificateData");
  }
  return {
    ...(has(token) ? { token } : {}),
    ...(has(cert) && has(key) ? { cert, key } : {}),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
  };
}

/**
 * A plugin's standard error made fit for a log line: what it returned, PEM blocks, JWTs and long
 * token-like strings blanked, cut to 2,000 characters. Plugins print diagnostics there, and
 * sometimes, when they fail, the response of the identity provider they called.
 */
export function redact(text: string, known: (string | undefined)[] = []): string {
  let out = text;
  for (const secret of known) if (secret) out = out.split(secret.trim()).join("[redacted]");
  out = out
    .replace(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g, "[redacted PEM]")
    .replace(/eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*)?/g, "[redacted JWT]")
    // 24 or more characters of a token's alphabet with a digit and a letter: an access key, a session token.
    .replace(/[A-Za-z0-9+/_=.~-]{24,}/g, (word) => (/\d/.test(word) && /[A-Za-z]/.test(word) ? "[redacted]" : word));
  return out.length > 2000 ? `${out.slice(0, 2000)}…` : out.trimEnd();
}

/**
 * A user's legacy `auth-provider`. Only oidc still exists in client-go: its id-token is the bearer
 * token until it expires. The operator does not refresh it with the refresh-token (that needs the
 * identity provider and writes the new tokens back into the user's kubeconfig); an expired id-token
 * is an error that says so. gcp and azure were removed in Kubernetes 1.26 in favour of exec plugins.
 */
export function authProviderSource(raw: unknown, where: string, now: () => number = Date.now): CredentialSource {
  const bad = (what: string) => new Error(`${where}: auth-provider ${what}`);
  if (!isRecord(raw) || typeof raw.name !== "string") throw bad("must have a name");
  const removed: Record<string, string> = {
    gcp: "use the exec plugin gke-gcloud-auth-plugin instead (gcloud components install gke-gcloud-auth-plugin; `gcloud container clusters get-credentials` then writes the exec entry)",
    azure: "use the exec plugin kubelogin instead (https://azure.github.io/kubelogin/; `kubelogin convert-kubeconfig` rewrites the entry)",
  };
  if (removed[raw.name]) throw bad(`${raw.name} was removed from Kubernetes in 1.26: ${removed[raw.name]}`);
  if (raw.name !== "oidc") throw bad(`${raw.name} is not supported (only oidc is); use an exec plugin`);
  const config = isRecord(raw.config) ? raw.config : {};
  const idToken = config["id-token"];
  const hint =
    "log in again (e.g. kubectl oidc-login), or use an exec plugin such as kubelogin (`kubectl oidc-login get-token`), which the operator runs whenever the token expires";
  if (typeof idToken !== "string" || idToken === "") throw bad(`oidc has no id-token; ${hint}`);
  const expiresAt = jwtExpiry(idToken);
  if (expiresAt === null) throw bad("oidc id-token is not a JWT");
  return fixedCredentialSource(() => {
    // As client-go: the token is used until it expires; the refresh-token is not used.
    if (expiresAt !== undefined && now() >= expiresAt)
      throw bad(`oidc id-token expired at ${new Date(expiresAt).toISOString()}, and the operator does not refresh it; ${hint}`);
    return { token: idToken, ...(expiresAt !== undefined ? { expiresAt } : {}) };
  });
}

/** A JWT's `exp` in epoch milliseconds; undefined when it has none, null when it is not a JWT. */
function jwtExpiry(token: string): number | undefined | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as unknown;
    if (!isRecord(claims)) return null;
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return null;
  }
}
