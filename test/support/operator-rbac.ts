// A kubeconfig with exactly the operator's RBAC (operator/rbac.ts, the source
// of the chart's ClusterRole), so tests run the operator as it runs in a
// cluster, not as admin.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import * as k8s from "@kubernetes/client-node";
import { clusterAccess } from "../../operator/kube/access.js";
import { Controller, type ControllerOptions } from "../../operator/controller.js";
import { createLogger } from "../../lib/log.js";
import { leaseRules, operatorRules } from "../../operator/rbac.js";
import { connect, serviceAccountKubeconfig } from "./kube.js";

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
    await rbac.createNamespacedRole({ namespace: operatorNamespace, body: { metadata: { name: "smtp-connector-leader-election" }, rules: leaseRules } }).catch(ignoreExists);
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
    return serviceAccountKubeconfig(operatorNamespace, "smtp-connector", join(mkdtempSync(join(tmpdir(), "smtpc-operator-")), "kubeconfig"));
  })();
  return minted;
}

/** An in-process Controller with the operator's RBAC; logs only with SMTPC_TEST_LOG=<level>. */
export async function startTestController(options: Omit<ControllerOptions, "log" | "settings"> & { settingsOverride?: Partial<ControllerOptions["settings"]> } = {}): Promise<Controller> {
  const { settingsOverride, ...rest } = options;
  const level = process.env.SMTPC_TEST_LOG;
  const controller = new Controller(clusterAccess(await operatorKubeconfig()), {
    settings: { relayImage: "smtp-connector:test", relayHostSuffix: "relay.test", ...settingsOverride },
    log: createLogger("operator", level ? { level } : { level: "error", stream: new PassThrough() }),
    ...rest,
  });
  await controller.start();
  return controller;
}
