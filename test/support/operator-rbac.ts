// A kubeconfig with exactly the operator's RBAC (operator/rbac.ts, the source
// of the chart's ClusterRole), so tests run the operator as it runs in a
// cluster, not as admin.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import * as k8s from "@kubernetes/client-node";
import { clusterAccess } from "../../operator/kube/access.js";
import { Controller, type ControllerOptions } from "../../operator/controller.js";
import { createLogger } from "../../lib/log.js";
import { leaseRules, operatorRules } from "../../operator/rbac.js";
import { parseAllDocuments, stringify } from "yaml";
import { installCRDs } from "./crds.js";
import { helmOffline } from "./helm.js";
import { connect, kubectl, serviceAccountKubeconfig } from "./kube.js";

export const operatorNamespace = "smtp-connector-system";
let minted: Promise<string> | undefined;

export function operatorKubeconfig(): Promise<string> {
  minted ??= (async () => {
    const { config, core } = await connect();
    const rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
    const ignoreExists = (e: unknown) => {
      if (!(e instanceof k8s.ApiException && e.code === 409)) throw e;
    };
    await core.createNamespace({ body: { metadata: { name: operatorNamespace } } }).catch(ignoreExists);
    await rbac.createClusterRole({ body: { metadata: { name: "smtp-connector-operator" }, rules: operatorRules } }).catch(ignoreExists);
    await rbac
      .createClusterRoleBinding({
        body: {
          metadata: { name: "smtp-connector-operator" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "smtp-connector-operator" },
          subjects: [{ kind: "ServiceAccount", name: "smtp-connector", namespace: operatorNamespace }],
        },
      })
      .catch(ignoreExists);
    await rbac
      .createNamespacedRole({
        namespace: operatorNamespace,
        body: { metadata: { name: "smtp-connector-leader-election" }, rules: leaseRules },
      })
      .catch(ignoreExists);
    await rbac
      .createNamespacedRoleBinding({
        namespace: operatorNamespace,
        body: {
          metadata: { name: "smtp-connector-leader-election" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "smtp-connector-leader-election" },
          subjects: [{ kind: "ServiceAccount", name: "smtp-connector", namespace: operatorNamespace }],
        },
      })
      .catch(ignoreExists);
    return serviceAccountKubeconfig(
      operatorNamespace,
      "smtp-connector",
      join(mkdtempSync(join(tmpdir(), "smtpc-operator-")), "kubeconfig"),
    );
  })();
  return minted;
}

/**
 * A kubeconfig with the RBAC the chart itself renders for these values (its ServiceAccount, Roles and
 * bindings, ClusterRoles if any), installed as a release of its own in the operator's namespace.
 */
export async function chartRbacKubeconfig(release: string, values: Record<string, unknown>): Promise<string> {
  await operatorKubeconfig();
  const dir = mkdtempSync(join(tmpdir(), "smtpc-chart-rbac-"));
  writeFileSync(join(dir, "values.yaml"), stringify(values));
  const rendered = await helmOffline([
    "template",
    release,
    "charts/smtp-connector",
    "--namespace",
    operatorNamespace,
    "-f",
    join(dir, "values.yaml"),
  ]);
  if (rendered.code !== 0) throw new Error(`helm template failed: ${rendered.stderr}`);
  const rbac = parseAllDocuments(rendered.stdout)
    .map((d) => d.toJS() as { kind?: string } | null)
    .filter((d) => d && ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(d.kind ?? ""));
  const applied = await kubectl(["apply", "-f", "-"], { input: rbac.map((d) => stringify(d)).join("---\n") });
  if (applied.code !== 0) throw new Error(`applying the chart's RBAC failed: ${applied.stderr}`);
  const account = rbac.find((d) => d?.kind === "ServiceAccount") as { metadata: { name: string } };
  return serviceAccountKubeconfig(operatorNamespace, account.metadata.name, join(dir, "kubeconfig"));
}

/** An in-process Controller with the operator's RBAC (or another kubeconfig's); logs only with SMTPC_TEST_LOG=<level>. */
export async function startTestController(
  options: Omit<ControllerOptions, "log" | "settings"> & {
    settingsOverride?: Partial<ControllerOptions["settings"]>;
    kubeconfig?: string;
  } = {},
): Promise<Controller> {
  const { settingsOverride, kubeconfig, ...rest } = options;
  const level = process.env.SMTPC_TEST_LOG;
  const controller = new Controller(clusterAccess(kubeconfig ?? (await operatorKubeconfig())), {
    settings: { relayImage: "smtp-connector:test", relayHostSuffix: "relay.test", ...settingsOverride },
    log: createLogger("operator", level ? { level } : { level: "error", stream: new PassThrough() }),
    ...rest,
  });
  await controller.start();
  return controller;
}

/**
 * The CRDs installed, admin clients for the test's own reads and writes, and a test Controller issuing from a CA of
 * its own: `caSecret`, made by the operator on first use, so no other file's certificates or CA rotations meet this
 * one's. `stop` stops the Controller and deletes that Secret.
 */
export async function startControllerWithCA(
  caSecret: { namespace: string; name: string },
  settingsOverride: Partial<ControllerOptions["settings"]> = {},
): Promise<{ controller: Controller; core: k8s.CoreV1Api; custom: k8s.CustomObjectsApi; stop: () => Promise<void> }> {
  await installCRDs();
  const { config, core } = await connect();
  const controller = await startTestController({ settingsOverride: { caSecret, ...settingsOverride } });
  return {
    controller,
    core,
    custom: config.makeApiClient(k8s.CustomObjectsApi),
    stop: async () => {
      await controller.stop();
      await core.deleteNamespacedSecret(caSecret).catch(() => undefined);
    },
  };
}

/**
 * Once `controller`'s queue is idle, reconciles `key` once more and asserts that this wrote nothing (`what`, with the
 * writes it made).
 */
/**
 * Waits for the operator's steady state: its queue idle and no write for `quietMs`. An idle queue alone is not
 * it: the watch event of the last status write (and the reconcile it starts) can arrive after, on a busy machine.
 */
export async function operatorQuiet(controller: Controller, quietMs = 1_000, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await controller.queue.idle();
    const writes = controller.cluster.writes;
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    if (controller.cluster.writes === writes && controller.queue.depth === 0) return;
    assert.ok(
      Date.now() < deadline,
      `the operator still writes after ${timeoutMs} ms: ${controller.cluster.recentWrites.slice(-5).join(", ")}`,
    );
  }
}

export async function assertReconcileWritesNothing(controller: Controller, key: string, what: string): Promise<void> {
  await operatorQuiet(controller);
  const writes = controller.cluster.writes;
  controller.queue.add(key);
  await controller.queue.idle();
  assert.equal(
    controller.cluster.writes,
    writes,
    `${what}: ${controller.cluster.recentWrites.slice(writes - controller.cluster.writes).join(", ")}`,
  );
}
