// Runs a relay in the test process against real peers, with its log lines
// captured so tests can read them; or as its image runs it, a process of its own.
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { Socket } from "node:net";
import type { RelayConfig } from "../../relay/contract/config.js";
import { createLogger } from "../../lib/log.js";
import { Relay } from "../../relay/relay.js";
import { relayConfig, selfSignedCertificate, startSmtpSink, tempDir, writeRelayConfig, type SmtpSink, type TestDomain } from "./mail.js";
import { eventuallyTrue } from "./wait.js";

export interface RelayHarness {
  relay: Relay;
  sink: SmtpSink;
  config: RelayConfig;
  configFile: string;
  logs: string[];
  starttlsPort: number;
  implicitPort: number;
  healthPort: number;
  submissionPort: number | undefined;
  controlPort: number | undefined;
  dir: string;
  /** Rewrites the config file and reloads it now (the watcher would within two seconds). */
  update(change: (config: RelayConfig) => void): boolean;
  stop(): Promise<void>;
}

export const exampleDomain = (password: string, extra: Partial<TestDomain> = {}): TestDomain => ({
  domain: "example.com",
  addresses: ["support@example.com", "billing@example.com"],
  credentials: [{ version: 1, username: "example.com-v1", password }],
  ...extra,
});

export async function startRelay(opts: {
  domains: TestDomain[];
  sinkOptions?: string[];
  limits?: Partial<RelayConfig["limits"]>;
  authFailures?: Partial<RelayConfig["authFailures"]>;
  proxyProtocol?: RelayConfig["proxyProtocol"];
  delivery?: RelayConfig["domains"][number]["delivery"];
  lmtp?: boolean;
  /** Last changes to the config before the relay starts (outbound sections, control API). */
  configure?: (config: RelayConfig, dir: string) => void | Promise<void>;
}): Promise<RelayHarness> {
  const dir = tempDir("relay");
  const sink = await startSmtpSink(opts.sinkOptions ?? []);
  const tls = await selfSignedCertificate(dir);
  const config = await relayConfig({ dir, tls, sinkPort: sink.port, ...opts });
  await opts.configure?.(config, dir);
  const configFile = join(dir, "relay.yaml");
  writeRelayConfig(configFile, config);
  const logs: string[] = [];
  const stream = new PassThrough();
  stream.on("data", (chunk: Buffer) => logs.push(...chunk.toString().split("\n").filter(Boolean)));
  const relay = new Relay(configFile, createLogger("relay", { level: "debug", stream }));
  try {
    await relay.start();
  } catch (error) {
    // A relay that cannot start must not leave its sink running (the test file would never exit).
    await relay.stop(0).catch(() => undefined);
    await sink.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const ports = relay.ports();
  return {
    relay,
    sink,
    config,
    configFile,
    logs,
    starttlsPort: ports.starttls!,
    implicitPort: ports.implicitTls!,
    healthPort: ports.health!,
    submissionPort: ports.submission,
    controlPort: ports.control,
    dir,
    update(change) {
      change(config);
      writeRelayConfig(configFile, config);
      return relay.reload();
    },
    async stop() {
      await relay.stop(1_000);
      await sink.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The relay as its image runs it (dist/relay/main.js: `npx tsc -p tsconfig.build.json` first), a process of its own on
 * `config`, written to `dir`/relay.yaml; resolves once its /readyz answers 200. Its stderr is the caller's unless
 * `stderr` says "ignore"; it logs at `logLevel` (warn unless told).
 */
export async function startRelayProcess(
  config: RelayConfig,
  dir: string,
  { logLevel = "warn", stderr = "inherit" }: { logLevel?: string; stderr?: "inherit" | "ignore" } = {},
): Promise<{ child: ChildProcess; configFile: string }> {
  const configFile = join(dir, "relay.yaml");
  writeRelayConfig(configFile, config);
  const child = spawn(process.execPath, ["dist/relay/main.js", "--config", configFile], {
    stdio: ["ignore", "ignore", stderr],
    env: { ...process.env, LOG_LEVEL: logLevel },
  });
  try {
    await eventuallyTrue(
      "the relay",
      async () => (await fetch(`http://127.0.0.1:${config.listeners.health.port}/readyz`).catch(() => undefined))?.status === 200,
      30_000,
    );
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return { child, configFile };
}

/**
 * A line-oriented SMTP client over a real socket, for dialogues swaks cannot
 * script: early talk, AUTH before TLS, raw DATA with bare CR/LF.
 */
export class RawSmtp {
  private buffer = "";
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(private socket: Socket | TLSSocket) {
    this.attach(socket);
  }

  /**
   * With `ca`, the implicit-TLS handshake verifies the relay's certificate against it for `servername`.
   * `localAddress` picks the client's source (every 127.0.0.0/8 address is on lo): another client, as the relay sees it.
   */
  static async connect(
    port: number,
    {
      implicitTls = false,
      ca,
      servername,
      localAddress,
    }: { implicitTls?: boolean; ca?: string; servername?: string; localAddress?: string } = {},
  ): Promise<RawSmtp> {
    const from = localAddress ? { localAddress } : {};
    const socket = implicitTls
      ? tlsConnect({
          port,
          host: "127.0.0.1",
          ...from,
          ...(ca ? { ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
          ...(servername ? { servername } : {}),
        })
      : new Socket().connect({ port, host: "127.0.0.1", ...from });
    await new Promise<void>((resolve, reject) => {
      socket.once(implicitTls ? "secureConnect" : "connect", () => resolve());
      socket.once("error", reject);
    });
    return new RawSmtp(socket);
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.on("data", (chunk: Buffer) => {
      this.buffer += chunk.toString("latin1");
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on("close", () => {
      this.closed = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on("error", () => undefined);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Writes and resolves once the data has been handed to the kernel (so the peer can read it). */
  flushed(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (error) => (error ? reject(error) : resolve())));
  }

  /** Reads one complete (possibly multi-line) reply. */
  async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buffer);
      if (match) {
        this.buffer = this.buffer.slice(match[0].length);
        return match[0].trimEnd();
      }
      if (this.closed) return `(closed)${this.buffer ? " " + this.buffer : ""}`;
      if (Date.now() > deadline) throw new Error(`no reply within ${timeoutMs} ms; buffer: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  async startTls(): Promise<void> {
    const reply = await this.command("STARTTLS");
    if (!reply.startsWith("220")) throw new Error(`STARTTLS refused: ${reply}`);
    const plain = this.socket;
    plain.removeAllListeners("data");
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: "relay.test" });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    this.socket = secure;
    this.attach(secure);
  }

  async authPlain(username: string, password: string): Promise<string> {
    return this.command(`AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`).toString("base64")}`);
  }

  /** The serial number of the certificate the relay presented (TLS sessions only). */
  peerSerial(): string | undefined {
    return "getPeerCertificate" in this.socket ? this.socket.getPeerCertificate().serialNumber : undefined;
  }

  close(): void {
    this.socket.destroy();
  }
}
