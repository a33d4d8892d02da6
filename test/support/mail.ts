// Real mail peers for the relay tests: Postfix's smtp-sink as the next hop
// (with its fault modes), swaks as the scriptable client, and certificates
// made by openssl.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { alphanumeric } from "../../operator/domain/credentials.js";
import { configVersion, type RelayConfig } from "../../relay/contract/config.js";

const execFileAsync = promisify(execFile);

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `smtpc-${prefix}-`));
  chmodSync(dir, 0o755);
  return dir;
}

// Ports handed out by this process: the kernel may offer a just-closed port
// again, and a config that names the same port twice cannot start.
const handedOut = new Set<number>();

/** A port free now on 127.0.0.1, never one this process handed out before. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/** A self-signed certificate for 127.0.0.1, the given name and any others. */
export async function selfSignedCertificate(
  dir: string,
  name = "relay.test",
  others: string[] = [],
  ips: string[] = [],
): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, `${name.replace(/^\*/, "star")}.crt`);
  const keyFile = join(dir, `${name.replace(/^\*/, "star")}.key`);
  await execFileAsync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    `subjectAltName=${[name, ...others].map((n) => `DNS:${n}`).join(",")},${["127.0.0.1", ...ips].map((ip) => `IP:${ip}`).join(",")}`,
  ]);
  return { certFile, keyFile };
}

/**
 * A kubernetes.io/tls Secret manifest holding a fresh self-signed certificate
 * (the relay's, in tests), valid for every relay host name the test operator
 * gives in this namespace (<domain>.<namespace>.relay.test in-process, .relay.smtp-connector.local by the command).
 */
export async function tlsSecretManifest(
  namespace: string,
  name = "relay-tls",
  names: string[] = [`*.${namespace}.relay.test`, `*.${namespace}.relay.smtp-connector.local`],
) {
  const cert = await selfSignedCertificate(tempDir("tls"), "relay.test", names);
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace },
    type: "kubernetes.io/tls",
    data: { "tls.crt": readFileSync(cert.certFile).toString("base64"), "tls.key": readFileSync(cert.keyFile).toString("base64") },
  };
}

export interface SinkMessage {
  file: string;
  mailFrom: string;
  rcptTo: string[];
  /** SMTP, ESMTP or LMTP, as smtp-sink saw the client speak. */
  protocol: string;
  /** Headers and body as received (smtp-sink writes lines ending in LF). */
  content: string;
}

export interface SmtpSink {
  port: number;
  dir: string;
  messages(): SinkMessage[];
  stop(): Promise<void>;
}

/**
 * Starts Postfix's smtp-sink on 127.0.0.1 (or `host`: an address on lo that pods reach), dumping each accepted message to a
 * file. Options are smtp-sink's own fault switches, e.g. ["-r", "."] to
 * soft-reject every message, ["-f", "RCPT"], ["-q", "DATA"], ["-w", "3"].
 */
export async function startSmtpSink(options: string[] = [], { lmtp = false, host = "127.0.0.1" } = {}): Promise<SmtpSink> {
  const port = await freePort();
  const dir = tempDir("sink");
  const dumps = join(dir, "dumps");
  mkdirSync(dumps, { mode: 0o777 });
  chmodSync(dumps, 0o777);
  const args = ["-u", "nobody", "-c", "-d", `${dumps}/%H%M%S.`, ...(lmtp ? ["-L"] : []), ...options, `${host}:${port}`, "256"];
  const child = spawn("smtp-sink", args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  await waitForPort(port, child, () => stderr, host);
  return {
    port,
    dir,
    messages: () => readSinkMessages(dumps, child.pid),
    stop: () => stopChild(child).then(() => rmSync(dir, { recursive: true, force: true })),
  };
}

/**
 * The dumps of completed transactions, oldest first. smtp-sink creates a dump
 * at MAIL FROM, writes it through a buffer, closes it on the final dot (before
 * its 250) and unlinks it then closes it on RSET, EHLO or a dropped
 * connection. So a dump it still holds open is in flight: the open descriptors
 * are read after the listing, and a name that vanished in between was an
 * aborted transaction.
 */
function readSinkMessages(dir: string, pid: number | undefined): SinkMessage[] {
  const names = readdirSync(dir);
  const inFlight = openFiles(pid);
  const dumps: { file: string; mtimeMs: number; text: string }[] = [];
  for (const name of names) {
    const file = join(dir, name);
    if (inFlight.has(file)) continue;
    const dump = readIfPresent(file);
    // Not open is not enough: an aborted transaction's dump can be seen between smtp-sink's close and its unlink
    // (CI saw one during 300 MAIL/RCPT/RSET rounds). smtp-sink writes its Received header when DATA starts, so a
    // dump without it never had a message.
    if (dump && sinkReceived.test(dump.text)) dumps.push({ file, ...dump });
  }
  return dumps.sort((a, b) => a.mtimeMs - b.mtimeMs || a.file.localeCompare(b.file)).map(({ file, text }) => parseSinkDump(file, text));
}

/** The paths a process holds open (empty once it has exited). */
function openFiles(pid: number | undefined): Set<string> {
  const open = new Set<string>();
  if (pid === undefined) return open;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return open;
  }
  for (const fd of fds) {
    try {
      open.add(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed between the listing and the read: not open any more
    }
  }
  return open;
}

function readIfPresent(file: string): { mtimeMs: number; text: string } | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const stat = fstatSync(fd);
    return stat.isFile() ? { mtimeMs: stat.mtimeMs, text: readFileSync(fd, "latin1") } : undefined;
  } finally {
    closeSync(fd);
  }
}

/** smtp-sink's own Received header, which ends its metadata block; only the first one is its. */
const sinkReceived = /\nReceived: from .*\n\tby .*\n\t.*\n/;

function parseSinkDump(file: string, text: string): SinkMessage {
  const own = sinkReceived.exec(text);
  const meta = own ? text.slice(0, own.index) : text;
  const lines = meta.split("\n");
  const arg = (prefix: string) => lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length).trim());
  return {
    file,
    mailFrom: arg("X-Mail-Args:")[0] ?? "",
    protocol: arg("X-Client-Proto:")[0] ?? "",
    rcptTo: arg("X-Rcpt-Args:"),
    content: own ? text.slice(own.index + own[0].length) : "",
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = new Socket();
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.connect(port, host);
  });
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string, host = "127.0.0.1"): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited early: ${stderr()}`);
    if (await portOpen(port, host)) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open: ${stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

export interface SwaksResult {
  code: number;
  output: string;
}

/** Runs swaks; resolves with its exit code and transcript, never throws on a failed transaction. */
export async function swaks(args: string[], timeoutMs = 30_000): Promise<SwaksResult> {
  try {
    const { stdout, stderr } = await execFileAsync("swaks", ["--timeout", "20", ...args], {
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, output: (e.stdout ?? "") + (e.stderr ?? "") };
  }
}

/**
 * swaks as an authenticated client of a relay port (a port alone is on 127.0.0.1): AUTH (PLAIN unless told) as
 * `login` after STARTTLS, or on implicit TLS with `implicit`; from a customer to support@example.com unless told;
 * `extra` goes last.
 */
export function swaksAuth(
  server: number | string,
  login: { user: string; password: string },
  extra: string[] = [],
  { implicit = false, auth = "PLAIN", from = "customer@users.example.org", to = "support@example.com" } = {},
): Promise<SwaksResult> {
  return swaks([
    "--server",
    typeof server === "number" ? `127.0.0.1:${server}` : server,
    implicit ? "--tls-on-connect" : "--tls",
    "--auth",
    auth,
    "--auth-user",
    login.user,
    "--auth-password",
    login.password,
    "--from",
    from,
    "--to",
    to,
    ...extra,
  ]);
}

/** swaks as a customer writing in: jane@users.example.org to support@example.com (unless `to`), no AUTH, to a mail server. */
export function swaksCustomer(server: number | string, subject: string, { to = "support@example.com" } = {}): Promise<SwaksResult> {
  return swaks([
    "--server",
    typeof server === "number" ? `127.0.0.1:${server}` : server,
    "--from",
    "jane@users.example.org",
    "--to",
    to,
    "--header",
    `Subject: ${subject}`,
  ]);
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export function randomPassword(): string {
  return alphanumeric(32);
}

export interface TestDomain {
  domain: string;
  addresses: string[];
  credentials: { version: number; username: string; password: string; state?: "Active" | "Revoked"; expiresAt?: string }[];
  authProtocol?: "PLAIN" | "LOGIN";
}

/** A relay config for tests: loopback listeners on free ports, smtp-sink as next hop. */
export async function relayConfig(opts: {
  dir: string;
  tls: { certFile: string; keyFile: string };
  sinkPort: number;
  domains: TestDomain[];
  limits?: Partial<RelayConfig["limits"]>;
  authFailures?: Partial<RelayConfig["authFailures"]>;
  proxyProtocol?: RelayConfig["proxyProtocol"];
  lmtp?: boolean;
  /** Replaces the smtp-sink delivery, e.g. with a webhook. */
  delivery?: RelayConfig["domains"][number]["delivery"];
}): Promise<RelayConfig> {
  return {
    version: configVersion,
    hostname: "relay.test",
    listeners: {
      bindAddress: "127.0.0.1",
      starttls: { port: await freePort() },
      implicitTls: { port: await freePort() },
      health: { port: await freePort() },
    },
    tls: { certFile: opts.tls.certFile, keyFile: opts.tls.keyFile },
    limits: {
      maxMessageBytes: 1024 * 1024,
      maxRecipients: 10,
      maxHeaderBytes: 64 * 1024,
      maxLineBytes: 1000,
      maxReceivedHops: 30,
      greetingDelayMs: 0,
      idleTimeoutSeconds: 30,
      sessionTimeoutSeconds: 300,
      nextHopTimeoutSeconds: 10,
      maxConnections: 100,
      ...opts.limits,
    },
    authFailures: {
      perConnection: 3,
      delayMs: 10,
      lockoutThreshold: 10,
      lockoutWindowSeconds: 300,
      lockoutSeconds: 600,
      ...opts.authFailures,
    },
    ...(opts.proxyProtocol ? { proxyProtocol: opts.proxyProtocol } : {}),
    domains: opts.domains.map((d) => ({
      domain: d.domain,
      authProtocol: d.authProtocol ?? "PLAIN",
      credentials: d.credentials.map((c) => ({
        version: c.version,
        username: c.username,
        passwordSha256: sha256(c.password),
        state: c.state ?? "Active",
        ...(c.expiresAt ? { expiresAt: c.expiresAt } : {}),
      })),
      addresses: d.addresses,
      delivery: opts.delivery ?? { smtp: { host: "127.0.0.1", port: opts.sinkPort, protocol: opts.lmtp ? "LMTP" : "SMTP", tls: "None" } },
    })),
  };
}

export function writeRelayConfig(file: string, config: RelayConfig): void {
  // Write then rename: the relay never reads half a file.
  writeFileSync(`${file}.tmp`, stringify(config));
  renameSync(`${file}.tmp`, file);
}
