// Soak: mixed traffic into a relay process for SMTPC_SOAK_MINUTES (1 in
// `npm test`; `SMTPC_SOAK_MINUTES=30 npm run test:faults` for the full run),
// with its resident memory, V8 heap and open file descriptors sampled. After a warm-up
// (the first third), neither may trend upwards: the last third's median stays
// within a margin of the middle third's, and the descriptors come back to
// where they were once the traffic stops.
//
// The mix: pooled senders, a connection per message, wrong passwords from
// another loopback address and for an unknown username (lockouts are per
// address and per username, so it must not share either with the senders),
// recipients that are not support addresses, oversized messages, and a
// credential rotation (hot reload) every few seconds.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import nodemailer from "nodemailer";
import type { RelayConfig } from "../../relay/contract/config.js";
import {
  randomPassword,
  relayConfig,
  selfSignedCertificate,
  sha256,
  startSmtpSink,
  stopChild,
  tempDir,
  writeRelayConfig,
  type SmtpSink,
} from "../support/mail.js";
import { startRelayProcess } from "../support/relay.js";
import { recordFigures } from "./figures.js";

const minutes = Number(process.env.SMTPC_SOAK_MINUTES ?? "1");
const sampleEveryMs = minutes >= 10 ? 10_000 : 2_000;
const username = (v: number) => `example.com-v${v}`;

interface Sample {
  atS: number;
  rssMb: number;
  fds: number;
  /** V8 heap in use, from the relay's own /metrics (prom-client's default metrics). */
  heapMb: number;
}

async function sample(pid: number, metricsUrl: string, startedAt: number): Promise<Sample> {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  const metrics = await (await fetch(metricsUrl)).text();
  const heap = Number(/^smtpc_relay_process_nodejs_heap_size_used_bytes (\d+)/m.exec(metrics)?.[1] ?? 0);
  return {
    atS: (Date.now() - startedAt) / 1000,
    rssMb: rssKb / 1024,
    fds: readdirSync(`/proc/${pid}/fd`).length,
    heapMb: heap / 1024 / 1024,
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/** Least-squares slope of y over x. */
function slope(points: { x: number; y: number }[]): number {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const num = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const den = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

describe(`soak: ${minutes} minute(s) of mixed traffic`, () => {
  let sink: SmtpSink;
  let relay: ChildProcess;
  let config: RelayConfig;
  let configFile: string;
  const passwords = new Map<number, string>();

  before(async () => {
    sink = await startSmtpSink();
    const dir = tempDir("soak");
    passwords.set(1, randomPassword());
    config = await relayConfig({
      dir,
      tls: await selfSignedCertificate(dir),
      sinkPort: sink.port,
      domains: [
        {
          domain: "example.com",
          addresses: ["support@example.com"],
          credentials: [{ version: 1, username: username(1), password: passwords.get(1)! }],
        },
      ],
      limits: { maxMessageBytes: 64 * 1024, maxConnections: 200 },
    });
    ({ child: relay, configFile } = await startRelayProcess(config, dir, { logLevel: "info", stderr: "ignore" }));
  });
  after(async () => {
    if (relay) await stopChild(relay);
    await sink?.stop();
  });

  test("memory and file descriptors do not trend upwards", async () => {
    const startedAt = Date.now();
    const deadline = startedAt + minutes * 60_000;
    let current = 1;
    const counts = { delivered: 0, refusedAsExpected: 0, unexpected: [] as string[] };
    const transport = (opts: { pool: boolean; version?: number; password?: string; localAddress?: string }) =>
      nodemailer.createTransport({
        host: "127.0.0.1",
        port: config.listeners.starttls!.port,
        pool: opts.pool,
        maxConnections: 1,
        maxMessages: 50,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        auth: { user: username(opts.version ?? current), pass: opts.password ?? passwords.get(opts.version ?? current)! },
      });
    const message = (n: number, size = 2_000) => ({
      envelope: { from: "jane@users.example.org", to: ["support@example.com"] },
      raw: `From: jane@users.example.org\r\nTo: support@example.com\r\nSubject: soak ${n}\r\n\r\n${`${"y".repeat(76)}\r\n`.repeat(Math.ceil(size / 78))}`,
    });
    let n = 0;
    const pace = () => new Promise((resolve) => setTimeout(resolve, 20));

    const expect = async (what: string, send: () => Promise<unknown>, refused?: RegExp) => {
      try {
        await send();
        if (refused) counts.unexpected.push(`${what}: accepted`);
        else counts.delivered++;
      } catch (error) {
        const text = String((error as { response?: string }).response ?? error);
        if (refused?.test(text)) counts.refusedAsExpected++;
        // A pooled session whose credential was revoked since its AUTH is told to reconnect (451): expected.
        else if (!refused && /^451 4\.7\.0/.test(text)) counts.refusedAsExpected++;
        else counts.unexpected.push(`${what}: ${text.slice(0, 200)}`);
      }
    };
    const pooled = async () => {
      while (Date.now() < deadline) {
        const t = transport({ pool: true });
        for (let i = 0; i < 50 && Date.now() < deadline; i++) {
          await expect("pooled", () => t.sendMail(message(n++)));
          await pace();
        }
        t.close();
      }
    };
    const perMessage = async () => {
      while (Date.now() < deadline) {
        const t = transport({ pool: false });
        await expect("per-message", () => t.sendMail(message(n++)));
        t.close();
        await pace();
      }
    };
    const hostile = async () => {
      while (Date.now() < deadline) {
        // Another address and another username: the lockouts it earns are per address and per username.
        const wrong = transport({ pool: false, version: 999, password: "wrong-password", localAddress: "127.0.0.2" });
        await expect("wrong password", () => wrong.sendMail(message(n++)), /^(535|454|421)/);
        wrong.close();
        const t = transport({ pool: false });
        await expect(
          "not a support address",
          () => t.sendMail({ ...message(n++), envelope: { from: "jane@users.example.org", to: ["someone@elsewhere.example"] } }),
          /^550/,
        );
        await expect("oversized", () => t.sendMail(message(n++, 100 * 1024)), /^552/);
        t.close();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };
    const rotate = async () => {
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        const next = current + 1;
        passwords.set(next, randomPassword());
        config.domains[0]!.credentials = [current, next].map((v) => ({
          version: v,
          username: username(v),
          passwordSha256: sha256(passwords.get(v)!),
          state: "Active" as const,
        }));
        writeRelayConfig(configFile, config);
        // Senders move over once the relay has surely read it (it polls every two seconds), as a customer would.
        await new Promise((resolve) => setTimeout(resolve, 2_500));
        current = next;
      }
    };
    const samples: Sample[] = [];
    const metricsUrl = `http://127.0.0.1:${config.listeners.health.port}/metrics`;
    const sampler = setInterval(() => void sample(relay.pid!, metricsUrl, startedAt).then((s) => samples.push(s)), sampleEveryMs);
    try {
      await Promise.all([pooled(), pooled(), pooled(), perMessage(), hostile(), rotate()]);
    } finally {
      clearInterval(sampler);
    }
    // Idle again: every session and next-hop connection closed (the pool's idle close is five seconds).
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    const idle = await sample(relay.pid!, metricsUrl, startedAt);

    const third = Math.floor(samples.length / 3);
    const middle = samples.slice(third, 2 * third);
    const last = samples.slice(2 * third);
    const rss = { middle: median(middle.map((s) => s.rssMb)), last: median(last.map((s) => s.rssMb)) };
    const fds = {
      first: samples[0]?.fds ?? 0,
      middle: median(middle.map((s) => s.fds)),
      last: median(last.map((s) => s.fds)),
      idle: idle.fds,
    };
    // The heap's floor (its lowest sample, just after a collection) rises only with what is retained.
    const heapFloor = { middle: Math.min(...middle.map((s) => s.heapMb)), last: Math.min(...last.map((s) => s.heapMb)) };
    const rssSlope = slope(samples.slice(third).map((s) => ({ x: s.atS / 60, y: s.rssMb })));
    const figures = {
      minutes,
      messagesDelivered: counts.delivered,
      refusedAsExpected: counts.refusedAsExpected,
      unexpectedResults: counts.unexpected.length,
      rotations: current - 1,
      rssMbMiddleThird: Number(rss.middle.toFixed(1)),
      rssMbLastThird: Number(rss.last.toFixed(1)),
      rssSlopeMbPerMinuteAfterWarmup: Number(rssSlope.toFixed(2)),
      heapFloorMbMiddleThird: Number(heapFloor.middle.toFixed(1)),
      heapFloorMbLastThird: Number(heapFloor.last.toFixed(1)),
      fdsMiddleThird: fds.middle,
      fdsLastThird: fds.last,
      fdsIdleAfter: fds.idle,
      samples: samples.length,
    };
    recordFigures("soak", {
      scenario: `${minutes} min: 3 pooled senders, 1 connection per message, wrong passwords, refused recipients, oversized messages, a rotation every ~7.5 s`,
      figures,
    });
    console.log(`soak: ${JSON.stringify(figures)}`);

    assert.deepEqual(counts.unexpected.slice(0, 10), [], "every message either delivered or refused as expected");
    assert.ok(counts.delivered > minutes * 1000, `only ${counts.delivered} messages delivered`);
    assert.ok(samples.length >= 9, "enough samples for a trend");
    assert.ok(
      rss.last <= rss.middle * 1.2 + 10,
      `resident memory grows: median ${rss.middle.toFixed(1)} MB in the middle third, ${rss.last.toFixed(1)} MB in the last`,
    );
    assert.ok(heapFloor.middle > 0, "the relay's heap was read from its /metrics");
    assert.ok(
      heapFloor.last <= heapFloor.middle * 1.3 + 5,
      `the heap's floor rises: ${heapFloor.middle.toFixed(1)} MB in the middle third, ${heapFloor.last.toFixed(1)} MB in the last`,
    );
    assert.ok(fds.last <= fds.middle + 20, `open descriptors grow: median ${fds.middle} in the middle third, ${fds.last} in the last`);
    assert.ok(fds.idle <= fds.first + 5, `descriptors left open once idle: ${fds.idle}, at the first sample under load ${fds.first}`);
  });
});
