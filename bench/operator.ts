// `npm run bench:operator`: how fast the operator converges and how quiet it is
// afterwards, on the real local control plane, with the operator command under
// its chart RBAC (compiled, as the image runs it). Two shapes, each in a fresh namespace set:
//   small  1 namespace, 4 domains × 50 addresses (200 addresses)
//   large  20 namespaces, 1 domain × 50 addresses each (1,000 addresses)
//   huge   with --huge: 200 namespaces, 1 domain × 50 addresses each (10,000 addresses), then the
//          operator restarted among them (a cold list of everything) until it is quiet again
// First, on the empty cluster, what other teams' Secrets cost it: the operator's RSS
// with no unrelated Secret, then with 200 unrelated ~1 MB Secrets (Helm release
// Secrets look like this), watched as they are made and at a fresh start among them.
// Prints tables, then `figure <name> <value> <unit>` lines. BENCH_NODE_FLAGS passes
// flags to the operator process (e.g. heap limits) to compare memory settings;
// BENCH_OPERATOR runs another build of the operator (e.g. an older commit's
// dist/operator/main.js), and --secrets-only runs the first part alone.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { stringify } from "yaml";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { kubectl } from "../test/support/kube.js";
import { freePort, stopChild } from "../test/support/mail.js";
import { operatorKubeconfig } from "../test/support/operator-rbac.js";

const { values } = parseArgs({
  options: {
    idle: { type: "string", default: "60" },
    "secrets-only": { type: "boolean", default: false },
    huge: { type: "boolean", default: false },
  },
});
const idleSeconds = Number(values.idle);
const operatorMain = process.env.BENCH_OPERATOR ?? "dist/operator/main.js";
const unrelatedSecrets = 200;
// ~1 MB on the wire (base64), under the API server's 1.5 MB request limit.
const unrelatedBytes = 768 * 1024;

interface Shape {
  name: string;
  namespaces: number;
  domainsPerNamespace: number;
  addressesPerDomain: number;
}

function manifests(shape: Shape, run: string): object[] {
  const out: object[] = [];
  for (let n = 0; n < shape.namespaces; n++) {
    const namespace = `bench-${run}-${n}`;
    out.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } });
    out.push({ apiVersion: "v1", kind: "Secret", metadata: { name: "outbound", namespace }, stringData: { username: "u", password: "p" } });
    for (let d = 0; d < shape.domainsPerNamespace; d++) {
      const domain = `d${d}.${namespace}.example`;
      out.push({
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        metadata: { name: `d${d}`, namespace },
        spec: { domain, inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } }, relay: { replicas: 1 } },
      });
      for (let a = 0; a < shape.addressesPerDomain; a++) {
        out.push({
          apiVersion: "smtpconnector.dev/v1alpha1",
          kind: "SupportAddress",
          metadata: { name: `d${d}-a${a}`, namespace },
          spec: {
            address: `a${a}@${domain}`,
            domainRef: { name: `d${d}` },
            outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } },
          },
        });
      }
    }
  }
  return out;
}

async function converged(shape: Shape, run: string): Promise<boolean> {
  const domains = await kubectl([
    "get",
    "smtpdomains",
    "-A",
    "-l",
    "",
    "-o",
    'jsonpath={range .items[*]}{.metadata.namespace} {.status.addresses} {.status.observedGeneration}{"\\n"}{end}',
  ]);
  const mine = domains.stdout.split("\n").filter((l) => l.startsWith(`bench-${run}-`));
  if (mine.length !== shape.namespaces * shape.domainsPerNamespace) return false;
  if (!mine.every((l) => l.split(" ")[1] === String(shape.addressesPerDomain))) return false;
  const addresses = await kubectl([
    "get",
    "supportaddresses",
    "-A",
    "-o",
    'jsonpath={range .items[*]}{.metadata.namespace} {.status.observedGeneration}{"\\n"}{end}',
  ]);
  const done = addresses.stdout.split("\n").filter((l) => l.startsWith(`bench-${run}-`) && l.split(" ")[1] !== "");
  return done.length === shape.namespaces * shape.domainsPerNamespace * shape.addressesPerDomain;
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(
    text
      .split("\n")
      .find((l) => l.startsWith(`${name} `))
      ?.split(" ")[1] ?? NaN,
  );
}

/** The sum of a labelled metric's series (NaN when the operator does not have it: an older build). */
async function metricSum(port: number, name: string, filter = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const lines = text.split("\n").filter((l) => l.startsWith(`${name}{`) && l.includes(filter));
  return lines.length === 0 ? NaN : lines.reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

async function startOperator(): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean),
      operatorMain,
      "--kubeconfig",
      await operatorKubeconfig(),
      "--metrics-port",
      String(port),
      // No relay pod runs here, so nothing answers the operator's questions to a relay (last use, lockouts).
      // A closed loopback port refuses at once, as a relay with no ready pod does in a cluster; the default
      // URL names a cluster Service, and this machine's resolver would hold every such ask for seconds.
      "--relay-control-url",
      "https://127.0.0.1:9/{namespace}/{name}",
    ],
    {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, LOG_LEVEL: "warn" },
    },
  );
  for (
    let i = 0;
    i < 300 &&
    !(await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.ok,
      () => false,
    ));
    i++
  )
    await new Promise((r) => setTimeout(r, 200));
  return { child, port };
}

/** RSS once it has settled: three samples a second apart within 2 MB of each other (at most a minute). */
async function settledRss(pid: number): Promise<number> {
  const samples: number[] = [];
  const deadline = Date.now() + 60_000;
  for (;;) {
    samples.push(rssMb(pid));
    const last = samples.slice(-3);
    if ((last.length === 3 && Math.max(...last) - Math.min(...last) <= 2) || Date.now() > deadline) return Math.max(...last);
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** What 200 unrelated ~1 MB Secrets cost the operator's memory: watched as they arrive, and at a fresh start among them. */
async function secretsPhase(admin: k8s.CoreV1Api): Promise<{ none: number; watched: number; restarted: number }> {
  const first = await startOperator();
  let none: number;
  let watched: number;
  const namespace = "bench-unrelated-secrets";
  try {
    none = await settledRss(first.child.pid!);
    await admin.createNamespace({ body: { metadata: { name: namespace } } });
    for (let i = 0; i < unrelatedSecrets; i += 4) {
      await Promise.all(
        [0, 1, 2, 3].map((j) =>
          admin.createNamespacedSecret({
            namespace,
            body: {
              metadata: { name: `sh.helm.release.v1.app.v${i + j}`, labels: { owner: "helm", name: "app" } },
              type: "helm.sh/release.v1",
              data: { release: randomBytes(unrelatedBytes).toString("base64") },
            },
          }),
        ),
      );
    }
    // Seen: every one of them reached its cache (an older build has no such metric: its RSS settles instead).
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const known = await metricSum(first.port, "smtpc_operator_cached_secrets", 'form="metadata"');
      if (Number.isNaN(known) || known >= unrelatedSecrets) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    watched = await settledRss(first.child.pid!);
  } finally {
    await stopChild(first.child);
  }
  const second = await startOperator();
  let restarted: number;
  try {
    restarted = await settledRss(second.child.pid!);
  } finally {
    await stopChild(second.child);
  }
  await admin.deleteNamespace({ name: namespace });
  return { none, watched, restarted };
}

const rssMb = (pid: number) =>
  Number(
    readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .find((l) => l.startsWith("VmRSS:"))!
      .split(/\s+/)[1],
  ) / 1024;

async function main(): Promise<void> {
  const plane = await startControlPlane();
  process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
  const results: Record<string, number>[] = [];
  let restart: { seconds: number; writes: number; rssMb: number } | undefined;
  let available: { domains: number; idleWrites: number; idleRequestsPerSecond: number } | undefined;
  let secrets: Awaited<ReturnType<typeof secretsPhase>>;
  try {
    await installCRDs();
    const config = new k8s.KubeConfig();
    config.loadFromFile(plane.kubeconfig);
    secrets = await secretsPhase(config.makeApiClient(k8s.CoreV1Api));
    console.log(["unrelated Secrets", "RSS MB"].map((c) => c.padStart(28)).join(""));
    console.log(["none", secrets.none.toFixed(0)].map((c) => c.padStart(28)).join(""));
    console.log([`${unrelatedSecrets}, made while running`, secrets.watched.toFixed(0)].map((c) => c.padStart(28)).join(""));
    console.log([`${unrelatedSecrets}, at a fresh start`, secrets.restarted.toFixed(0)].map((c) => c.padStart(28)).join(""));
    const most = Math.max(secrets.watched, secrets.restarted);
    console.log("");
    console.log(`figure operator_rss_no_secrets ${secrets.none.toFixed(0)} MB`);
    console.log(`figure operator_rss_200_secrets ${most.toFixed(0)} MB`);
    console.log(`figure operator_rss_200_secrets_ratio ${(most / secrets.none).toFixed(2)} x`);
    if (values["secrets-only"]) return;
    console.log("");
    const { child: operator, port } = await startOperator();
    try {
      const shapes: Shape[] = [
        { name: "small", namespaces: 1, domainsPerNamespace: 4, addressesPerDomain: 50 },
        { name: "large", namespaces: 20, domainsPerNamespace: 1, addressesPerDomain: 50 },
        ...(values.huge ? [{ name: "huge", namespaces: 200, domainsPerNamespace: 1, addressesPerDomain: 50 }] : []),
      ];
      for (const [i, shape] of shapes.entries()) {
        const run = `${i}`;
        const objects = manifests(shape, run);
        const writesBefore = await metric(port, "smtpc_operator_api_writes");
        const started = Date.now();
        const applied = await kubectl(["apply", "--server-side", "-f", "-"], { input: objects.map((o) => stringify(o)).join("---\n") });
        if (applied.code !== 0) throw new Error(applied.stderr);
        // Each look lists every address in full (jsonpath is applied by kubectl): at 10,000 that is tens of MB
        // the API server encodes, so the huge shape looks every 2 s, not taking the apiserver's CPU from the
        // operator it measures. The figure is the operator's last write (quiet() below), not the look.
        const pollMs = shape.namespaces * shape.addressesPerDomain > 2_000 ? 2_000 : 250;
        while (!(await converged(shape, run))) {
          if (Date.now() - started > 600_000) throw new Error(`${shape.name}: not converged after 10 minutes`);
          await new Promise((r) => setTimeout(r, pollMs));
        }
        // Every status is there; converged means the operator has also stopped writing (3 s without a write).
        const lastChange = await quiet(port);
        const seconds = (lastChange - started) / 1000;
        const writes = (await metric(port, "smtpc_operator_api_writes")) - writesBefore;
        const idleBefore = await metric(port, "smtpc_operator_api_writes");
        const requestsBefore = await metricSum(port, "smtpc_operator_api_requests");
        await new Promise((r) => setTimeout(r, idleSeconds * 1000));
        const idleWrites = (await metric(port, "smtpc_operator_api_writes")) - idleBefore;
        const idleRequestsPerSecond = ((await metricSum(port, "smtpc_operator_api_requests")) - requestsBefore) / idleSeconds;
        const custom = shape.namespaces * shape.domainsPerNamespace * (1 + shape.addressesPerDomain);
        results.push({
          domains: shape.namespaces * shape.domainsPerNamespace,
          addresses: custom - shape.namespaces * shape.domainsPerNamespace,
          seconds,
          writes,
          writesPerObject: writes / custom,
          idleWrites,
          idleRequestsPerSecond,
          rssMb: rssMb(operator.pid!),
        });
      }
      available = await idleWithRelaysAvailable(port);
    } finally {
      await stopChild(operator);
    }
    if (values.huge) restart = await restartAmongEverything();
  } finally {
    await plane.stop();
  }
  if (results.length === 0) return;
  console.log(
    ["shape", "addresses", "converge s", "writes", "writes/object", `idle ${idleSeconds}s writes`, "idle requests/s", "RSS MB"]
      .map((c) => c.padStart(16))
      .join(""),
  );
  for (const [i, r] of results.entries()) {
    console.log(
      [
        ["small", "large", "huge"][i],
        r.addresses,
        r.seconds!.toFixed(1),
        r.writes,
        r.writesPerObject!.toFixed(2),
        r.idleWrites,
        r.idleRequestsPerSecond!.toFixed(2),
        r.rssMb!.toFixed(0),
      ]
        .map((c) => String(c).padStart(16))
        .join(""),
    );
  }
  const [small, large] = results as [Record<string, number>, Record<string, number>];
  console.log("");
  console.log(`figure converge_200_addresses ${small.seconds!.toFixed(1)} s`);
  console.log(`figure converge_1000_addresses ${large.seconds!.toFixed(1)} s`);
  console.log(`figure writes_per_object ${large.writesPerObject!.toFixed(2)} writes`);
  console.log(`figure idle_writes ${small.idleWrites! + large.idleWrites!} writes`);
  console.log(`figure operator_rss ${Math.max(small.rssMb!, large.rssMb!).toFixed(0)} MB`);
  console.log(`figure idle_api_requests_per_second_4_domains ${small.idleRequestsPerSecond!.toFixed(2)} requests/s`);
  console.log(`figure idle_api_requests_per_second_20_domains ${large.idleRequestsPerSecond!.toFixed(2)} requests/s`);
  if (available) {
    console.log(`figure idle_writes_${available.domains}_domains_relays_available ${available.idleWrites} writes`);
    console.log(
      `figure idle_api_requests_per_second_${available.domains}_domains_relays_available ${available.idleRequestsPerSecond.toFixed(2)} requests/s`,
    );
  }
  const huge = results[2];
  if (huge && restart) {
    console.log(`figure converge_10000_addresses ${huge.seconds!.toFixed(1)} s`);
    console.log(`figure operator_rss_10000_addresses ${huge.rssMb!.toFixed(0)} MB`);
    console.log(`figure idle_writes_10000_addresses ${huge.idleWrites} writes`);
    console.log(`figure idle_api_requests_per_second_10000_addresses ${huge.idleRequestsPerSecond!.toFixed(2)} requests/s`);
    console.log(`figure restart_converge_10000_addresses ${restart.seconds.toFixed(1)} s`);
    console.log(`figure restart_writes_10000_addresses ${restart.writes} writes`);
    console.log(`figure restart_rss_10000_addresses ${restart.rssMb.toFixed(0)} MB`);
  }
}

/** When the operator stopped writing: the time of its last write once 3 s passed without one (now, if none came). */
/**
 * 100 domains whose relays are available, at idle: the steady state of a real installation, where an available
 * domain is looked at again (its relays asked for last use) every 30 s. The bench's control plane has no node (no
 * kubelet, no Deployment controller), so each relay Deployment's status is written here as the Deployment
 * controller writes it once its pod is Ready, which is what the operator reads for RelayAvailable. No relay pod
 * exists, so the EndpointSlices are empty and no last-use poll reaches a relay: the figure is the operator's own
 * API requests.
 */
async function idleWithRelaysAvailable(port: number): Promise<{ domains: number; idleWrites: number; idleRequestsPerSecond: number }> {
  const shape: Shape = { name: "available", namespaces: 100, domainsPerNamespace: 1, addressesPerDomain: 1 };
  const run = "avail";
  const applied = await kubectl(["apply", "--server-side", "-f", "-"], {
    input: manifests(shape, run)
      .map((o) => stringify(o))
      .join("---\n"),
  });
  if (applied.code !== 0) throw new Error(applied.stderr);
  const started = Date.now();
  while (!(await converged(shape, run))) {
    if (Date.now() - started > 600_000) throw new Error("available: not converged after 10 minutes");
    await new Promise((r) => setTimeout(r, 500));
  }
  const listed = await kubectl([
    "get",
    "deployments",
    "-A",
    "-o",
    'jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name} {.metadata.generation}{"\\n"}{end}',
  ]);
  const deployments = listed.stdout
    .split("\n")
    .filter((l) => l.startsWith(`bench-${run}-`))
    .map((l) => l.split(" ") as [string, string, string]);
  if (deployments.length !== shape.namespaces)
    throw new Error(`available: ${deployments.length} relay Deployments, not ${shape.namespaces}`);
  const now = new Date().toISOString();
  for (let i = 0; i < deployments.length; i += 10) {
    await Promise.all(
      deployments.slice(i, i + 10).map(async ([namespace, name, generation]) => {
        const status = {
          observedGeneration: Number(generation),
          replicas: 1,
          updatedReplicas: 1,
          readyReplicas: 1,
          availableReplicas: 1,
          conditions: [
            {
              type: "Available",
              status: "True",
              reason: "MinimumReplicasAvailable",
              message: "Deployment has minimum availability.",
              lastTransitionTime: now,
              lastUpdateTime: now,
            },
          ],
        };
        const patched = await kubectl([
          "-n",
          namespace,
          "patch",
          "deployment",
          name,
          "--subresource=status",
          "--type=merge",
          "-p",
          JSON.stringify({ status }),
        ]);
        if (patched.code !== 0) throw new Error(patched.stderr);
      }),
    );
  }
  for (;;) {
    const domains = await kubectl([
      "get",
      "smtpdomains",
      "-A",
      "-o",
      'jsonpath={range .items[*]}{.metadata.namespace} {.status.conditions[?(@.type=="RelayAvailable")].status}{"\\n"}{end}',
    ]);
    const mine = domains.stdout.split("\n").filter((l) => l.startsWith(`bench-${run}-`));
    if (mine.length === shape.namespaces && mine.every((l) => l.endsWith(" True"))) break;
    if (Date.now() - started > 600_000) throw new Error("available: RelayAvailable not True after 10 minutes");
    await new Promise((r) => setTimeout(r, 500));
  }
  await quiet(port);
  const writesBefore = await metric(port, "smtpc_operator_api_writes");
  const requestsBefore = await metricSum(port, "smtpc_operator_api_requests");
  await new Promise((r) => setTimeout(r, idleSeconds * 1000));
  return {
    domains: shape.namespaces,
    idleWrites: (await metric(port, "smtpc_operator_api_writes")) - writesBefore,
    idleRequestsPerSecond: ((await metricSum(port, "smtpc_operator_api_requests")) - requestsBefore) / idleSeconds,
  };
}

async function quiet(port: number): Promise<number> {
  let lastWrites = await metric(port, "smtpc_operator_api_writes");
  let lastChange = Date.now();
  let quietFrom = Date.now();
  while (Date.now() - quietFrom < 3_000) {
    await new Promise((r) => setTimeout(r, 250));
    const now = await metric(port, "smtpc_operator_api_writes");
    if (now !== lastWrites || (await metric(port, "smtpc_operator_queue_depth")) > 0) {
      if (now !== lastWrites) lastChange = Date.now();
      lastWrites = now;
      quietFrom = Date.now();
    }
  }
  return lastChange;
}

/**
 * A fresh operator among everything the shapes made (a restart or a failover at that size): from its start
 * until it is ready, its queue is empty and it has not written for 3 s. Level-based, it should find nothing
 * to write.
 */
async function restartAmongEverything(): Promise<{ seconds: number; writes: number; rssMb: number }> {
  const started = Date.now();
  const { child, port } = await startOperator();
  try {
    const ready = Date.now();
    const last = await quiet(port);
    return {
      seconds: (Math.max(last, ready) - started) / 1000,
      writes: await metric(port, "smtpc_operator_api_writes"),
      rssMb: rssMb(child.pid!),
    };
  } finally {
    await stopChild(child);
  }
}

await main();
