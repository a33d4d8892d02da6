// `npm run bench:outbound`: outbound relay throughput with DKIM off and on,
// side by side in one run with the same load client:
//
//   direct      the helpdesk's client submitting straight to the customer's
//               Postfix (STARTTLS + SASL AUTH, sender login maps), the ceiling
//   relay       the same client into the relay's submission listener (STARTTLS
//               + AUTH), cut-through to that Postfix with the address's login:
//               unsigned, RSA-2048 signed, Ed25519 signed
//
// plus the signing cost on its own: CPU per 10 KB message for the relay's
// signing path (spool, body hash, signature), RSA-2048 and Ed25519.
// Postfix relays on to smtp-sink. Prints a table, then one
// `figure <name> <value> <unit>` line per figure.
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { parseArgs } from "node:util";
import { signatures, type SigningKey } from "../relay/outbound/dkim.js";
import { SigningSpool } from "../relay/outbound/spool.js";
import { spoolMemoryBytes } from "../relay/outbound/send.js";
import {
  freePort,
  randomPassword,
  relayConfig,
  selfSignedCertificate,
  sha256,
  startSmtpSink,
  stopChild,
  tempDir,
} from "../test/support/mail.js";
import { startSubmissionServer } from "../test/support/postfix.js";
import { startRelayProcess } from "../test/support/relay.js";
import { load, type Result, type Target } from "./load.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "10" },
    size: { type: "string", default: "10240" },
    signs: { type: "string", default: "2000" },
  },
});
const messages = Number(values.messages);
const options = {
  concurrency: Number(values.concurrency),
  body: `${"x".repeat(76)}\r\n`.repeat(Math.ceil(Number(values.size) / 78)).slice(0, Number(values.size)),
};
const domains = { plain: "plain.example", rsa: "rsa.example", ed25519: "ed.example" } as const;

const drain = (stream: Readable) =>
  new Promise<void>((resolve, reject) =>
    stream
      .pipe(new Writable({ write: (_chunk, _encoding, done) => done() }))
      .on("finish", resolve)
      .on("error", reject),
  );

/**
 * CPU that signing adds per message, in µs, measured in this process: the
 * signing path (spool, body hash, signatures, replay) minus the stream the
 * unsigned path runs anyway.
 */
async function signingCost(key: SigningKey, count: number): Promise<number> {
  const message = Buffer.from(
    `From: support@${key.domain}\r\nTo: customer@elsewhere.test\r\nSubject: bench\r\nMessage-ID: <x@bench.test>\r\n\r\n${options.body}`,
  );
  const unsigned = () => drain(Readable.from([message]));
  const signed = async () => {
    const spool = new SigningSpool({ memoryBytes: spoolMemoryBytes });
    await new Promise<void>((resolve, reject) => Readable.from([message]).pipe(spool).on("finish", resolve).on("error", reject));
    await drain(spool.replay(signatures([key], spool.fields(), spool.bodyHash.digest())));
    await spool.dispose();
  };
  const cpu = async (run: () => Promise<void>) => {
    for (let i = 0; i < 200; i++) await run(); // warm-up
    const before = process.cpuUsage();
    for (let i = 0; i < count; i++) await run();
    const used = process.cpuUsage(before);
    return (used.user + used.system) / count;
  };
  return (await cpu(signed)) - (await cpu(unsigned));
}

async function main(): Promise<void> {
  const dir = tempDir("bench-outbound");
  const sink = await startSmtpSink();
  const login = { username: "helpdesk@customer.example", password: randomPassword() };
  const postfix = await startSubmissionServer({
    relayTo: sink.port,
    users: [{ ...login, senders: Object.values(domains).map((d) => `support@${d}`) }],
  });
  const tls = await selfSignedCertificate(dir, "relay.bench");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const ed = generateKeyPairSync("ed25519").privateKey;
  writeFileSync(join(dir, "rsa.key"), rsa.export({ format: "pem", type: "pkcs8" }));
  writeFileSync(join(dir, "ed.key"), ed.export({ format: "pem", type: "pkcs8" }));
  writeFileSync(join(dir, "outbound.password"), login.password);
  const submission = { username: "helpdesk", password: randomPassword() };

  const config = await relayConfig({
    dir,
    tls,
    sinkPort: sink.port,
    domains: Object.values(domains).map((domain) => ({
      domain,
      addresses: [`support@${domain}`],
      credentials: [{ version: 1, username: `${domain}-v1`, password: randomPassword() }],
    })),
    limits: { maxConnections: 1000, maxMessageBytes: 1024 * 1024 },
  });
  config.listeners.submission = { port: await freePort() };
  config.outbound = { systemDomains: ["helpdesk.example"], unconnectedSenders: "Refuse" };
  for (const entry of config.domains) {
    entry.outbound = {
      // One submission login per domain, as the operator issues them.
      submission: [
        { version: 1, username: `${submission.username}-${entry.domain}`, passwordSha256: sha256(submission.password), state: "Active" },
      ],
      dkim:
        entry.domain === domains.rsa
          ? [{ selector: "bench", algorithm: "rsa-sha256", keyFile: "rsa.key" }]
          : entry.domain === domains.ed25519
            ? [{ selector: "bench", algorithm: "ed25519-sha256", keyFile: "ed.key" }]
            : [],
      senders: [
        {
          address: `support@${entry.domain}`,
          ready: true,
          server: {
            host: "127.0.0.1",
            port: postfix.port,
            tls: "StartTLS",
            caFile: postfix.certFile,
            username: login.username,
            passwordFile: "outbound.password",
          },
        },
      ],
    };
  }
  const { child: relay } = await startRelayProcess(config, dir);

  const to = "customer@elsewhere.test";
  const viaRelay = (name: string, domain: string): Target => ({
    name,
    port: config.listeners.submission!.port,
    tls: true,
    auth: { user: `${submission.username}-${domain}`, pass: submission.password },
    pid: relay.pid!,
    from: `support@${domain}`,
    to,
  });
  const targets: Target[] = [
    {
      name: "direct",
      port: postfix.port,
      tls: true,
      auth: { user: login.username, pass: login.password },
      from: `support@${domains.plain}`,
      to,
    },
    viaRelay("relay", domains.plain),
    viaRelay("relay-rsa", domains.rsa),
    viaRelay("relay-ed25519", domains.ed25519),
  ];
  const results: Result[] = [];
  let rsaCost = 0;
  let edCost = 0;
  try {
    for (const target of targets) await load(target, "pooled", Math.min(200, messages), options); // warm-up
    // Interleaved rounds, so a slow spell on a noisy machine hits every path alike.
    const rounds = 2;
    for (let round = 0; round < rounds; round++) {
      for (const target of targets) results.push(await load(target, "pooled", Math.ceil(messages / rounds), options));
    }
    rsaCost = await signingCost({ domain: domains.rsa, selector: "bench", algorithm: "rsa-sha256", key: rsa }, Number(values.signs));
    edCost = await signingCost({ domain: domains.ed25519, selector: "bench", algorithm: "ed25519-sha256", key: ed }, Number(values.signs));
  } finally {
    await stopChild(relay);
    await postfix.stop();
    await sink.stop();
  }
  report(results, rsaCost, edCost);
}

function report(all: Result[], rsaCost: number, edCost: number): void {
  const merged = new Map<string, Result>();
  for (const r of all) {
    const m = merged.get(r.name);
    if (!m) merged.set(r.name, { ...r });
    else {
      m.messages += r.messages;
      m.failed += r.failed;
      m.seconds += r.seconds;
      m.rate = m.messages / m.seconds;
      m.p50 = Math.max(m.p50, r.p50);
      m.p99 = Math.max(m.p99, r.p99);
      if (r.cpuPerMessageUs !== undefined) m.cpuPerMessageUs = ((m.cpuPerMessageUs ?? 0) + r.cpuPerMessageUs) / 2;
      if (r.rssMb !== undefined) m.rssMb = Math.max(m.rssMb ?? 0, r.rssMb);
    }
  }
  const row = (cells: (string | number)[]) => console.log(cells.map((c) => String(c).padStart(14)).join(""));
  row(["path", "msgs", "failed", "msgs/s", "p50 ms", "p99 ms", "cpu µs/msg", "RSS MB"]);
  for (const r of merged.values()) {
    row([
      r.name,
      r.messages,
      r.failed,
      r.rate.toFixed(0),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      r.cpuPerMessageUs?.toFixed(0) ?? "-",
      r.rssMb?.toFixed(0) ?? "-",
    ]);
  }
  const get = (name: string) => merged.get(name)!;
  console.log("");
  console.log(
    `CPU that signing adds per ${values.size}-byte message (in process): RSA-2048 ${rsaCost.toFixed(0)} µs, Ed25519 ${edCost.toFixed(0)} µs`,
  );
  console.log("");
  console.log(`figure direct_msgs_per_s ${get("direct").rate.toFixed(0)} msgs/s`);
  console.log(`figure relay_msgs_per_s ${get("relay").rate.toFixed(0)} msgs/s`);
  console.log(`figure relay_rsa_msgs_per_s ${get("relay-rsa").rate.toFixed(0)} msgs/s`);
  console.log(`figure relay_ed25519_msgs_per_s ${get("relay-ed25519").rate.toFixed(0)} msgs/s`);
  console.log(`figure relay_vs_direct ${(get("relay").rate / get("direct").rate).toFixed(2)} ratio`);
  console.log(`figure relay_rsa_vs_direct ${(get("relay-rsa").rate / get("direct").rate).toFixed(2)} ratio`);
  console.log(`figure relay_cpu_per_message ${get("relay").cpuPerMessageUs!.toFixed(0)} us`);
  console.log(`figure rsa_signing_cpu_per_message ${(rsaCost / 1000).toFixed(2)} ms`);
  console.log(`figure ed25519_signing_cpu_per_message ${(edCost / 1000).toFixed(3)} ms`);
  console.log(
    `figure relay_rsa_added_cpu_per_message ${((get("relay-rsa").cpuPerMessageUs! - get("relay").cpuPerMessageUs!) / 1000).toFixed(2)} ms`,
  );
  console.log(`figure relay_rss ${Math.max(...[...merged.values()].map((r) => r.rssMb ?? 0)).toFixed(0)} MB`);
  if ([...merged.values()].some((r) => r.failed > 0)) process.exitCode = 1;
}

await main();
