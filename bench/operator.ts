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
// The objects are made as a GitOps tool or script makes them, with concurrent server-side applies
// (--apply-concurrency, 16), and the resources' status is followed with a watch, not by listing them;
// each shape reports both the time from its first object to the operator's last write and the time from
// its last object to it (what the operator adds to the time the objects take to be made).
// --addresses N runs one shape of N addresses (50 per namespace) and the restart alone, for quick
// experiments; BENCH_HEAP_SNAPSHOTS=<dir> has the operator write a heap snapshot after each.
// Prints tables, then `figure <name> <value> <unit>` lines. BENCH_NODE_FLAGS passes
// flags to the operator process (e.g. heap limits) to compare memory settings;
// BENCH_OPERATOR runs another build of the operator (e.g. an older commit's
// dist/operator/main.js), and --secrets-only runs the first part alone.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { kubectl } from "../test/support/kube.js";
import { freePort, stopChild } from "../test/support/mail.js";
import { operatorKubeconfig } from "../test/support/operator-rbac.js";
import { clusterAccess, request, type ClusterAccess } from "../operator/kube/access.js";
import { supervisedInformer, type SupervisedInformer } from "../operator/kube/informer.js";
import type { SmtpDomain, SupportAddress } from "../crds/schema.js";
import { createLogger } from "../lib/log.js";
import { cpuSeconds, descendantCpuSeconds } from "./proc.js";

const { values } = parseArgs({
  options: {
    idle: { type: "string", default: "60" },
    "secrets-only": { type: "boolean", default: false },
    huge: { type: "boolean", default: false },
    // One shape of this many addresses (50 per namespace, one domain each) and a restart among it, alone:
    // the quick experiment (e.g. --addresses 2000) between the full runs.
    addresses: { type: "string" },
    "apply-concurrency": { type: "string", default: "16" },
  },
});
const applyConcurrency = Number(values["apply-concurrency"]);
// BENCH_HEAP_SNAPSHOTS=<dir>: a heap snapshot of the operator there after each shape has converged and idled,
// and after the restart (what it keeps; open them in Chrome DevTools' Memory tab).
const heapSnapshots = process.env.BENCH_HEAP_SNAPSHOTS;
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

/** The bench's own view of the resources' status: a watch (a full list every look would load the API server it measures). */
let domainsSeen: SupervisedInformer<SmtpDomain & k8s.KubernetesObject>;
let addressesSeen: SupervisedInformer<SupportAddress & k8s.KubernetesObject>;
const updatesSeen = { domains: 0, addresses: 0 };

async function watchResources(admin: ClusterAccess): Promise<void> {
  const log = createLogger("bench");
  const api = "/apis/smtpconnector.dev/v1alpha1";
  // Every update the watch tells is a write of an existing object: the bench only creates them, so these are the
  // operator's (status, and a domain's finalizer), per object converging (a relist's changes are not counted).
  const count = (kind: keyof typeof updatesSeen) => (_: unknown, event: string) => {
    if (event === "update") updatesSeen[kind]++;
  };
  domainsSeen = supervisedInformer<SmtpDomain & k8s.KubernetesObject>(admin, `${api}/smtpdomains`, { onChange: count("domains"), log });
  addressesSeen = supervisedInformer<SupportAddress & k8s.KubernetesObject>(admin, `${api}/supportaddresses`, {
    onChange: count("addresses"),
    log,
  });
  await Promise.all([domainsSeen.start(), addressesSeen.start()]);
}

function converged(shape: Shape, run: string): boolean {
  const prefix = `bench-${run}-`;
  const domains = domainsSeen.list().filter((d) => d.metadata.namespace?.startsWith(prefix));
  if (domains.length !== shape.namespaces * shape.domainsPerNamespace) return false;
  if (!domains.every((d) => d.status?.addresses === shape.addressesPerDomain && d.status.observedGeneration !== undefined)) return false;
  const done = addressesSeen.list().filter((a) => a.metadata.namespace?.startsWith(prefix) && a.status?.observedGeneration !== undefined);
  return done.length === shape.namespaces * shape.domainsPerNamespace * shape.addressesPerDomain;
}

async function metric(port: number, name: string): Promise<number> {
  // That metric alone (an older build ignores the query and sends them all).
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics?name=${name}`)).text();
  return Number(
    text
      .split("\n")
      .find((l) => l.startsWith(`${name} `))
      ?.split(" ")[1] ?? NaN,
  );
}

/** The sum of a labelled metric's series (NaN when the operator does not have it: an older build). */
async function metricSum(port: number, name: string, filter = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics?name=${name}`)).text();
  const lines = text.split("\n").filter((l) => l.startsWith(`${name}{`) && l.includes(filter));
  return lines.length === 0 ? NaN : lines.reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

/** A labelled metric's series by that one label's value (empty: a build without the metric). */
async function metricByLabel(port: number, name: string, label: string): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics?name=${name}`)).text();
  const series = new RegExp(`^${name}\\{${label}="([A-Za-z]+)"\\} (\\d+)`);
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = series.exec(line);
    if (match) out.set(match[1]!, Number(match[2]));
  }
  return out;
}

/** Events dropped since start, by why (empty: a build without the Event queue). */
const eventDrops = (port: number) => metricByLabel(port, "smtpc_operator_events_dropped_total", "why");

/**
 * The operator's Event queue (waiting and being written), read every 250 ms from now: `drained()` waits until it
 * is empty and says when it last was not, and the most it held (NaN both: a build without the gauge).
 */
function sampleEventQueue(port: number): { drained: () => Promise<{ drainedAt: number; peak: number }> } {
  let peak = 0;
  let busyAt = Date.now();
  let empty = false;
  let missing = false;
  let stop = false;
  const sampling = (async () => {
    while (!stop || !empty) {
      const unwritten = await metric(port, "smtpc_operator_events_unwritten");
      if (Number.isNaN(unwritten)) {
        missing = true;
        return;
      }
      peak = Math.max(peak, unwritten);
      empty = unwritten === 0;
      if (!empty) busyAt = Date.now();
      else if (stop) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return {
    drained: async () => {
      stop = true;
      await sampling;
      return missing ? { drainedAt: NaN, peak: NaN } : { drainedAt: busyAt, peak };
    },
  };
}

/** The operator's API requests since start, by verb. */
const requestsByVerb = (port: number) => metricByLabel(port, "smtpc_operator_api_requests", "verb");

async function startOperator(): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean),
      ...(heapSnapshots ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${heapSnapshots}`] : []),
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

/** Where an object of the bench's manifests is applied (server-side apply: PATCH to its own path). */
function pathOf(o: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): string {
  const { name, namespace } = o.metadata;
  if (o.kind === "Namespace") return `/api/v1/namespaces/${name}`;
  const base = o.apiVersion === "v1" ? "/api/v1" : `/apis/${o.apiVersion}`;
  const plural = { Secret: "secrets", SmtpDomain: "smtpdomains", SupportAddress: "supportaddresses" }[o.kind];
  if (!plural) throw new Error(`bench: no path for kind ${o.kind}`);
  return `${base}/namespaces/${namespace}/${plural}/${name}`;
}

/**
 * Creates the objects as a GitOps controller or a script would: server-side apply, `applyConcurrency` requests
 * in flight (kubectl apply sends one at a time, and at 10,400 objects its 76 s were most of what the converge
 * figure measured). Namespaces first, then the rest in order (a domain before its addresses). Resolves to when the
 * last object was created.
 */
async function apply(admin: ClusterAccess, objects: object[]): Promise<number> {
  type Manifest = Parameters<typeof pathOf>[0];
  const all = objects as Manifest[];
  for (const batch of [all.filter((o) => o.kind === "Namespace"), all.filter((o) => o.kind !== "Namespace")]) {
    let next = 0;
    await Promise.all(
      Array.from({ length: applyConcurrency }, async () => {
        for (let i = next++; i < batch.length; i = next++) {
          const object = batch[i]!;
          const response = await request(admin, "PATCH", `${pathOf(object)}?fieldManager=bench&force=true`, JSON.stringify(object));
          if (response.status >= 300) throw new Error(`apply ${pathOf(object)}: HTTP ${response.status}: ${response.body.slice(0, 300)}`);
        }
      }),
    );
  }
  return Date.now();
}

/** Has the operator write a heap snapshot (with BENCH_HEAP_SNAPSHOTS) and waits until it is written. */
async function heapSnapshot(pid: number): Promise<void> {
  if (!heapSnapshots) return;
  const snapshots = () => readdirSync(heapSnapshots).filter((f) => f.endsWith(".heapsnapshot"));
  const before = new Set(snapshots());
  process.kill(pid, "SIGUSR2");
  const deadline = Date.now() + 120_000;
  let size = -1;
  for (;;) {
    await new Promise((r) => setTimeout(r, 1_000));
    const file = snapshots().find((f) => !before.has(f));
    const now = file ? statSync(`${heapSnapshots}/${file}`).size : -1;
    if ((file && now === size && now > 0) || Date.now() > deadline) {
      console.error(`heap snapshot: ${file ? `${heapSnapshots}/${file}` : "none written"}`);
      return;
    }
    size = now;
  }
}

/** A figure of /proc/<pid>/status in MB: VmRSS now, VmHWM the most it has had. */
const statusMb = (pid: number, field: "VmRSS" | "VmHWM") =>
  Number(
    readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .find((l) => l.startsWith(`${field}:`))!
      .split(/\s+/)[1],
  ) / 1024;
const rssMb = (pid: number) => statusMb(pid, "VmRSS");

/** RSS now and at its peak, and the V8 heap's share of it, for the log. */
async function memoryLine(port: number, pid: number): Promise<string> {
  const heap = await Promise.all(
    ["nodejs_heap_size_total_bytes", "nodejs_heap_size_used_bytes", "nodejs_external_memory_bytes"].map((m) =>
      metric(port, `smtpc_operator_process_${m}`),
    ),
  );
  const [total, used, external] = heap.map((b) => (b / 2 ** 20).toFixed(0));
  return (
    `RSS ${rssMb(pid).toFixed(0)} MB (peak ${statusMb(pid, "VmHWM").toFixed(0)} MB); ` +
    `V8 heap ${total} MB total, ${used} MB used; external ${external} MB`
  );
}

/** The first part: what 200 unrelated ~1 MB Secrets cost the operator's memory. */
async function secretsAndFigures(kubeconfig: string): Promise<void> {
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfig);
  const secrets = await secretsPhase(config.makeApiClient(k8s.CoreV1Api));
  console.log(["unrelated Secrets", "RSS MB"].map((c) => c.padStart(28)).join(""));
  console.log(["none", secrets.none.toFixed(0)].map((c) => c.padStart(28)).join(""));
  console.log([`${unrelatedSecrets}, made while running`, secrets.watched.toFixed(0)].map((c) => c.padStart(28)).join(""));
  console.log([`${unrelatedSecrets}, at a fresh start`, secrets.restarted.toFixed(0)].map((c) => c.padStart(28)).join(""));
  const most = Math.max(secrets.watched, secrets.restarted);
  console.log("");
  console.log(`figure operator_rss_no_secrets ${secrets.none.toFixed(0)} MB`);
  console.log(`figure operator_rss_200_secrets ${most.toFixed(0)} MB`);
  console.log(`figure operator_rss_200_secrets_ratio ${(most / secrets.none).toFixed(2)} x`);
  console.log("");
}

const custom = values.addresses ? Number(values.addresses) : undefined;

async function main(): Promise<void> {
  const plane = await startControlPlane();
  process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
  const results: Record<string, number>[] = [];
  let restart: { seconds: number; writes: number; rssMb: number } | undefined;
  let available: { domains: number; idleWrites: number; idleRequestsPerSecond: number } | undefined;
  try {
    await installCRDs();
    const admin = clusterAccess(plane.kubeconfig);
    await watchResources(admin);
    if (!custom) await secretsAndFigures(plane.kubeconfig);
    if (values["secrets-only"]) return;
    const { child: operator, port } = await startOperator();
    try {
      const shapes: Shape[] = custom
        ? [{ name: String(custom), namespaces: Math.ceil(custom / 50), domainsPerNamespace: 1, addressesPerDomain: 50 }]
        : [
            { name: "small", namespaces: 1, domainsPerNamespace: 4, addressesPerDomain: 50 },
            { name: "large", namespaces: 20, domainsPerNamespace: 1, addressesPerDomain: 50 },
            ...(values.huge ? [{ name: "huge", namespaces: 200, domainsPerNamespace: 1, addressesPerDomain: 50 }] : []),
          ];
      for (const [i, shape] of shapes.entries()) {
        const run = `${i}`;
        const objects = manifests(shape, run);
        const writesBefore = await metric(port, "smtpc_operator_api_writes");
        const started = Date.now();
        const cpuBefore = cpuSeconds(operator.pid!);
        const planeBefore = descendantCpuSeconds(operator.pid);
        const benchBefore = process.cpuUsage();
        const verbsBefore = await requestsByVerb(port);
        const updatesBefore = { ...updatesSeen };
        const dropsBefore = await eventDrops(port);
        const events = sampleEventQueue(port);
        const lastCreated = await apply(admin, objects);
        // The figure is the operator's last write (quiet() below), not this look.
        const pollMs = 250;
        while (!converged(shape, run)) {
          if (Date.now() - started > 600_000) throw new Error(`${shape.name}: not converged after 10 minutes`);
          await new Promise((r) => setTimeout(r, pollMs));
        }
        // Every status is there; converged means the operator has also stopped writing (3 s without a write).
        const lastChange = await quiet(port);
        const seconds = (lastChange - started) / 1000;
        const afterLast = Math.max(0, lastChange - lastCreated) / 1000;
        const operatorCpu = cpuSeconds(operator.pid!) - cpuBefore;
        const convergedRss = rssMb(operator.pid!);
        const planeCpu = descendantCpuSeconds(operator.pid) - planeBefore;
        const benchCpu = process.cpuUsage(benchBefore);
        const verbs = await requestsByVerb(port);
        console.error(`${shape.name}: ${await memoryLine(port, operator.pid!)}`);
        console.error(
          `${shape.name}: CPU while converging: operator ${operatorCpu.toFixed(1)} s, control plane ${planeCpu.toFixed(1)} s, ` +
            `bench ${((benchCpu.user + benchCpu.system) / 1e6).toFixed(1)} s; operator requests: ` +
            [...verbs].map(([verb, n]) => `${verb} ${n - (verbsBefore.get(verb) ?? 0)}`).join(", "),
        );
        const writes = (await metric(port, "smtpc_operator_api_writes")) - writesBefore;
        const domainCount = shape.namespaces * shape.domainsPerNamespace;
        const domainUpdates = (updatesSeen.domains - updatesBefore.domains) / domainCount;
        const addressUpdates = (updatesSeen.addresses - updatesBefore.addresses) / (domainCount * shape.addressesPerDomain);
        console.error(
          `${shape.name}: updates per object seen by watch while converging: domain ${domainUpdates.toFixed(2)}, address ${addressUpdates.toFixed(2)}`,
        );
        // The Events told while converging are written after it, off the reconciles' path: how much later the
        // queue is empty (0 when it was before the last write). Idle starts once it is, so it counts no Event.
        const { drainedAt, peak } = await events.drained();
        const eventsDrainedAfter = Math.max(0, drainedAt - lastChange) / 1000;
        const idleBefore = await metric(port, "smtpc_operator_api_writes");
        const requestsBefore = await metricSum(port, "smtpc_operator_api_requests");
        await new Promise((r) => setTimeout(r, idleSeconds * 1000));
        const idleWrites = (await metric(port, "smtpc_operator_api_writes")) - idleBefore;
        const idleRequestsPerSecond = ((await metricSum(port, "smtpc_operator_api_requests")) - requestsBefore) / idleSeconds;
        // Events the queue had no room for, held back as spam, or could not write, by why (NaN: a build without the queue).
        const dropsAfter = await eventDrops(port);
        const dropped = Object.fromEntries(
          [...new Set([...dropsBefore.keys(), ...dropsAfter.keys()])].map((why) => [
            `eventsDropped${why}`,
            (dropsAfter.get(why) ?? 0) - (dropsBefore.get(why) ?? 0),
          ]),
        );
        const eventsDropped = dropsAfter.size === 0 ? NaN : Object.values(dropped).reduce((a, b) => a + b, 0);
        const made = shape.namespaces * shape.domainsPerNamespace * (1 + shape.addressesPerDomain);
        results.push({
          domains: shape.namespaces * shape.domainsPerNamespace,
          addresses: made - shape.namespaces * shape.domainsPerNamespace,
          seconds,
          applySeconds: (lastCreated - started) / 1000,
          afterLast,
          operatorCpu,
          convergedRss,
          writes,
          writesPerObject: writes / made,
          idleWrites,
          idleRequestsPerSecond,
          eventsDropped,
          domainUpdates,
          addressUpdates,
          ...dropped,
          eventsDrainedAfter,
          eventsPeak: peak,
          rssMb: rssMb(operator.pid!),
        });
        await heapSnapshot(operator.pid!);
      }
      if (!custom) available = await idleWithRelaysAvailable(admin, port);
    } finally {
      await stopChild(operator);
    }
    if (values.huge || custom) restart = await restartAmongEverything();
  } finally {
    await Promise.all([domainsSeen?.stop(), addressesSeen?.stop()]);
    await plane.stop();
  }
  if (results.length === 0) return;
  const names = custom ? [String(custom)] : ["small", "large", "huge"];
  console.log(
    [
      "shape",
      "addresses",
      "apply s",
      "converge s",
      "after last s",
      "operator CPU s",
      "writes",
      "writes/object",
      `idle ${idleSeconds}s writes`,
      "idle requests/s",
      "RSS conv. MB",
      "RSS idle MB",
    ]
      .map((c) => c.padStart(15))
      .join(""),
  );
  for (const [i, r] of results.entries()) {
    console.log(
      [
        names[i],
        r.addresses,
        r.applySeconds!.toFixed(1),
        r.seconds!.toFixed(1),
        r.afterLast!.toFixed(1),
        r.operatorCpu!.toFixed(1),
        r.writes,
        r.writesPerObject!.toFixed(2),
        r.idleWrites,
        r.idleRequestsPerSecond!.toFixed(2),
        r.convergedRss!.toFixed(0),
        r.rssMb!.toFixed(0),
      ]
        .map((c) => String(c).padStart(15))
        .join(""),
    );
  }
  console.log("");
  // converge_*: from the first object's creation until the operator's last write; converge_after_last_*: from the
  // last object's creation (what the operator itself adds to the time the objects take to be made).
  const bySize = (r: Record<string, number>, n: string) => {
    console.log(`figure converge_${n}_addresses ${r.seconds!.toFixed(1)} s`);
    console.log(`figure converge_after_last_object_${n}_addresses ${r.afterLast!.toFixed(1)} s`);
    console.log(`figure apply_${n}_addresses ${r.applySeconds!.toFixed(1)} s`);
    console.log(`figure operator_cpu_converge_${n}_addresses ${r.operatorCpu!.toFixed(1)} s`);
    console.log(`figure events_dropped_${n}_addresses ${r.eventsDropped} events`);
    console.log(`figure updates_per_domain_${n}_addresses ${r.domainUpdates!.toFixed(2)} writes`);
    console.log(`figure updates_per_address_${n}_addresses ${r.addressUpdates!.toFixed(2)} writes`);
    for (const [key, value] of Object.entries(r).filter(([key]) => key.startsWith("eventsDropped") && key !== "eventsDropped")) {
      const why = key
        .slice("eventsDropped".length)
        .replace(/(?<=[a-z])(?=[A-Z])/g, "_")
        .toLowerCase();
      console.log(`figure events_dropped_${why}_${n}_addresses ${value} events`);
    }
    console.log(`figure events_drained_after_converged_${n}_addresses ${r.eventsDrainedAfter!.toFixed(1)} s`);
    console.log(`figure events_queue_peak_${n}_addresses ${r.eventsPeak} events`);
  };
  if (custom) {
    const [only] = results as [Record<string, number>];
    bySize(only, String(custom));
    console.log(`figure operator_rss_${custom}_addresses ${only.rssMb!.toFixed(0)} MB`);
    console.log(`figure operator_rss_converged_${custom}_addresses ${only.convergedRss!.toFixed(0)} MB`);
    console.log(`figure idle_writes_${custom}_addresses ${only.idleWrites} writes`);
    console.log(`figure idle_api_requests_per_second_${custom}_addresses ${only.idleRequestsPerSecond!.toFixed(2)} requests/s`);
    if (restart) {
      console.log(`figure restart_converge_${custom}_addresses ${restart.seconds.toFixed(1)} s`);
      console.log(`figure restart_writes_${custom}_addresses ${restart.writes} writes`);
      console.log(`figure restart_rss_${custom}_addresses ${restart.rssMb.toFixed(0)} MB`);
    }
    return;
  }
  const [small, large] = results as [Record<string, number>, Record<string, number>];
  bySize(small, "200");
  bySize(large, "1000");
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
    bySize(huge, "10000");
    console.log(`figure operator_rss_10000_addresses ${huge.rssMb!.toFixed(0)} MB`);
    console.log(`figure operator_rss_converged_10000_addresses ${huge.convergedRss!.toFixed(0)} MB`);
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
async function idleWithRelaysAvailable(
  admin: ClusterAccess,
  port: number,
): Promise<{ domains: number; idleWrites: number; idleRequestsPerSecond: number }> {
  const shape: Shape = { name: "available", namespaces: 100, domainsPerNamespace: 1, addressesPerDomain: 1 };
  const run = "avail";
  await apply(admin, manifests(shape, run));
  const started = Date.now();
  while (!converged(shape, run)) {
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
    const mine = domainsSeen.list().filter((d) => d.metadata.namespace?.startsWith(`bench-${run}-`));
    const available = (d: SmtpDomain) => d.status?.conditions?.find((c) => c.type === "RelayAvailable")?.status === "True";
    if (mine.length === shape.namespaces && mine.every(available)) break;
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
    const result = {
      seconds: (Math.max(last, ready) - started) / 1000,
      writes: await metric(port, "smtpc_operator_api_writes"),
      rssMb: rssMb(child.pid!),
    };
    console.error(`restart: ${await memoryLine(port, child.pid!)}`);
    await heapSnapshot(child.pid!);
    return result;
  } finally {
    await stopChild(child);
  }
}

await main();
