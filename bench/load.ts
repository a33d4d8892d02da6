// The load client and process probes shared by the benchmarks: the same
// client for every path, so figures measured in one run compare.
import { readFileSync } from "node:fs";
import type { TLSSocket } from "node:tls";
import nodemailer from "nodemailer";
import SMTPConnection from "nodemailer/lib/smtp-connection";

export interface Target {
  name: string;
  port: number;
  tls: boolean;
  auth?: { user: string; pass: string };
  pid?: number;
  /** CPU of a path that is more than one process (Postfix): ticks used so far, replacing `pid`'s. */
  cpu?: () => { user: number; system: number };
  rss?: () => number;
  /** A store-and-forward path: resolves once it delivered everything it accepted, which the round's time includes. */
  drained?: () => Promise<void>;
  from?: string;
  to?: string;
}

/**
 * pooled: connections of 100 messages each. per-message: a new connection, a full TLS handshake and AUTH per message
 * (Postfix without a backlog and without a TLS session cache). resumed: the same, but each session resumes the TLS
 * session its client's previous connection got a ticket for (Postfix with `smtp_tls_session_cache_database`).
 */
export type Mode = "pooled" | "per-message" | "resumed";

export interface Result {
  name: string;
  mode: Mode;
  messages: number;
  failed: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
  cpuPerMessageUs?: number;
  /** Share of that CPU time spent in the kernel (system calls: socket reads and writes). */
  cpuSystemShare?: number;
  rssMb?: number;
  /** The load client's own CPU (this process) per message. */
  clientCpuPerMessageUs: number;
  /** resumed: the share of connections whose TLS session was resumed (the rest were full handshakes). */
  resumedShare?: number;
}

/** User and system CPU time of a process, in clock ticks (1/100 s). */
export function cpuTicks(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

export function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

const maxMessagesPerConnection = 100;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

export interface LoadOptions {
  concurrency: number;
  /** The message, without the header lines the client adds. */
  body: string;
}

export async function load(target: Target, mode: Mode, messages: number, { concurrency, body }: LoadOptions): Promise<Result> {
  const from = target.from ?? "customer@users.example.org";
  const to = target.to ?? "support@example.com";
  const latencies: number[] = [];
  let opening = 0;
  let failed = 0;
  let next = 0;
  let connections = 0;
  let resumed = 0;
  const message = () =>
    `From: ${from}\r\nTo: ${to}\r\nSubject: bench\r\nMessage-ID: <${next}.${process.hrtime.bigint()}@bench.test>\r\n\r\n${body}`;
  const cpuOf = target.cpu ?? (target.pid ? () => cpuTicks(target.pid!) : undefined);
  const ticksBefore = cpuOf ? cpuOf() : { user: 0, system: 0 };
  const clientBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const pooled = async () => {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: target.port,
      pool: true,
      maxConnections: 1,
      maxMessages: maxMessagesPerConnection,
      requireTLS: target.tls,
      ignoreTLS: !target.tls,
      tls: { rejectUnauthorized: false },
      ...(target.auth ? { auth: target.auth } : {}),
    });
    for (let sentHere = 0; next < messages; sentHere++) {
      next++;
      const sent = process.hrtime.bigint();
      try {
        await transport.sendMail({ envelope: { from, to: [to] }, raw: message() });
        // The message that opens a connection also waits for its TLS handshake
        // and AUTH; that cost is the per-connection modes' figure, not latency
        // the relay adds to a message.
        if (sentHere % maxMessagesPerConnection !== 0) latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
        else opening++;
      } catch {
        failed++;
      }
    }
    transport.close();
  };
  // One connection per message, as nodemailer's unpooled transport makes it (connect, STARTTLS, AUTH, one
  // transaction, QUIT), written out so that the TLS session can be kept for the next connection as a sender's
  // session cache keeps it.
  const perConnection = async () => {
    let session: Buffer | undefined;
    while (next < messages) {
      next++;
      const sent = process.hrtime.bigint();
      const connection = new SMTPConnection({
        host: "127.0.0.1",
        port: target.port,
        requireTLS: target.tls,
        ignoreTLS: !target.tls,
        tls: { rejectUnauthorized: false, ...(mode === "resumed" && session ? { session } : {}) },
      });
      try {
        await new Promise<void>((resolve, reject) => {
          // Errors after the message (QUIT on a closing socket) are not the message's.
          connection.on("error", reject);
          connection.connect(() => {
            const socket = connection._socket as TLSSocket;
            connections++;
            if (socket.isSessionReused()) resumed++;
            // TLS 1.3 tickets arrive after the handshake (here, before the answer to EHLO): the latest one is
            // what the next connection offers.
            session = socket.getSession() ?? session;
            socket.on("session", (ticket: Buffer) => (session = ticket));
            const send = () => connection.send({ from, to: [to] }, message(), (error) => (error ? reject(error) : resolve()));
            if (!target.auth) send();
            else connection.login(target.auth, (error) => (error ? reject(error) : send()));
          });
        });
        latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
        connection.quit();
      } catch {
        failed++;
        connection.close();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, mode === "pooled" ? pooled : perConnection));
  if (target.drained) await target.drained();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const client = process.cpuUsage(clientBefore);
  latencies.sort((a, b) => a - b);
  const result: Result = {
    name: target.name,
    mode,
    messages: latencies.length + opening,
    failed,
    seconds,
    rate: (latencies.length + opening) / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    clientCpuPerMessageUs: (client.user + client.system) / Math.max(1, latencies.length + opening),
    ...(mode === "resumed" ? { resumedShare: resumed / Math.max(1, connections) } : {}),
  };
  if (cpuOf) {
    const after = cpuOf();
    const user = after.user - ticksBefore.user;
    const system = after.system - ticksBefore.system;
    result.cpuPerMessageUs = (((user + system) / 100) * 1e6) / Math.max(1, latencies.length + opening);
    result.cpuSystemShare = system / Math.max(1, user + system);
    result.rssMb = target.rss ? target.rss() : rssMb(target.pid!);
  }
  return result;
}
