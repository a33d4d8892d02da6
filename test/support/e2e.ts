// What the end-to-end tests (and the demo) share: the API clients, the
// operator command under the chart's RBAC, and a SupportAddress whose
// outbound server is a local Postfix.
import { spawn, type ChildProcess } from "node:child_process";
import * as k8s from "@kubernetes/client-node";
import { installCRDs } from "./crds.js";
import { connect } from "./kube.js";
import { operatorKubeconfig } from "./operator-rbac.js";

export interface Clients {
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  custom: k8s.CustomObjectsApi;
}

/** The CRDs installed, and admin clients for the test's own reads and writes. */
export async function e2eClients(): Promise<Clients> {
  await installCRDs();
  const { config, core } = await connect();
  return { core, apps: config.makeApiClient(k8s.AppsV1Api), custom: config.makeApiClient(k8s.CustomObjectsApi) };
}

/** The operator command (`npm run operator`), with the chart's RBAC, not admin. */
export async function startOperatorCommand(args: string[] = [], kubeconfig?: string): Promise<ChildProcess> {
  return spawn(process.execPath, ["--import", "tsx", "operator/main.ts", "--kubeconfig", kubeconfig ?? (await operatorKubeconfig()), "--metrics-port", "0", ...args], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, LOG_LEVEL: "warn" },
  });
}

/** A SupportAddress sending through a local server that wants StartTLS and the login in `credentials`, trusted via `ca`. */
export function localServerAddress(namespace: string, port: number, extra: { verification?: object } = {}) {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SupportAddress",
    metadata: { name: "support", namespace },
    spec: {
      address: "support@example.com",
      domainRef: { name: "example-com" },
      outbound: { host: "127.0.0.1", port, tls: "StartTLS", credentialsSecretRef: { name: "support-smtp" }, caSecretRef: { name: "customer-ca" } },
      ...(extra.verification ? { verification: extra.verification } : {}),
    },
  };
}
