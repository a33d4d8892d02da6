// What Cluster.apply and Cluster.create do with the API server's answer (operator/kube/cluster.ts): it is
// handed to the read cache only for a kind the cache keeps, a Secret's (its data in it) held only when it is
// the operator's own, and an answer that does not parse fails no write that succeeded. Against a loopback HTTPS server that answers
// each PATCH with the body the case sets: the real API server never sends a garbled one.
import assert from "node:assert/strict";
import { once } from "node:events";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { after, before, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { createLogger } from "../../lib/log.js";
import type { ClusterAccess } from "../../operator/kube/access.js";
import { Cluster } from "../../operator/kube/cluster.js";
import { OwnObjectReads } from "../../operator/kube/read-cache.js";
import { defaultCertificatePolicy, issueServerCertificate, newCertificateAuthority } from "../../operator/tls/certificates.js";

const ca = newCertificateAuthority("test", new Date());
const leaf = issueServerCertificate(ca, ["127.0.0.1"], new Date(), defaultCertificatePolicy);
let answer = "";
const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(answer));
});
let access: ClusterAccess;

before(async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const agent = new https.Agent({ ca: ca.certPem });
  access = {
    server: new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`),
    credentials: () => Promise.resolve({ agent, credential: {} }),
    unauthorized: () => false,
  };
});
after(() => server.close());

/** A Cluster whose read cache watches Deployments (one at resourceVersion 10) and records what reaches `applied`. */
function setup(ownSecret = false) {
  const watched: k8s.V1Deployment = { metadata: { name: "example-com-relay", namespace: "ns", resourceVersion: "10" } };
  const reads = new OwnObjectReads({
    informers: new Map([["apps/v1/Deployment", { get: () => watched }]]),
    secretVersion: () => "11",
    isOwnSecret: () => ownSecret,
    ownLabels: {},
  });
  const applied: k8s.KubernetesObject[] = [];
  const keep = reads.applied.bind(reads);
  reads.applied = (ref, before, object) => {
    applied.push(object);
    keep(ref, before, object);
  };
  const logged = new PassThrough();
  let logText = "";
  logged.on("data", (chunk: Buffer) => (logText += chunk.toString()));
  const cluster = new Cluster(access);
  cluster.reads = reads;
  cluster.log = createLogger("operator", { level: "debug", stream: logged });
  return { cluster, reads, applied, log: () => logText };
}

const relayDeployment = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "example-com-relay", namespace: "ns" },
  spec: { replicas: 1 },
};

const relayConfig = {
  apiVersion: "v1",
  kind: "Secret",
  metadata: {
    name: "example-com-relay-config",
    namespace: "ns",
    resourceVersion: "11",
    ownerReferences: [
      {
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        name: "example-com",
        uid: "u1",
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  },
  data: { password: Buffer.from("hunter2").toString("base64") },
};
const configRef = { apiVersion: "v1", kind: "Secret", namespace: "ns", name: "example-com-relay-config" };

test("the answer to a write of its own Secret, applied or created, stands for the Secret while the watch shows it", async () => {
  for (const write of ["apply", "create"] as const) {
    const { cluster, reads } = setup(true);
    answer = JSON.stringify(relayConfig);
    await cluster[write](relayConfig);
    assert.deepEqual(reads.heldSecrets(), ["ns/example-com-relay-config"], write);
    assert.equal(reads.lookup(configRef)?.metadata?.resourceVersion, "11", write);
  }
});

test("a Secret's answer that is not the operator's own is never held", async () => {
  const { cluster, reads } = setup(false);
  answer = JSON.stringify(relayConfig);
  await cluster.apply(relayConfig);
  await cluster.create(relayConfig);
  assert.deepEqual(reads.heldSecrets(), []);
  assert.equal(reads.lookup(configRef), undefined);
});

test("an answer that does not parse fails no write that succeeded: the reads wait for the watch", async () => {
  const { cluster, reads, applied, log } = setup();
  for (const garbled of ['{"kind":"Deployment", "metadata": {', "null", "[1]", ""]) {
    answer = garbled;
    await cluster.apply(relayDeployment);
  }
  assert.deepEqual(applied, []);
  assert.equal(cluster.writes, 4);
  assert.equal(reads.heldWrites().length, 0);
  assert.match(log(), /"level":"debug".*did not parse.*"name":"example-com-relay"/);
  assert.doesNotMatch(log(), /metadata/, "the answer itself is not logged");

  // And an answer that parses stands for the object until the watch moves.
  answer = JSON.stringify({ ...relayDeployment, metadata: { ...relayDeployment.metadata, resourceVersion: "11" } });
  await cluster.apply(relayDeployment);
  assert.equal(applied.length, 1);
  assert.equal(
    reads.lookup({ apiVersion: "apps/v1", kind: "Deployment", namespace: "ns", name: "example-com-relay" })?.metadata?.resourceVersion,
    "11",
  );
});
