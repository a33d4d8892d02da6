// `npm run bench:relay`: inbound relay throughput, latency, CPU and memory,
// measured side by side in one run with the same load client:
//
//   direct   the load client straight to smtp-sink (plain SMTP): the ceiling
//   relay    STARTTLS + AUTH PLAIN into the relay (the compiled dist/, as the
//            image runs it), cut-through to smtp-sink
//   haraka   the same through Haraka 3.3.4 as an authenticated cut-through
//            relay (`npm run bench:relay -- --haraka`; installed from npm into
//            ~/.cache on first use, see bench/haraka.ts)
//   postfix  Postfix as the authenticated relay a platform team would deploy
//            instead (`-- --postfix`): SASL over STARTTLS only, its queue on
//            disk, store-and-forward (a round ends when its queue is empty;
//            bench/postfix-relay.ts)
//   prototype the throw-away smtp-server + pooled nodemailer cut-through the
//            issue's targets were set against (`-- --prototype`, pooled only;
//            bench/prototype.ts): how fast this machine runs the reference
//
// Each with pooled connections (100 messages each) and, for the relays, a new
// TLS connection per message (as Postfix sends without a backlog). The pooled
// runs are interleaved over several rounds (direct, relay, haraka, direct, …)
// and each figure is the median round, so a noisy moment of the machine hits
// every path alike. The relay logs at its production default (info, one line
// per AUTH and per message) into a file. Prints a table, then one
// `figure <name> <value> <unit>` line per figure.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  freePort,
  portOpen,
  relayConfig,
  randomPassword,
  selfSignedCertificate,
  stopChild,
  tempDir,
  writeRelayConfig,
} from "../test/support/mail.js";
import { eventuallyTrue } from "../test/support/wait.js";
import { startHaraka } from "./haraka.js";
import { startPostfixRelay } from "./postfix-relay.js";
import { load as loadWith, type Result, type Target } from "./load.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "2000" },
    rounds: { type: "string", default: "3" },
    concurrency: { type: "string", default: "20" },
    size: { type: "string", default: "10240" },
    haraka: { type: "boolean", default: false },
    postfix: { type: "boolean", default: false },
    // The throw-away smtp-server + pooled nodemailer prototype (bench/prototype.ts) the targets were set against.
    prototype: { type: "boolean", default: false },
    // For profiling the steady state alone (BENCH_PROFILE=dir): no connection per message.
    "pooled-only": { type: "boolean", default: false },
  },
});
const totalMessages = Number(values.messages);
const concurrency = Number(values.concurrency);
const body = `${"x".repeat(76)}\r\n`.repeat(Math.ceil(Number(values.size) / 78)).slice(0, Number(values.size));
const load = (target: Target, mode: "pooled" | "per-message", messages: number) => loadWith(target, mode, messages, { concurrency, body });

async function startSink(): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn("smtp-sink", ["-u", "nobody", "-c", `127.0.0.1:${port}`, "1024"], { stdio: "ignore" });
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { port, child };
}

async function main(): Promise<void> {
  const dir = tempDir("bench");
  const sink = await startSink();
  const tls = await selfSignedCertificate(dir, "relay.bench");
  const password = randomPassword();
  const user = "example.com-v1";
  const config = await relayConfig({
    dir,
    tls,
    sinkPort: sink.port,
    domains: [{ domain: "example.com", addresses: ["support@example.com"], credentials: [{ version: 1, username: user, password }] }],
    limits: { maxConnections: 1000, maxMessageBytes: 1024 * 1024 },
  });
  const file = join(dir, "relay.yaml");
  writeRelayConfig(file, config);
  // Not beside the config: the relay watches that directory for changes.
  mkdirSync(join(dir, "logs"));
  const logFile = join(dir, "logs", "relay.log");
  const relay = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROFILE] : []),
      "dist/relay/main.js",
      "--config",
      file,
    ],
    {
      stdio: ["ignore", "ignore", openSync(logFile, "w")],
      env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? "info" },
    },
  );
  await eventuallyTrue(
    `the relay (its log: ${logFile})`,
    async () => (await fetch(`http://127.0.0.1:${config.listeners.health.port}/readyz`).catch(() => undefined))?.status === 200,
    30_000,
  );

  const targets: Target[] = [
    { name: "direct", port: sink.port, tls: false },
    { name: "relay", port: config.listeners.starttls!.port, tls: true, auth: { user, pass: password }, pid: relay.pid! },
  ];
  const haraka = values.haraka ? await startHaraka({ dir, tls, sinkPort: sink.port, user, password }) : undefined;
  if (haraka) targets.push({ name: "haraka", port: haraka.port, tls: true, auth: { user, pass: password }, pid: haraka.pid });
  const postfix = values.postfix
    ? await startPostfixRelay({ sinkPort: sink.port, password, from: "customer@users.example.org" })
    : undefined;
  if (postfix) targets.push(postfix.target);
  const prototype = values.prototype ? await startPrototype({ tls, sinkPort: sink.port, user, password }) : undefined;
  if (prototype)
    targets.push({ name: "prototype", port: prototype.port, tls: true, auth: { user, pass: password }, pid: prototype.child.pid! });

  const results: Result[] = [];
  try {
    for (const target of targets) await load(target, "pooled", Math.min(500, totalMessages)); // warm-up
    const rounds: Result[][] = targets.map(() => []);
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const [i, target] of targets.entries()) rounds[i]!.push(await load(target, "pooled", totalMessages));
    }
    for (const [i, target] of targets.entries()) {
      results.push(median(rounds[i]!));
      if (target.name !== "direct" && target.name !== "prototype" && !values["pooled-only"])
        results.push(await load(target, "per-message", Math.ceil(totalMessages / 2)));
    }
  } finally {
    await stopChild(relay);
    if (haraka) await haraka.stop();
    if (postfix) await postfix.stop();
    if (prototype) await stopChild(prototype.child);
    await stopChild(sink.child);
  }
  report(results);
}

async function startPrototype(opts: {
  tls: { certFile: string; keyFile: string };
  sinkPort: number;
  user: string;
  password: string;
}): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "bench/prototype.ts",
      "--port",
      String(port),
      "--sink-port",
      String(opts.sinkPort),
      "--cert",
      opts.tls.certFile,
      "--key",
      opts.tls.keyFile,
      "--user",
      opts.user,
      "--password",
      opts.password,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  await eventuallyTrue("the prototype relay", () => portOpen(port), 20_000);
  return { port, child };
}

/** The round with the median rate (its latencies and CPU belong to the same round). */
function median(rounds: Result[]): Result {
  return [...rounds].sort((a, b) => a.rate - b.rate)[Math.floor(rounds.length / 2)]!;
}

function report(results: Result[]): void {
  const row = (cells: (string | number)[]) => console.log(cells.map((c) => String(c).padStart(12)).join(""));
  row(["path", "mode", "msgs", "failed", "msgs/s", "p50 ms", "p99 ms", "cpu µs/msg", "kernel %", "RSS MB"]);
  for (const r of results) {
    row([
      r.name,
      r.mode,
      r.messages,
      r.failed,
      r.rate.toFixed(0),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      r.cpuPerMessageUs?.toFixed(0) ?? "-",
      r.cpuSystemShare === undefined ? "-" : (r.cpuSystemShare * 100).toFixed(0),
      r.rssMb?.toFixed(0) ?? "-",
    ]);
  }
  const find = (name: string, mode: string) => results.find((r) => r.name === name && r.mode === mode);
  const direct = find("direct", "pooled")!;
  const relayPooled = find("relay", "pooled")!;
  const relayPerMessage = find("relay", "per-message");
  const harakaPooled = find("haraka", "pooled");
  const prototypePooled = find("prototype", "pooled");
  const postfixPooled = find("postfix", "pooled");
  const postfixPerMessage = find("postfix", "per-message");
  console.log("");
  console.log(`figure relay_msgs_per_s ${relayPooled.rate.toFixed(0)} msgs/s`);
  if (relayPerMessage) console.log(`figure relay_per_connection_msgs_per_s ${relayPerMessage.rate.toFixed(0)} msgs/s`);
  console.log(`figure direct_msgs_per_s ${direct.rate.toFixed(0)} msgs/s`);
  console.log(`figure relay_vs_direct ${(relayPooled.rate / direct.rate).toFixed(2)} ratio`);
  console.log(`figure relay_added_p50 ${(relayPooled.p50 - direct.p50).toFixed(2)} ms`);
  console.log(`figure relay_added_p99 ${(relayPooled.p99 - direct.p99).toFixed(2)} ms`);
  console.log(`figure relay_cpu_per_message ${relayPooled.cpuPerMessageUs!.toFixed(0)} us`);
  console.log(`figure relay_cpu_kernel_share ${(relayPooled.cpuSystemShare! * 100).toFixed(0)} %`);
  console.log(`figure relay_rss ${relayPooled.rssMb!.toFixed(0)} MB`);
  if (harakaPooled) {
    console.log(`figure haraka_msgs_per_s ${harakaPooled.rate.toFixed(0)} msgs/s`);
    console.log(`figure relay_vs_haraka ${(relayPooled.rate / harakaPooled.rate).toFixed(2)} ratio`);
  }
  if (postfixPooled) {
    console.log(`figure postfix_msgs_per_s ${postfixPooled.rate.toFixed(0)} msgs/s`);
    console.log(`figure postfix_cpu_per_message ${postfixPooled.cpuPerMessageUs!.toFixed(0)} us`);
    console.log(`figure postfix_added_p99 ${(postfixPooled.p99 - direct.p99).toFixed(2)} ms`);
    console.log(`figure relay_vs_postfix ${(relayPooled.rate / postfixPooled.rate).toFixed(2)} ratio`);
    console.log(`figure relay_vs_postfix_cpu ${(relayPooled.cpuPerMessageUs! / postfixPooled.cpuPerMessageUs!).toFixed(2)} ratio`);
    if (postfixPerMessage && relayPerMessage)
      console.log(`figure relay_vs_postfix_per_connection ${(relayPerMessage.rate / postfixPerMessage.rate).toFixed(2)} ratio`);
  }
  if (prototypePooled) {
    console.log(`figure prototype_msgs_per_s ${prototypePooled.rate.toFixed(0)} msgs/s`);
    console.log(`figure prototype_cpu_per_message ${prototypePooled.cpuPerMessageUs!.toFixed(0)} us`);
    console.log(`figure prototype_added_p99 ${(prototypePooled.p99 - direct.p99).toFixed(2)} ms`);
    if (harakaPooled) console.log(`figure prototype_vs_haraka ${(prototypePooled.rate / harakaPooled.rate).toFixed(2)} ratio`);
    console.log(`figure relay_vs_prototype ${(relayPooled.rate / prototypePooled.rate).toFixed(2)} ratio`);
    console.log(`figure relay_vs_prototype_cpu ${(relayPooled.cpuPerMessageUs! / prototypePooled.cpuPerMessageUs!).toFixed(2)} ratio`);
  }
}

await main();
