// The operator's pure parts: credential plans, durations, conditions, the
// applied-already check, and the work queue's guarantees.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { mergeConditions, type DesiredCondition } from "../../operator/conditions.js";
import { conditionChanges } from "../../operator/events.js";
import { addressStatus, reconcileAddress } from "../../operator/address/reconcile.js";
import type { Cluster } from "../../operator/kube/cluster.js";
import { parseDuration, planCredentials, type IssuedCredential } from "../../operator/domain/credentials.js";
import { isSubset } from "../../operator/kube/compare.js";
import { controlEndpoints } from "../../operator/address/control-client.js";
import { parseQuantity, sameQuantity } from "../../operator/kube/quantity.js";
import { WorkQueue } from "../../operator/queue.js";

const domain = (credentials: NonNullable<SmtpDomain["spec"]["inbound"]["credentials"]>, gracePeriod?: string): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "ns", uid: "u" },
  spec: {
    domain: "example.com",
    inbound: { credentials, ...(gracePeriod ? { gracePeriod } : {}), delivery: { smtp: { host: "ingest.svc" } } },
  },
});
const issued = (version: number, createdAt: string): [number, IssuedCredential] => [
  version,
  { version, secretName: `s${version}`, username: `u${version}`, passwordSha256: "0".repeat(64), createdAt, userSupplied: false },
];

describe("planCredentials", () => {
  test("a single version is active", () => {
    assert.deepEqual(planCredentials(domain([{ version: 1 }]), new Map(), new Date()), [
      { version: 1, secretName: "example-com-inbound-v1", state: "Active" },
    ]);
  });
  test("the older version expires a grace period after the newer one was issued", () => {
    const map = new Map([issued(1, "2026-11-01T00:00:00Z"), issued(2, "2026-11-20T00:00:00Z")]);
    const d = domain([{ version: 1 }, { version: 2 }], "168h");
    const during = planCredentials(d, map, new Date("2026-11-21T00:00:00Z"));
    assert.deepEqual(
      during.map((p) => [p.version, p.state, p.expiresAt]),
      [
        [1, "Active", "2026-11-27T00:00:00Z"],
        [2, "Active", undefined],
      ],
    );
    const afterwards = planCredentials(d, map, new Date("2026-11-27T00:00:01Z"));
    assert.deepEqual(
      afterwards.map((p) => p.state),
      ["Expired", "Active"],
    );
  });
  test("revoked is revoked at once, whatever the grace period", () => {
    const plan = planCredentials(
      domain([{ version: 1, state: "Revoked" }, { version: 2 }], "168h"),
      new Map([issued(2, "2026-11-20T00:00:00Z")]),
      new Date(),
    );
    assert.deepEqual(
      plan.map((p) => p.state),
      ["Revoked", "Active"],
    );
  });
  test("a version revoked or expired before stays out, whatever the spec says now", () => {
    const map = new Map([issued(1, "2026-11-01T00:00:00Z"), issued(2, "2026-11-20T00:00:00Z")]);
    // Re-added as Active after its entry was removed: refused, and flagged.
    const plan = planCredentials(domain([{ version: 1 }, { version: 2 }], "168h"), map, new Date("2026-11-21T00:00:00Z"), new Set([1]));
    assert.deepEqual(
      plan.map((p) => [p.version, p.state, p.reactivationRefused]),
      [
        [1, "Revoked", true],
        [2, "Active", undefined],
      ],
    );
    // Expired once, then the newer version removed: the old one does not come back.
    assert.deepEqual(
      planCredentials(domain([{ version: 1 }]), map, new Date(), new Set([1])).map((p) => p.state),
      ["Revoked"],
    );
    // A refused re-addition of a newer number does not start anyone's grace period.
    const newer = planCredentials(
      domain([{ version: 2 }, { version: 3 }], "168h"),
      new Map([...map, issued(3, "2026-11-02T00:00:00Z")]),
      new Date("2026-11-21T00:00:00Z"),
      new Set([3]),
    );
    assert.deepEqual(
      newer.map((p) => [p.version, p.state, p.expiresAt]),
      [
        [2, "Active", undefined],
        [3, "Revoked", undefined],
      ],
    );
    // Declared Revoked is simply revoked, not a refusal.
    assert.equal(
      planCredentials(domain([{ version: 1, state: "Revoked" }, { version: 2 }]), map, new Date(), new Set([1]))[0]!.reactivationRefused,
      undefined,
    );
  });
  test("a user-supplied Secret is used by name", () => {
    assert.equal(planCredentials(domain([{ version: 3, secretRef: { name: "mine" } }]), new Map(), new Date())[0]!.secretName, "mine");
  });
});

describe("parseDuration", () => {
  test("Go-style durations", () => {
    assert.equal(parseDuration("168h"), 168 * 3_600_000);
    assert.equal(parseDuration("1h30m"), 90 * 60_000);
    assert.equal(parseDuration("1.5s"), 1500);
    assert.throws(() => parseDuration("1 week"));
    assert.throws(() => parseDuration(""));
  });
});

describe("mergeConditions", () => {
  const t0 = new Date("2026-11-25T10:00:00Z");
  const t1 = new Date("2026-11-25T11:00:00Z");
  test("lastTransitionTime moves only when the status changes", () => {
    const first = mergeConditions(undefined, [{ type: "Ready", status: "False", reason: "NoAddresses", message: "m" }], 1, t0);
    const same = mergeConditions(first, [{ type: "Ready", status: "False", reason: "Progressing", message: "other" }], 2, t1);
    assert.equal(same[0]!.lastTransitionTime, "2026-11-25T10:00:00Z");
    assert.equal(same[0]!.reason, "Progressing");
    const flipped = mergeConditions(same, [{ type: "Ready", status: "True", reason: "Ready", message: "ok" }], 2, t1);
    assert.equal(flipped[0]!.lastTransitionTime, "2026-11-25T11:00:00Z");
  });
  test("Reconciling and Stalled exist only while True", () => {
    const out = mergeConditions(
      undefined,
      [
        { type: "Stalled", status: "False", reason: "Ready", message: "" },
        { type: "Reconciling", status: "True", reason: "Progressing", message: "working" },
      ],
      1,
      t0,
    );
    assert.deepEqual(
      out.map((c) => c.type),
      ["Reconciling"],
    );
  });
});

describe("conditionChanges", () => {
  const now = new Date("2026-01-01T00:00:00Z");
  const conditions = (desired: DesiredCondition[], before?: Parameters<typeof mergeConditions>[0]) =>
    mergeConditions(before, desired, 1, now);

  test("a new address waiting for its domain: one Event (what blocks it), not one per condition", () => {
    const address: SupportAddress = {
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { namespace: "n", name: "a", generation: 1 },
      spec: {
        address: "a@example.com",
        domainRef: { name: "d" },
        outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "o" } },
      },
    };
    const status = addressStatus(address, { served: true }, undefined, now);
    const events = conditionChanges(undefined, status.conditions ?? []);
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.reason} ${e.message.split(":")[0]}`),
      ["Warning DomainNotReady DomainReady=False"],
    );
  });

  test("an address whose domain has no status yet writes none: the domain's first status brings it back", async () => {
    const writes: string[] = [];
    const cluster = {
      applyStatus: (_plural: string, _kind: string, _ns: string, name: string) => Promise.resolve(void writes.push(name)),
      postEvent: () => Promise.resolve(),
    } as unknown as Cluster;
    const address: SupportAddress = {
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { namespace: "n", name: "a", generation: 1 },
      spec: {
        address: "a@example.com",
        domainRef: { name: "d" },
        outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "o" } },
      },
    };
    const domain: SmtpDomain = {
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { namespace: "n", name: "d", generation: 1, uid: "u" },
      spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "x.y" } } } },
    };
    await reconcileAddress(cluster, address, { served: true }, domain);
    assert.deepEqual(writes, [], "no interim status, written over moments later");
    await reconcileAddress(
      cluster,
      address,
      { served: true },
      { ...domain, status: { conditions: conditions([{ type: "Ready", status: "False", reason: "Progressing", message: "waiting" }]) } },
    );
    await reconcileAddress(cluster, address, { served: false, reason: "DomainNotFound", message: "no such domain" }, undefined);
    assert.deepEqual(writes, ["a", "a"]);
  });

  test("Ready is told when it says something no other condition of the change says; Unknown only as a change", () => {
    const first = conditions([
      { type: "Ready", status: "False", reason: "SystemDomain", message: "own domain" },
      { type: "Stalled", status: "True", reason: "SystemDomain", message: "own domain" },
    ]);
    assert.deepEqual(
      conditionChanges(undefined, first).map((e) => e.reason),
      ["SystemDomain"],
      "Stalled is not told, so Ready is",
    );
    const verified = conditions([{ type: "InboundVerified", status: "True", reason: "Verified", message: "ok" }]);
    const again = conditions(
      [{ type: "InboundVerified", status: "Unknown", reason: "VerificationPending", message: "on its way" }],
      verified,
    );
    assert.deepEqual(
      conditionChanges(verified, again).map((e) => `${e.type} ${e.reason}`),
      ["Normal VerificationPending"],
    );
    const ready = conditions([
      { type: "DomainReady", status: "True", reason: "Ready", message: "domain ready" },
      { type: "Ready", status: "True", reason: "Ready", message: "connected" },
    ]);
    assert.deepEqual(
      conditionChanges(undefined, ready).map((e) => e.message),
      ["DomainReady=True: domain ready", "Ready=True: connected"],
    );
  });
});

describe("isSubset", () => {
  test("defaults and other managers' fields on the live object do not matter; our fields do", () => {
    const live = {
      spec: {
        replicas: 2,
        strategy: { type: "RollingUpdate" },
        template: { spec: { containers: [{ name: "relay", image: "x", imagePullPolicy: "IfNotPresent" }] } },
      },
    };
    assert.equal(isSubset({ spec: { replicas: 2, template: { spec: { containers: [{ name: "relay", image: "x" }] } } } }, live), true);
    assert.equal(isSubset({ spec: { replicas: 3 } }, live), false);
    assert.equal(isSubset({ spec: { template: { spec: { containers: [{ name: "relay" }, { name: "sidecar" }] } } } }, live), false);
    assert.equal(isSubset({ spec: { from: [{ namespaceSelector: {} }] } }, { spec: {} }), false);
  });

  test("a container's resources compare by value: the server returns quantities in canonical form", () => {
    const container = (resources: object) => ({ spec: { template: { spec: { containers: [{ name: "relay", resources }] } } } });
    const live = container({ requests: { cpu: "500m", memory: "1Gi" }, limits: { cpu: "2", memory: "1536Mi" } });
    assert.equal(isSubset(container({ requests: { cpu: "0.5", memory: "1024Mi" }, limits: { cpu: 2, memory: "1.5Gi" } }), live), true);
    assert.equal(isSubset(container({ requests: { cpu: "600m" } }), live), false);
    assert.equal(isSubset(container({ limits: { memory: "1536M" } }), live), false, "M is 10^6, Mi is 2^20");
    // Elsewhere text stays text: a label "1" is not "1000m".
    assert.equal(isSubset({ metadata: { labels: { a: "1" } } }, { metadata: { labels: { a: "1000m" } } }), false);
  });
});

describe("controlEndpoints", () => {
  test("every ready, not terminating pod of the relay's internal Service, at its control port, each once", () => {
    const slice = (name: string, service: string, endpoints: object[], namespace = "acme") => ({
      metadata: { name, namespace, labels: { "kubernetes.io/service-name": service } },
      addressType: "IPv4",
      ports: [
        { name: "submission", port: 2525 },
        { name: "control", port: 8443 },
      ],
      endpoints,
    });
    const slices = [
      slice("a", "example-com-relay-internal", [
        { addresses: ["10.0.0.1"], conditions: { ready: true } },
        { addresses: ["10.0.0.2"] },
        { addresses: ["10.0.0.3"], conditions: { ready: false } },
      ]),
      // A second slice of the same Service (large Services have several), one address repeated.
      slice("b", "example-com-relay-internal", [
        { addresses: ["10.0.0.4"], conditions: { ready: true, terminating: true } },
        { addresses: ["10.0.0.2"] },
      ]),
      slice("c", "other-relay-internal", [{ addresses: ["10.0.0.9"] }]),
      slice("d", "example-com-relay-internal", [{ addresses: ["10.0.0.8"] }], "elsewhere"),
    ] as Parameters<typeof controlEndpoints>[0];
    assert.deepEqual(controlEndpoints(slices, "acme", "example-com-relay-internal"), [
      { host: "10.0.0.1", port: 8443 },
      { host: "10.0.0.2", port: 8443 },
    ]);
    assert.deepEqual(controlEndpoints([], "acme", "example-com-relay-internal"), []);
  });
});

describe("quantities", () => {
  test("the same value in every notation the API server accepts", () => {
    const same = [
      ["100m", "0.1"],
      ["1", "1000m"],
      ["1e3", "1k"],
      ["1Ki", "1024"],
      ["0.5Gi", "512Mi"],
      ["2E", "2e18"],
      [".5", "500m"],
      ["+1", "1"],
      [2, "2"],
    ] as const;
    for (const [a, b] of same) assert.equal(sameQuantity(a, b), true, `${a} = ${b}`);
    const different = [
      ["1M", "1Mi"],
      ["1m", "1"],
      ["1.5", "1"],
      ["-1", "1"],
    ] as const;
    for (const [a, b] of different) assert.equal(sameQuantity(a, b), false, `${a} ≠ ${b}`);
    for (const bad of ["", "1.2.3", "5 Gi", "1GB", "m", "1e", "secrets", "1e999999"]) assert.equal(parseQuantity(bad), undefined, bad);
  });
});

describe("WorkQueue", () => {
  test("a waiting key is queued once; a key added while it runs runs once more, after", async () => {
    const runs: string[] = [];
    const queue = new WorkQueue(
      async (key) => {
        runs.push(key);
        await new Promise((r) => setTimeout(r, 10));
      },
      { concurrency: 1 },
    );
    queue.add("a"); // starts at once
    queue.add("b"); // waits
    queue.add("b"); // already waiting: nothing
    queue.add("a"); // running: marked to run again
    await new Promise((r) => setTimeout(r, 100));
    await queue.idle();
    assert.deepEqual(runs, ["a", "b", "a"]);
  });

  test("one key never runs twice at once, even with free workers", async () => {
    const active = new Set<string>();
    let overlap = false;
    const queue = new WorkQueue(
      async (key) => {
        if (active.has(key)) overlap = true;
        active.add(key);
        await new Promise((r) => setTimeout(r, 10));
        active.delete(key);
      },
      { concurrency: 4 },
    );
    for (let i = 0; i < 20; i++) {
      queue.add("k");
      await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, 50));
    await queue.idle();
    assert.equal(overlap, false);
  });

  test("created held, it runs nothing until started, then each key waiting once", async () => {
    const runs: string[] = [];
    const queue = new WorkQueue(
      (key) => {
        runs.push(key);
        return Promise.resolve();
      },
      { concurrency: 2, held: true },
    );
    queue.add("a");
    queue.add("b");
    queue.add("a");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(runs, [], "held: the informers have not listed yet");
    queue.start();
    await queue.idle();
    assert.deepEqual(runs, ["a", "b"]);
  });

  test("failures come back with backoff", async () => {
    let calls = 0;
    const queue = new WorkQueue(
      () => {
        calls++;
        return calls < 3 ? Promise.reject(new Error("transient")) : Promise.resolve();
      },
      { concurrency: 1, baseBackoffMs: 10 },
    );
    queue.add("k");
    for (let i = 0; i < 50 && calls < 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(calls, 3);
    queue.stop();
  });
});

describe("generated passwords", () => {
  test("letters and digits only, 256 bits, no two alike", async () => {
    const { alphanumeric, newCredential } = await import("../../operator/domain/credentials.js");
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const password = alphanumeric(43);
      assert.match(password, /^[A-Za-z0-9]{43}$/);
      seen.add(password);
    }
    assert.equal(seen.size, 200);
    const credential = newCredential(
      {
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        metadata: { name: "example-com" },
        spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "x.y" } } } },
      },
      2,
    );
    assert.match(credential.username, /^example-com-v2-[0-9a-f]{6}$/);
    assert.ok(43 * Math.log2(62) >= 256);
  });
});
