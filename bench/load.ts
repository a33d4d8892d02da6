// The load client and process probes shared by the benchmarks: the same
// client for every path, so figures measured in one run compare.
import { readFileSync } from "node:fs";
import nodemailer from "nodemailer";

export interface Target {
  name: string;
  port: number;
  tls: boolean;
  auth?: { user: string; pass: string };
  pid?: number;
  from?: string;
  to?: string;
}

export interface Result {
  name: string;
  mode: "pooled" | "per-message";
  messages: number;
  failed: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
  cpuPerMessageUs?: number;
  rssMb?: number;
}

export function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks
}

export function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

export interface LoadOptions {
  concurrency: number;
  /** The message, without the header lines the client adds. */
  body: string;
}

export async function load(target: Target, mode: "pooled" | "per-message", messages: number, { concurrency, body }: LoadOptions): Promise<Result> {
  const from = target.from ?? "customer@users.example.org";
  const to = target.to ?? "support@example.com";
  const latencies: number[] = [];
  let failed = 0;
  let next = 0;
  const ticksBefore = target.pid ? cpuTicks(target.pid) : 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const transport = nodemailer.createTransport({
        host: "127.0.0.1",
        port: target.port,
        pool: mode === "pooled",
        maxConnections: 1,
        maxMessages: 100,
        requireTLS: target.tls,
        ignoreTLS: !target.tls,
        tls: { rejectUnauthorized: false },
        ...(target.auth ? { auth: target.auth } : {}),
      });
      while (next < messages) {
        next++;
        const sent = process.hrtime.bigint();
        try {
          await transport.sendMail({
            envelope: { from, to: [to] },
            raw: `From: ${from}\r\nTo: ${to}\r\nSubject: bench\r\nMessage-ID: <${next}.${process.hrtime.bigint()}@bench.test>\r\n\r\n${body}`,
          });
          latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
        } catch {
          failed++;
        }
      }
      transport.close();
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const result: Result = {
    name: target.name,
    mode,
    messages: latencies.length,
    failed,
    seconds,
    rate: latencies.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
  if (target.pid) {
    const ticks = cpuTicks(target.pid) - ticksBefore;
    result.cpuPerMessageUs = ((ticks / 100) * 1e6) / Math.max(1, latencies.length);
    result.rssMb = rssMb(target.pid);
  }
  return result;
}

