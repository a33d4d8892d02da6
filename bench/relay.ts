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
//   postfix-bq the same Postfix with before-queue cut-through (also with
//            `--postfix`): smtpd_proxy_filter pointed at the same sink, so the
//            client's reply to the final dot is the next hop's, as ours is, and
//            nothing is queued; one next-hop connection per message, as
//            Postfix's proxy has no pool (bench/postfix-relay.ts says why this
//            is the fair shape and where it is not)
//   prototype the throw-away smtp-server + pooled nodemailer cut-through the
//            issue's targets were set against (`-- --prototype`, pooled only;
//            bench/prototype.ts): how fast this machine runs the reference
//
//   baseline another build of the relay (`-- --baseline DIR`, DIR holding
//            dist/relay/main.js, e.g. an older commit built into /tmp): a
//            change judged side by side on a shared machine
//
// Each with pooled connections (100 messages each) and, for the relays, a new
// TLS connection per message (as Postfix sends without a backlog): "per-message"
// with a full handshake each time, "resumed" with each client offering the TLS
// session its previous connection got (Postfix with
// smtp_tls_session_cache_database); the table says how many did resume. All
// runs are interleaved over several rounds (direct, relay, haraka, direct, …)
// and each figure is the median round, so a noisy moment of the machine hits
// every path alike. The load client's own CPU per message is printed too: it
// shares the machine's two cores, so it bounds what the relays can reach. The relay logs at its production default (info, one line
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
import { load as loadWith, type Mode, type Result, type Target } from "./load.js";

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
    // For profiling the handshake path alone: no pooled rounds (a short warm-up only).
    "per-connection-only": { type: "boolean", default: false },
    // Another build of the relay (a directory holding dist/relay/main.js, e.g. an older commit built into /tmp),
    // measured as "baseline" beside this one in the same run: how a change is judged on a shared machine.
    baseline: { type: "string" },
  },
});
const totalMessages = Number(values.messages);
const concurrency = Number(values.concurrency);
const body = `${"x".repeat(76)}\r\n`.repeat(Math.ceil(Number(values.size) / 78)).slice(0, Number(values.size));
const load = (target: Target, mode: Mode, messages: number) => loadWith(target, mode, messages, { concurrency, body });

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
  const domains = [{ domain: "example.com", addresses: ["support@example.com"], credentials: [{ version: 1, username: user, password }] }];
  const started: ChildProcess[] = [];
  const startRelay = async (name: string, build: string): Promise<Target> => {
    const config = await relayConfig({
      dir,
      tls,
      sinkPort: sink.port,
      domains,
      limits: { maxConnections: 1000, maxMessageBytes: 1024 * 1024 },
    });
    // Each in its own directory, and the log not beside the config: the relay watches that directory for changes.
    const home = join(dir, name);
    mkdirSync(join(home, "logs"), { recursive: true });
    const file = join(home, "relay.yaml");
    writeRelayConfig(file, config);
    const logFile = join(home, "logs", "relay.log");
    const relay = spawn(
      process.execPath,
      [
        ...(process.env.BENCH_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", join(process.env.BENCH_PROFILE, name)] : []),
        join(build, "dist/relay/main.js"),
        "--config",
        file,
      ],
      {
        stdio: ["ignore", "ignore", openSync(logFile, "w")],
        env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? "info" },
      },
    );
    started.push(relay);
    await eventuallyTrue(
      `the relay (its log: ${logFile})`,
      async () => (await fetch(`http://127.0.0.1:${config.listeners.health.port}/readyz`).catch(() => undefined))?.status === 200,
      30_000,
    );
    return { name, port: config.listeners.starttls!.port, tls: true, auth: { user, pass: password }, pid: relay.pid! };
  };

  const targets: Target[] = [{ name: "direct", port: sink.port, tls: false }, await startRelay("relay", ".")];
  if (values.baseline) targets.push(await startRelay("baseline", values.baseline));
  const haraka = values.haraka ? await startHaraka({ dir, tls, sinkPort: sink.port, user, password }) : undefined;
  if (haraka) targets.push({ name: "haraka", port: haraka.port, tls: true, auth: { user, pass: password }, pid: haraka.pid });
  const postfixes = values.postfix
    ? [
        await startPostfixRelay({ sinkPort: sink.port, password, from: "customer@users.example.org" }),
        await startPostfixRelay({ sinkPort: sink.port, password, from: "customer@users.example.org", beforeQueue: true }),
      ]
    : [];
  targets.push(...postfixes.map((p) => p.target));
  const prototype = values.prototype ? await startPrototype({ tls, sinkPort: sink.port, user, password }) : undefined;
  if (prototype)
    targets.push({ name: "prototype", port: prototype.port, tls: true, auth: { user, pass: password }, pid: prototype.child.pid! });

  const results: Result[] = [];
  try {
    for (const target of targets) await load(target, "pooled", Math.min(500, totalMessages)); // warm-up
    const rounds: Result[][] = targets.map(() => []);
    for (let round = 0; round < (values["per-connection-only"] ? 0 : Number(values.rounds)); round++) {
      for (const [i, target] of targets.entries()) rounds[i]!.push(await load(target, "pooled", totalMessages));
    }
    const perConnection = targets.filter((t) => t.name !== "direct" && t.name !== "prototype" && !values["pooled-only"]);
    for (const pooled of rounds) if (pooled.length > 0) results.push(median(pooled));
    // A full handshake per connection and resumed sessions, interleaved over rounds as the pooled runs are.
    for (const mode of ["per-message", "resumed"] as const) {
      const perRounds: Result[][] = perConnection.map(() => []);
      for (let round = 0; round < Number(values.rounds); round++)
        for (const [i, target] of perConnection.entries()) perRounds[i]!.push(await load(target, mode, Math.ceil(totalMessages / 4)));
      results.push(...perRounds.map(median));
    }
  } finally {
    for (const relay of started) await stopChild(relay);
    if (haraka) await haraka.stop();
    for (const postfix of postfixes) await postfix.stop();
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
  row(["path", "mode", "msgs", "failed", "msgs/s", "p50 ms", "p99 ms", "cpu µs/msg", "kernel %", "RSS MB", "resumed %", "client µs"]);
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
      r.resumedShare === undefined ? "-" : (r.resumedShare * 100).toFixed(0),
      r.clientCpuPerMessageUs.toFixed(0),
    ]);
  }
  const find = (name: string, mode: Mode) => results.find((r) => r.name === name && r.mode === mode);
  const figure = (name: string, value: number | undefined, unit: string, digits = 0) => {
    if (value !== undefined && Number.isFinite(value)) console.log(`figure ${name} ${value.toFixed(digits)} ${unit}`);
  };
  const rate = (name: string, mode: Mode) => find(name, mode)?.rate;
  const cpu = (name: string, mode: Mode) => find(name, mode)?.cpuPerMessageUs;
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a / b);
  const addedP99 = (name: string) => {
    const [path, direct] = [find(name, "pooled"), find("direct", "pooled")];
    return path && direct ? path.p99 - direct.p99 : undefined;
  };
  const relay = find("relay", "pooled");
  if (results.some((r) => r.name === "postfix-bq"))
    console.log(
      "\npostfix-bq: the postfix instance with smtpd_proxy_filter = the sink, smtpd_proxy_options empty (streamed): the reply to " +
        "the final dot is the sink's and nothing is queued, as in the relay; unlike it, one plain SMTP connection to the next hop " +
        "per message (no pool, no TLS on that leg). postfix: the same, store-and-forward, rounds end when its queue is empty.",
    );
  console.log("");
  figure("relay_msgs_per_s", rate("relay", "pooled"), "msgs/s");
  figure("relay_per_connection_msgs_per_s", rate("relay", "per-message"), "msgs/s");
  figure("relay_resumed_msgs_per_s", rate("relay", "resumed"), "msgs/s");
  figure("direct_msgs_per_s", rate("direct", "pooled"), "msgs/s");
  figure("relay_vs_direct", ratio(rate("relay", "pooled"), rate("direct", "pooled")), "ratio", 2);
  if (relay && find("direct", "pooled")) figure("relay_added_p50", relay.p50 - find("direct", "pooled")!.p50, "ms", 2);
  figure("relay_added_p99", addedP99("relay"), "ms", 2);
  figure("relay_cpu_per_message", cpu("relay", "pooled"), "us");
  figure("relay_per_connection_cpu_per_message", cpu("relay", "per-message"), "us");
  figure("relay_resumed_cpu_per_message", cpu("relay", "resumed"), "us");
  figure("relay_cpu_kernel_share", relay?.cpuSystemShare === undefined ? undefined : relay.cpuSystemShare * 100, "%");
  figure("relay_rss", relay?.rssMb, "MB");
  // Each other path's own figures and the relay's ratio to it, mode by mode (a figure is left out where the path has no
  // such round: the prototype is pooled only, the direct path has no per-connection modes).
  const modes: [Mode, string][] = [
    ["pooled", ""],
    ["per-message", "_per_connection"],
    ["resumed", "_resumed"],
  ];
  for (const peer of ["baseline", "haraka", "postfix", "postfix-bq", "prototype"]) {
    if (!results.some((r) => r.name === peer)) continue;
    const p = peer.replace("-", "_");
    for (const [mode, suffix] of modes) {
      figure(`${p}${suffix}_msgs_per_s`, rate(peer, mode), "msgs/s");
      figure(`${p}${suffix}_cpu_per_message`, cpu(peer, mode), "us");
      figure(`relay_vs_${p}${suffix}`, ratio(rate("relay", mode), rate(peer, mode)), "ratio", 2);
      figure(`relay_vs_${p}${suffix}_cpu`, ratio(cpu("relay", mode), cpu(peer, mode)), "ratio", 2);
    }
    figure(`${p}_added_p99`, addedP99(peer), "ms", 2);
  }
  figure("prototype_vs_haraka", ratio(rate("prototype", "pooled"), rate("haraka", "pooled")), "ratio", 2);
}

await main();
