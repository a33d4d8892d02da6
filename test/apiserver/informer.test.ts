// The operator's own informer against the real API server: it lists, then
// follows add, update and delete through its watch, filtered by label, and
// its cache answers list() and get() consistently with what it reported.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { clusterAccess } from "../../operator/kube/access.js";
import { supervisedInformer, type InformerEvent } from "../../operator/kube/informer.js";
import { createLogger } from "../../lib/log.js";
import { PassThrough } from "node:stream";
import { connect, freshNamespace, kubectl } from "../support/kube.js";
import { eventuallyTrue } from "../support/wait.js";

describe("the operator's informer", () => {
  let kubeconfig: string;
  before(async () => {
    kubeconfig = (await connect()).kubeconfigPath;
  });
  after(() => undefined);

  test("lists, then follows add, update and delete of the objects its label selects", async (t) => {
    const namespace = await freshNamespace(t, "inf");
    await kubectl(["create", "secret", "generic", "before", "-n", namespace, "--from-literal=a=1"]);
    await kubectl(["label", "secret", "before", "-n", namespace, "watched=yes"]);
    const seen: string[] = [];
    const informer = supervisedInformer<k8s.V1Secret>(clusterAccess(kubeconfig), `/api/v1/namespaces/${namespace}/secrets`, {
      onChange: (s, event: InformerEvent) => seen.push(`${event} ${s.metadata?.name} ${Buffer.from(s.data?.a ?? "", "base64").toString()}`),
      log: createLogger("test", { level: "error", stream: new PassThrough() }),
      labelSelector: "watched=yes",
    });
    await informer.start();
    t.after(() => informer.stop());
    assert.deepEqual(seen, ["add before 1"], "the initial list");

    await kubectl(["create", "secret", "generic", "ignored", "-n", namespace, "--from-literal=a=0"]);
    // --save-config: the copy a client-side apply keeps in an annotation.
    await kubectl(["create", "secret", "generic", "later", "-n", namespace, "--from-literal=a=2", "--save-config"]);
    await kubectl(["label", "secret", "later", "-n", namespace, "watched=yes"]);
    await eventuallyTrue("the new object", () => seen.some((s) => s.startsWith("add later")));
    await kubectl([
      "patch",
      "secret",
      "later",
      "-n",
      namespace,
      "-p",
      JSON.stringify({ data: { a: Buffer.from("3").toString("base64") } }),
    ]);
    await eventuallyTrue("the update", () => seen.includes("update later 3"));
    assert.equal(Buffer.from(informer.get("later", namespace)?.data?.a ?? "", "base64").toString(), "3");
    await kubectl(["delete", "secret", "before", "-n", namespace]);
    await eventuallyTrue("the deletion", () => seen.includes("delete before 1"));
    assert.deepEqual(
      informer.list().map((s) => s.metadata?.name),
      ["later"],
    );
    assert.ok(!seen.some((s) => s.includes("ignored")), "unlabelled objects are not cached");
    assert.equal(informer.get("later", namespace)?.metadata?.managedFields, undefined, "managedFields are not kept");
    const lastApplied = "kubectl.kubernetes.io/last-applied-configuration";
    const live = await kubectl(["get", "secret", "later", "-n", namespace, "-o", "jsonpath={.metadata.annotations}"]);
    assert.match(live.stdout, /last-applied-configuration/, "the server has kubectl's copy");
    assert.equal(
      informer.get("later", namespace)?.metadata?.annotations?.[lastApplied],
      undefined,
      "kubectl's last-applied copy is not kept",
    );
  });

  test("reads its list in pages, and with metadataOnly keeps (and is told of) no Secret's data", async (t) => {
    const namespace = await freshNamespace(t, "inf");
    for (let i = 0; i < 7; i++) await kubectl(["create", "secret", "generic", `s${i}`, "-n", namespace, "--from-literal=a=secret-value"]);
    const seen: k8s.KubernetesObject[] = [];
    const informer = supervisedInformer<k8s.KubernetesObject>(clusterAccess(kubeconfig), `/api/v1/namespaces/${namespace}/secrets`, {
      onChange: (s) => seen.push(s),
      log: createLogger("test", { level: "error", stream: new PassThrough() }),
      pageSize: 2,
      metadataOnly: true,
    });
    await informer.start();
    t.after(() => informer.stop());
    assert.equal(informer.listRequests(), 4, "7 objects, 2 a page");
    assert.deepEqual(
      informer
        .list()
        .map((s) => s.metadata?.name)
        .sort(),
      ["s0", "s1", "s2", "s3", "s4", "s5", "s6"],
    );
    await kubectl([
      "patch",
      "secret",
      "s3",
      "-n",
      namespace,
      "-p",
      JSON.stringify({ metadata: { labels: { changed: "yes" } }, data: { a: Buffer.from("other-value").toString("base64") } }),
    ]);
    await eventuallyTrue("the update, as metadata", () => informer.get("s3", namespace)?.metadata?.labels?.changed === "yes");
    for (const object of [...informer.list(), ...seen]) {
      assert.equal(object.kind, "PartialObjectMetadata", `${object.metadata?.name}: sent as metadata`);
      assert.ok(!("data" in object), `${object.metadata?.name}: no data`);
    }
  });
});
