// `bash hack/node.sh --import tsx bench/api-request-cost.ts [--count N]`: what each kind of request the operator
// makes while 10,000 addresses converge costs the API server and etcd, in CPU milliseconds per request, on the
// local control plane. `bench:operator` shows that the control plane's CPU is what convergence waits for; this says
// which requests spend it, and why a status write costs several Events: the same write side by side, one run, to
// the SupportAddress CRD and to copies of it (no CEL rules; no descriptions; no status validations; an open status;
// no schema at all), unchanged (a no-op), smaller, with watchers, and the same bytes in a ConfigMap (a built-in
// kind, stored as protobuf). N objects of each
// (made first, their creation counted too), 8 requests in flight as the operator's queue sends them. Prints
// `figure api_cpu_ms_per_<kind> <ms> ms` (kube-apiserver, etcd and kube-controller-manager together; the split is on
// stderr and in `figure api_cpu_ms_per_<kind>_<process>`), and the objects' sizes.
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { apiUrl, clusterAccess, type ClusterAccess } from "../operator/kube/access.js";
import { descendantCpuByName } from "./proc.js";

// --pprof DIR: a 5 s CPU profile of kube-apiserver (its /debug/pprof) at the start of each status write kind, to
// DIR/<kind>.pprof (`go tool pprof -top DIR/<kind>.pprof`). Sampling adds a little (not measured) to their CPU.
const { values } = parseArgs({ options: { count: { type: "string", default: "2000" }, pprof: { type: "string" } } });
const count = Number(values.count);
const namespace = "cost";
const group = "smtpconnector.dev";
const probeGroup = "cost.example";
const collection = (apiGroup: string, plural: string) => `/apis/${apiGroup}/v1alpha1/namespaces/${namespace}/${plural}`;
const api = collection(group, "supportaddresses");

const contentTypes: Record<string, string> = {
  APPLY: "application/apply-patch+yaml",
  MERGE: "application/merge-patch+json",
  POST: "application/json",
};

/** One request, with the content type its kind needs (APPLY and MERGE are PATCHes); resolves to the body. */
async function send(access: ClusterAccess, kind: string, path: string, body?: string): Promise<string> {
  const { agent, token } = await access.credentials();
  const method = kind === "APPLY" || kind === "MERGE" ? "PATCH" : kind;
  const contentType = contentTypes[kind];
  return new Promise<string>((resolve, reject) => {
    const req = https.request(
      apiUrl(access.server, path),
      {
        method,
        agent,
        headers: {
          accept: "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined && contentType ? { "content-type": contentType, "content-length": Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () =>
          (res.statusCode ?? 0) >= 300
            ? reject(new Error(`${kind} ${path}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`))
            : resolve(text),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** kube-apiserver's CPU profile over the next `seconds`, written to `file`. */
async function profile(access: ClusterAccess, seconds: number, file: string): Promise<void> {
  const { agent, token } = await access.credentials();
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const req = https.request(apiUrl(access.server, `/debug/pprof/profile?seconds=${seconds}`), {
      agent,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    req.on("response", (res) => {
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => ((res.statusCode ?? 0) === 200 ? resolve() : reject(new Error(`pprof: HTTP ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
  writeFileSync(file, Buffer.concat(chunks));
}

/** A watch that reads and drops every event (another client following the resource); stop() ends it. */
async function watcher(access: ClusterAccess, path: string): Promise<{ stop(): void; events(): number }> {
  const { agent, token } = await access.credentials();
  let events = 0;
  const req = https.request(apiUrl(access.server, `${path}?watch=1&allowWatchBookmarks=true`), {
    agent,
    headers: { accept: "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
  await new Promise<void>((resolve, reject) => {
    req.on("response", (res) => {
      res.setEncoding("utf8");
      res.on("data", (c: string) => (events += c.split("\n").length - 1));
      res.on("error", () => undefined);
      resolve();
    });
    req.on("error", reject);
    req.end();
  });
  return { stop: () => req.destroy(), events: () => events };
}

/** `count` requests, 8 in flight (the operator's queue runs 8 reconciles at once). */
async function each(access: ClusterAccess, make: (i: number) => [kind: string, path: string, body?: string]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = next++; i < count; i = next++) await send(access, ...make(i));
    }),
  );
}

const condition = (type: string, status: string, reason: string, message: string) => ({
  type,
  status,
  reason,
  message,
  observedGeneration: 1,
  lastTransitionTime: "2026-12-01T23:00:00Z",
});
// As the operator writes a new address's status while its domain's relay is not up yet.
const status = (i: number) => ({
  observedGeneration: 1,
  conditions: [
    condition("DomainReady", "False", "DomainNotReady", `SmtpDomain d0 is not Ready: the relay has no available replica yet (${i % 7})`),
    condition("InboundVerified", "Unknown", "VerificationPending", "no verification has completed yet"),
    condition("OutboundVerified", "Unknown", "VerificationPending", "no verification has completed yet"),
    condition("Ready", "False", "DomainNotReady", `SmtpDomain d0 is not Ready: the relay has no available replica yet (${i % 7})`),
    condition("Reconciling", "True", "Progressing", "SmtpDomain d0 is not Ready"),
  ],
});
// The same conditions with messages of a few characters: what the status's size costs.
const shortStatus = (i: number) => ({
  observedGeneration: 1,
  conditions: status(i).conditions.map((c) => ({ ...c, message: `m${i % 7}` })),
});
// One condition only.
const oneCondition = (i: number) => ({ observedGeneration: 1, conditions: [status(i).conditions[3]!] });

interface Resource {
  name: string;
  apiGroup: string;
  plural: string;
  kind: string;
}
const addresses: Resource = { name: "supportaddress", apiGroup: group, plural: "supportaddresses", kind: "SupportAddress" };

const object = (r: Resource, i: number) => ({
  apiVersion: `${r.apiGroup}/v1alpha1`,
  kind: r.kind,
  metadata: { name: `a${i}`, namespace },
  spec: {
    address: `a${i}@cost.example`,
    domainRef: { name: "d0" },
    outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } },
  },
});
const statusApply = (r: Resource, body: (i: number) => unknown) => (i: number) =>
  [
    "APPLY",
    `${collection(r.apiGroup, r.plural)}/a${i}/status?fieldManager=smtp-connector&force=true`,
    JSON.stringify({ ...object(r, i), spec: undefined, status: body(i) }),
  ] as [string, string, string];

type Schema = { [key: string]: unknown };
/** A copy of `schema` without the keys `drop` names, at any depth. */
function without(schema: unknown, drop: string): unknown {
  if (Array.isArray(schema)) return schema.map((s) => without(s, drop));
  if (typeof schema !== "object" || schema === null) return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([k]) => k !== drop)
      .map(([k, v]) => [k, without(v, drop)]),
  );
}

/** Copies of the SupportAddress CRD in another group: the same schema, and the schema with parts left out. */
function probeCRDs(): { resource: Resource; crd: object }[] {
  const source = parse(readFileSync(new URL("../crds/smtpconnector.dev_supportaddresses.yaml", import.meta.url), "utf8")) as {
    spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } & Schema;
  };
  const full = source.spec.versions[0]!.schema.openAPIV3Schema;
  const open = { type: "object", "x-kubernetes-preserve-unknown-fields": true };
  const bare: Schema = { type: "object", properties: { spec: open, status: open } };
  const properties = full.properties as Schema;
  // The status's schema without its validations (patterns, enums, formats, bounds), its shape kept: types and
  // list-map keys, so managedFields list each condition's fields as before.
  let loose: unknown = properties.status;
  for (const keyword of ["pattern", "enum", "format", "maxLength", "minLength", "maxItems", "minimum"]) loose = without(loose, keyword);
  const variants: [string, unknown][] = [
    ["full", full],
    ["nocel", without(full, "x-kubernetes-validations")],
    ["nodesc", without(full, "description")],
    ["loosestatus", { ...full, properties: { ...properties, status: loose } }],
    ["openstatus", { ...full, properties: { ...properties, status: open } }],
    ["bare", bare],
  ];
  return variants.map(([name, schema]) => {
    const resource: Resource = {
      name: `${name}probe`,
      apiGroup: probeGroup,
      plural: `${name}probes`,
      kind: `${name[0]!.toUpperCase()}${name.slice(1)}Probe`,
    };
    const version = { ...source.spec.versions[0]!, schema: { openAPIV3Schema: schema }, additionalPrinterColumns: undefined };
    return {
      resource,
      crd: {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: `${resource.plural}.${probeGroup}` },
        spec: {
          group: probeGroup,
          scope: "Namespaced",
          names: { kind: resource.kind, listKind: `${resource.kind}List`, plural: resource.plural, singular: `${name}probe` },
          versions: [version],
        },
      },
    };
  });
}

let etcdDir = "";
let access: ClusterAccess;
/** The size of etcd's database file (bbolt; it grows with every revision until the API server compacts). */
function etcdBytes(): number {
  let total = 0;
  try {
    total = statSync(join(etcdDir, "member/snap/db")).size;
  } catch {
    // not there (yet)
  }
  return total;
}

const shares: [label: string, process: string][] = [
  ["apiserver", "kube-apiserver"],
  ["etcd", "etcd"],
  ["kcm", "kube-controller-manager"],
];
const perRequest = new Map<string, number>();

/** Runs `count` requests of one kind and prints what they cost, in total and per process. */
async function measure(kind: string, run: () => Promise<void>): Promise<void> {
  const profiled = values.pprof && kind.startsWith("status_") ? profile(access, 5, join(values.pprof, `${kind}.pprof`)) : undefined;
  const before = descendantCpuByName();
  const dbBefore = etcdBytes();
  const started = Date.now();
  await run();
  const seconds = (Date.now() - started) / 1000;
  const after = descendantCpuByName();
  await profiled;
  const spentBy = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
  let total = 0;
  for (const name of after.keys()) total += spentBy(name);
  const spent = (process: string) =>
    [...after.keys()].filter((n) => n.split(" ").includes(process)).reduce((sum, n) => sum + spentBy(n), 0);
  const ms = (cpu: number) => ((cpu * 1000) / count).toFixed(2);
  console.error(
    `${kind}: ${count} requests in ${seconds.toFixed(1)} s, control plane ${total.toFixed(1)} s CPU (${ms(total)} ms each: ` +
      shares.map(([label, name]) => `${label} ${ms(spent(name))}`).join(", ") +
      `), etcd db +${(etcdBytes() - dbBefore) / 1024} KiB`,
  );
  perRequest.set(kind, (total * 1000) / count);
  console.log(`figure api_cpu_ms_per_${kind} ${ms(total)} ms`);
  for (const [label, name] of shares) console.log(`figure api_cpu_ms_per_${kind}_${label} ${ms(spent(name))} ms`);
}

async function main(): Promise<void> {
  const plane = await startControlPlane();
  etcdDir = join(plane.dir, "etcd");
  try {
    process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
    await installCRDs();
    access = clusterAccess(plane.kubeconfig);
    if (values.pprof) mkdirSync(values.pprof, { recursive: true });
    // The probes' CRDs first: the garbage collector (kube-controller-manager) finds new resources by discovery,
    // every 30 s, and watches them as it watches SupportAddresses.
    const probes = probeCRDs();
    for (const { crd } of probes)
      await send(access, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", JSON.stringify(crd));
    await send(
      access,
      "POST",
      "/api/v1/namespaces",
      JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }),
    );
    for (const { resource } of probes) {
      for (let tries = 0; ; tries++) {
        try {
          await send(access, "GET", collection(resource.apiGroup, resource.plural));
          break;
        } catch (error) {
          if (tries > 120) throw error;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
    const resources = [addresses, ...probes.map((p) => p.resource)];
    for (const r of resources)
      await measure(`create_${r.name}`, () =>
        each(access, (i) => [
          "APPLY",
          `${collection(r.apiGroup, r.plural)}/a${i}?fieldManager=bench&force=true`,
          JSON.stringify(object(r, i)),
        ]),
      );
    // The first status each object gets, then a change of it (one condition's message): the operator's writes.
    for (const r of resources) await measure(`status_apply_first_${r.name}`, () => each(access, statusApply(r, status)));
    for (const r of resources)
      await measure(`status_apply_${r.name}`, () =>
        each(
          access,
          statusApply(r, (i) => status(i + 1)),
        ),
      );
    // The same again: the API server finds no change, so etcd is not written and no watcher is told.
    await measure("status_apply_unchanged", () =>
      each(
        access,
        statusApply(addresses, (i) => status(i + 1)),
      ),
    );
    // Changed, as a merge patch under another field manager (an Update's managedFields entry besides the Apply's).
    await measure("status_merge_patch", () =>
      each(access, (i) => ["MERGE", `${api}/a${i}/status?fieldManager=smtp-connector-merge`, JSON.stringify({ status: status(i + 2) })]),
    );
    await measure("status_apply_short_messages", () => each(access, statusApply(addresses, shortStatus)));
    await measure("status_apply_one_condition", () => each(access, statusApply(addresses, oneCondition)));
    await measure("status_apply_again", () =>
      each(
        access,
        statusApply(addresses, (i) => status(i + 3)),
      ),
    );
    // Two more clients watching SupportAddresses (as the operator's informer and bench:operator's own watch do).
    // Twice each, alternating: the machine is shared, and one run of a kind moves by a tenth.
    for (const round of [1, 2]) {
      const watchers = await Promise.all([watcher(access, api), watcher(access, api)]);
      await measure(`status_apply_2_watchers_${round}`, () =>
        each(
          access,
          statusApply(addresses, (i) => status(i + 2 * round + 2)),
        ),
      );
      for (const w of watchers) w.stop();
      console.error(`the watchers saw ${watchers.map((w) => w.events()).join(" and ")} events`);
      await measure(`status_apply_0_watchers_${round}`, () =>
        each(
          access,
          statusApply(addresses, (i) => status(i + 2 * round + 3)),
        ),
      );
    }
    // The same bytes in a built-in kind: a ConfigMap (stored as protobuf, no CRD schema, no CEL).
    const configMaps = `/api/v1/namespaces/${namespace}/configmaps`;
    const configMap = (i: number, body: unknown) => ({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: `a${i}`, namespace },
      data: { status: JSON.stringify(body) },
    });
    await measure("create_configmap", () =>
      each(access, (i) => ["APPLY", `${configMaps}/a${i}?fieldManager=bench&force=true`, JSON.stringify(configMap(i, status(i)))]),
    );
    await measure("configmap_apply", () =>
      each(access, (i) => [
        "APPLY",
        `${configMaps}/a${i}?fieldManager=smtp-connector&force=true`,
        JSON.stringify(configMap(i, status(i + 1))),
      ]),
    );
    await measure("event_post", () =>
      each(access, (i) => [
        "POST",
        `/api/v1/namespaces/${namespace}/events`,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Event",
          metadata: { generateName: `a${i}.`, namespace },
          involvedObject: { apiVersion: `${group}/v1alpha1`, kind: "SupportAddress", name: `a${i}`, namespace },
          type: "Normal",
          reason: "DomainNotReady",
          message: "SmtpDomain d0 is not Ready",
          source: { component: "smtp-connector" },
          firstTimestamp: new Date().toISOString(),
          lastTimestamp: new Date().toISOString(),
          count: 1,
        }),
      ]),
    );
    await measure("get", () => each(access, (i) => ["GET", `${api}/a${i}`]));
    // The stored objects' sizes: one SupportAddress after all of the above, one of each probe after its two writes.
    for (const [what, path] of [
      ["supportaddress", `${api}/a0`],
      ...probes.map((p) => [p.resource.name, `${collection(probeGroup, p.resource.plural)}/a0`] as const),
    ]) {
      const stored = JSON.parse(await send(access, "GET", path)) as { metadata: { managedFields?: unknown[] } };
      const managed = JSON.stringify(stored.metadata.managedFields ?? []).length;
      console.error(
        `${what}: ${JSON.stringify(stored).length} bytes as JSON, managedFields ${managed} bytes in ${stored.metadata.managedFields?.length ?? 0} entries`,
      );
      console.log(`figure ${what}_bytes ${JSON.stringify(stored).length} bytes`);
      console.log(`figure ${what}_managed_fields_bytes ${managed} bytes`);
    }
    const ratio = (a: string, b: string) => (perRequest.get(a)! / perRequest.get(b)!).toFixed(2);
    console.log(`figure status_apply_to_event_post_ratio ${ratio("status_apply_supportaddress", "event_post")} x`);
    for (const r of probes)
      console.log(
        `figure status_apply_${r.resource.name}_ratio ${ratio(`status_apply_${r.resource.name}`, "status_apply_supportaddress")} x`,
      );
    console.log(`figure status_apply_unchanged_ratio ${ratio("status_apply_unchanged", "status_apply_supportaddress")} x`);
    const sum = (...kinds: string[]) => kinds.reduce((total, k) => total + perRequest.get(k)!, 0);
    console.log(
      `figure status_apply_2_watchers_ratio ${(sum("status_apply_2_watchers_1", "status_apply_2_watchers_2") / sum("status_apply_0_watchers_1", "status_apply_0_watchers_2")).toFixed(2)} x`,
    );
    console.log(`figure configmap_apply_ratio ${ratio("configmap_apply", "status_apply_supportaddress")} x`);
  } finally {
    await plane.stop();
  }
}

await main();
