// Proof that the apiserver tier runs against real parts: a real kube-apiserver
// with etcd, RBAC, server-side apply, a status subresource, watches, and a
// garbage collector.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { startControlPlane } from "../support/controlplane.js";
import { connect, eventually, freshNamespace, kubectl, serviceAccountKubeconfig } from "../support/kube.js";

const version = readFileSync(new URL("../../hack/testenv/VERSION", import.meta.url), "utf8").trim();

const group = "testenv.smtpconnector.dev";
const widgetCRD: k8s.V1CustomResourceDefinition = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `widgets.${group}` },
  spec: {
    group,
    scope: "Namespaced",
    names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              spec: { type: "object", properties: { size: { type: "integer", minimum: 1 } } },
              status: { type: "object", properties: { phase: { type: "string" } } },
            },
          },
        },
      },
    ],
  },
};

interface Widget extends k8s.KubernetesObject {
  spec?: { size?: number };
  status?: { phase?: string };
}

async function installWidgetCRD(): Promise<void> {
  const { config } = await connect();
  const extensions = config.makeApiClient(k8s.ApiextensionsV1Api);
  const objects = k8s.KubernetesObjectApi.makeApiClient(config);
  await objects.patch(widgetCRD, undefined, undefined, "smtpc-tests", true, k8s.PatchStrategy.ServerSideApply);
  await eventually("the Widget CRD to be established", async () => {
    const crd = await extensions.readCustomResourceDefinition({ name: widgetCRD.metadata!.name! });
    return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ? true : undefined;
  });
  // Established comes before the watch cache is ready; until then lists answer
  // 429 "storage is (re)initializing", which would stop an informer for good.
  const custom = config.makeApiClient(k8s.CustomObjectsApi);
  await eventually("Widgets to be listable", async () => {
    await custom.listClusterCustomObject({ group, version: "v1", plural: "widgets" });
    return true;
  });
}

describe("local control plane", () => {
  test("reports the Kubernetes version it was built from", async () => {
    const { config } = await connect();
    const info = await config.makeApiClient(k8s.VersionApi).getCode();
    assert.equal(info.gitVersion, version);
    const client = await kubectl(["version", "--output=json"]);
    assert.equal(client.code, 0, client.stderr);
    const both = JSON.parse(client.stdout) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
    assert.equal(both.clientVersion.gitVersion, version);
    assert.equal(both.serverVersion.gitVersion, version);
  });

  test("an informer follows a custom resource through add, update and delete", async (t) => {
    await installWidgetCRD();
    const namespace = await freshNamespace(t);
    const { config } = await connect();
    const custom = config.makeApiClient(k8s.CustomObjectsApi);
    const path = `/apis/${group}/v1/namespaces/${namespace}/widgets`;
    const informer = k8s.makeInformer<Widget>(
      config,
      path,
      () =>
        custom.listNamespacedCustomObject({ group, version: "v1", namespace, plural: "widgets" }) as Promise<
          k8s.KubernetesListObject<Widget>
        >,
    );
    const seen: string[] = [];
    informer.on("add", (w) => seen.push(`add ${w.metadata?.name} ${w.spec?.size}`));
    informer.on("update", (w) => seen.push(`update ${w.metadata?.name} ${w.spec?.size}`));
    informer.on("delete", (w) => seen.push(`delete ${w.metadata?.name}`));
    const errors: unknown[] = [];
    informer.on("error", (e) => errors.push(e));
    await informer.start();
    t.after(() => informer.stop());

    const body = { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w1", namespace }, spec: { size: 1 } };
    await custom.createNamespacedCustomObject({ group, version: "v1", namespace, plural: "widgets", body });
    await eventually("add event", () => {
      assert.deepEqual(errors, []);
      return seen.includes("add w1 1") ? true : undefined;
    });
    await custom.patchNamespacedCustomObject(
      { group, version: "v1", namespace, plural: "widgets", name: "w1", body: [{ op: "replace", path: "/spec/size", value: 2 }] },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
    );
    await eventually("update event", () => (seen.includes("update w1 2") ? true : undefined));
    await custom.deleteNamespacedCustomObject({ group, version: "v1", namespace, plural: "widgets", name: "w1" });
    await eventually("delete event", () => (seen.includes("delete w1") ? true : undefined));
    assert.deepEqual(seen, ["add w1 1", "update w1 2", "delete w1"]);
  });

  test("server-side apply writes an object and, separately, its status subresource", async (t) => {
    await installWidgetCRD();
    const namespace = await freshNamespace(t);
    const { config } = await connect();
    const custom = config.makeApiClient(k8s.CustomObjectsApi);
    const objects = k8s.KubernetesObjectApi.makeApiClient(config);
    const ssa = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.ServerSideApply);

    const applied = await objects.patch<Widget>(
      { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w2", namespace }, spec: { size: 3 }, status: { phase: "ignored" } },
      undefined,
      undefined,
      "smtpc-tests",
      true,
      k8s.PatchStrategy.ServerSideApply,
    );
    assert.equal(applied.spec?.size, 3);
    assert.equal(applied.status, undefined, "the main resource must ignore status when a status subresource exists");

    const withStatus = (await custom.patchNamespacedCustomObjectStatus(
      {
        group,
        version: "v1",
        namespace,
        plural: "widgets",
        name: "w2",
        body: { apiVersion: `${group}/v1`, kind: "Widget", metadata: { name: "w2", namespace }, status: { phase: "Ready" } },
        fieldManager: "smtpc-tests-status",
        force: true,
      },
      ssa,
    )) as Widget;
    assert.equal(withStatus.status?.phase, "Ready");
    assert.equal(withStatus.spec?.size, 3);

    const managers = (withStatus.metadata?.managedFields ?? []).map((f) => `${f.manager}/${f.subresource ?? ""}`);
    assert.ok(managers.includes("smtpc-tests/"), `managedFields: ${managers.join(", ")}`);
    assert.ok(managers.includes("smtpc-tests-status/status"), `managedFields: ${managers.join(", ")}`);
  });

  test("the garbage collector deletes a Secret when its owner is deleted", async (t) => {
    const namespace = await freshNamespace(t);
    const { core } = await connect();
    const owner = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: "owner" }, data: { a: "b" } } });
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: {
          name: "owned",
          ownerReferences: [
            { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata!.uid!, controller: true, blockOwnerDeletion: true },
          ],
        },
        stringData: { password: "not-a-real-one" },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace, name: "owner" });
    await eventually(
      "the owned Secret to be garbage-collected",
      async () => {
        const list = await core.listNamespacedSecret({ namespace });
        return list.items.some((s) => s.metadata?.name === "owned") ? undefined : true;
      },
      60_000,
    );
  });

  test("a ServiceAccount with no RoleBinding is forbidden, and allowed once bound", async (t) => {
    const namespace = await freshNamespace(t);
    const out = join(mkdtempSync(join(tmpdir(), "smtpc-sa-")), "kubeconfig");
    await serviceAccountKubeconfig(namespace, "nobody", out);

    const denied = await kubectl(["get", "secrets", "-n", namespace], { kubeconfig: out });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /forbidden/i);
    assert.match(denied.stderr, new RegExp(`system:serviceaccount:${namespace}:nobody`));

    const saConfig = new k8s.KubeConfig();
    saConfig.loadFromFile(out);
    const error = await saConfig
      .makeApiClient(k8s.CoreV1Api)
      .listNamespacedSecret({ namespace })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(error instanceof k8s.ApiException, `expected an ApiException, got ${String(error)}`);
    assert.equal(error.code, 403);

    const { config } = await connect();
    const rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: { metadata: { name: "read-secrets" }, rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["list"] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: "read-secrets" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "read-secrets" },
        subjects: [{ kind: "ServiceAccount", name: "nobody", namespace }],
      },
    });
    const allowed = await eventually("the RoleBinding to take effect", async () => {
      const r = await kubectl(["get", "secrets", "-n", namespace], { kubeconfig: out });
      return r.code === 0 ? r : undefined;
    });
    assert.equal(allowed.code, 0);
  });

  test("up stops every component and exits 0 on SIGTERM", async () => {
    const plane = await startControlPlane();
    const config = new k8s.KubeConfig();
    config.loadFromFile(plane.kubeconfig);
    const server = config.getCurrentCluster()!.server;
    const { port } = new URL(server);
    const listening = () =>
      new Promise<boolean>((resolve) => {
        const socket = createConnection({ host: "127.0.0.1", port: Number(port) });
        socket.once("connect", () => {
          socket.destroy();
          resolve(true);
        });
        socket.once("error", () => resolve(false));
      });
    assert.equal(await listening(), true);
    assert.equal(await plane.stop(), 0);
    assert.equal(await listening(), false, "kube-apiserver still listens after up exited");
  });
});
