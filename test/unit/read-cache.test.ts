// The operator's reads by name of its own objects, answered from its watches (operator/kube/read-cache.ts):
// after it writes one, the write's answer stands for it until the watch shows the write. Before, the next
// reconcile read the watch's old copy (a drift just repaired, still drifted there) and wrote it again.
import assert from "node:assert/strict";
import { test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { OwnObjectReads } from "../../operator/kube/read-cache.js";

function deployment(resourceVersion: string, replicas: number): k8s.V1Deployment {
  return {
    metadata: { name: "example-com-relay", namespace: "ns", resourceVersion, managedFields: [{ manager: "smtp-connector" }] },
    spec: { replicas, selector: {}, template: {} },
  };
}

const relay = { apiVersion: "apps/v1", kind: "Deployment", namespace: "ns", name: "example-com-relay" } as const;

function setup() {
  const watched = new Map<string, k8s.KubernetesObject>();
  const source = { get: (name: string, namespace?: string) => watched.get(`${namespace}/${name}`) };
  const reads = new OwnObjectReads({
    informers: new Map([["apps/v1/Deployment", source]]),
    secretVersion: () => undefined,
    isOwnSecret: () => false,
    ownLabels: {},
  });
  const watch = (object: k8s.KubernetesObject) => watched.set(`ns/${object.metadata!.name}`, object);
  const replicas = (): number | undefined => {
    const read: k8s.V1Deployment | undefined = reads.lookup(relay);
    return read?.spec?.replicas;
  };
  return { reads, watch, watched, replicas };
}

test("a repaired object reads as written until the watch moves, then as the watch has it", () => {
  const { reads, watch, replicas } = setup();
  watch(deployment("10", 3)); // edited by hand
  const before = reads.written(relay);
  assert.equal(before, "10");
  reads.applied(relay, before, deployment("11", 1));
  assert.equal(replicas(), 1, "the repair, not the drifted copy the watch still holds");
  const held = reads.lookup(relay);
  assert.equal(held?.kind, "Deployment");
  assert.equal(held?.metadata?.managedFields, undefined);
  watch(deployment("11", 1)); // the watch brings the write
  watch(deployment("12", 5)); // and someone's edit after it
  assert.equal(replicas(), 5, "the watch's newer copy, not the write's");
  watch(deployment("10", 3)); // even were the watch to go back to that version, the write is forgotten once it moved
  assert.equal(replicas(), 3);
});

test("no answer is kept when the watch has moved already, or the write changed nothing, or failed", () => {
  const { reads, watch, replicas } = setup();
  watch(deployment("10", 3));
  let before = reads.written(relay);
  watch(deployment("12", 4)); // the watch was faster than the answer, and showed a later edit too
  reads.applied(relay, before, deployment("11", 1));
  assert.equal(replicas(), 4);

  before = reads.written(relay);
  reads.applied(relay, before, deployment("12", 4)); // nothing changed
  watch(deployment("12", 4));
  assert.equal(replicas(), 4);

  reads.written(relay); // the write failed: no applied
  assert.equal(replicas(), 4);
});

test("an object just made is not answered from the write (one deleted again meanwhile would be)", () => {
  const { reads, watched, replicas } = setup();
  const before = reads.written(relay);
  assert.equal(before, undefined);
  reads.applied(relay, before, deployment("11", 1));
  assert.equal(watched.size, 0);
  assert.equal(replicas(), undefined, "read from the API server");
});

test("a write's answer goes when the watch sees its object deleted, and never stands for one made again under the name", () => {
  const { reads, watch, watched, replicas } = setup();
  watch(deployment("10", 3));
  const before = reads.written(relay);
  reads.applied(relay, before, deployment("11", 1));
  assert.deepEqual(reads.heldWrites(), ["apps/v1/Deployment ns/example-com-relay"]);
  // Deleted (its domain with it) before the watch brought the write, and nothing reads that name again.
  watched.delete("ns/example-com-relay");
  reads.deleted(relay);
  assert.deepEqual(reads.heldWrites(), [], "not held for good");
  // Made again under the name; the watch's copy carries the version the write was held against (a fake's
  // reuse, the one way the old answer could pass for the new object).
  watch(deployment("10", 2));
  assert.equal(replicas(), 2, "the new object as the watch has it, not the deleted one's write");
});

test("the answer to a write of its own Secret is answered while the metadata watch shows it; a tenant's never", () => {
  const versions = new Map<string, string>();
  const reads = new OwnObjectReads({
    informers: new Map(),
    secretVersion: (namespace, name) => versions.get(`${namespace}/${name}`),
    isOwnSecret: (_namespace, domain, uid, secret) => domain === "example" && uid === "u1" && secret === "example-relay-config",
    ownLabels: { "app.kubernetes.io/managed-by": "smtp-connector" },
  });
  const secret = (name: string, resourceVersion: string, owned = true): k8s.V1Secret => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name,
      namespace: "ns",
      resourceVersion,
      managedFields: [{ manager: "smtp-connector" }],
      ...(owned
        ? {
            labels: { "app.kubernetes.io/managed-by": "smtp-connector" },
            ownerReferences: [
              { apiVersion: "smtpconnector.dev/v1alpha1", kind: "SmtpDomain", name: "example", uid: "u1", controller: true },
            ],
          }
        : {}),
    },
    data: { config: Buffer.from("relay").toString("base64") },
  });
  const config = { apiVersion: "v1", kind: "Secret", namespace: "ns", name: "example-relay-config" } as const;
  assert.equal(reads.keeps("v1", "Secret"), true);

  versions.set("ns/example-relay-config", "10");
  reads.applied(config, reads.written(config), secret("example-relay-config", "11"));
  assert.equal(reads.lookup(config), undefined, "not before the watch shows the write");
  reads.applied(config, reads.written(config), secret("example-relay-config", "12"));
  versions.set("ns/example-relay-config", "12"); // the watch brings the write
  const held = reads.lookup(config);
  assert.equal(held?.metadata?.resourceVersion, "12", "the next reconcile reads the write's answer, not the API server");
  assert.equal(held?.metadata?.managedFields, undefined);
  versions.set("ns/example-relay-config", "13"); // someone's edit after it
  assert.equal(reads.lookup(config), undefined, "read again once the watch moved");

  // A Secret just made: held too (the metadata watch tells whether it still is), but a name that is not the
  // operator's own, or a Secret without its label and owner, never.
  versions.set("ns/example-relay-config", "20");
  reads.applied(config, reads.written(config), secret("example-relay-config", "20", false));
  assert.equal(reads.lookup(config), undefined, "without our label and owner");
  const tenant = { ...config, name: "outbound" };
  versions.set("ns/outbound", "21");
  reads.applied(tenant, reads.written(tenant), secret("outbound", "21"));
  assert.deepEqual(reads.heldSecrets(), []);
  reads.applied(config, reads.written(config), secret("example-relay-config", "20"));
  assert.deepEqual(reads.heldSecrets(), ["ns/example-relay-config"]);
  versions.delete("ns/example-relay-config"); // deleted again
  assert.equal(reads.lookup(config), undefined);
});
