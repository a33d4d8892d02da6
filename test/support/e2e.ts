// What the end-to-end tests (and the demo) share: the API clients, the
// operator command under the chart's RBAC, and a SupportAddress whose
// outbound server is a local Postfix.
import { spawn, type ChildProcess } from "node:child_process";
import * as k8s from "@kubernetes/client-node";
import { installCRDs } from "./crds.js";
import { relayPorts } from "../../relay/contract/pod.js";
import { connect, eventually, kubectl, secretText } from "./kube.js";
import { swaksAuth, type SwaksResult } from "./mail.js";
import { supportAddressManifest } from "./manifests.js";
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
  return spawn(
    process.execPath,
    ["--import", "tsx", "operator/main.ts", "--kubeconfig", kubeconfig ?? (await operatorKubeconfig()), "--metrics-port", "0", ...args],
    {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, LOG_LEVEL: "warn" },
    },
  );
}

/**
 * The operator's flags for verification in a flow: the helpdesk's system domain helpdesk.test and its sender, the
 * customer's server on 127.0.0.1:`port`, the relay's control API on loopback (no cluster DNS here).
 */
export const verificationFlags = (port: number): string[] => [
  "--system-domains",
  "helpdesk.test",
  "--verification-sender",
  "verify@helpdesk.test",
  "--verification-smtp",
  `127.0.0.1:${port}`,
  "--relay-control-url",
  "https://127.0.0.1:8443",
];

/** Asks for verification again, as `kubectl smtpconnector verify` does: the annotation at `at`, on support unless told (or --all). */
export async function requestVerification(namespace: string, at: string, which = "support"): Promise<void> {
  const annotated = await kubectl([
    "annotate",
    "supportaddress",
    which,
    "-n",
    namespace,
    `smtpconnector.dev/verify-requested-at=${at}`,
    "--overwrite",
  ]);
  if (annotated.code !== 0) throw new Error(`kubectl annotate failed: ${annotated.stderr}`);
}

/**
 * swaks as the helpdesk sending: its login from the example-com-submission Secret, on the relay's submission port (on
 * 127.0.0.1), from support@example.com to customer@elsewhere.test unless told.
 */
export function helpdeskSubmit(
  submission: k8s.V1Secret,
  extra: string[] = [],
  { from = "support@example.com", to = "customer@elsewhere.test" } = {},
): Promise<SwaksResult> {
  const login = { user: secretText(submission, "username"), password: secretText(submission, "password") };
  return swaksAuth(relayPorts.submission, login, extra, { from, to });
}

/** A SupportAddress sending through a local server that wants StartTLS and the login in `credentials`, trusted via `ca`. */
export function localServerAddress(namespace: string, port: number, extra: { verification?: object } = {}) {
  return supportAddressManifest(
    namespace,
    { host: "127.0.0.1", port, tls: "StartTLS", credentialsSecretRef: { name: "support-smtp" }, caSecretRef: { name: "customer-ca" } },
    extra,
  );
}

/** Waits until a relay run from its Deployment (deployment-runner) answers /readyz on its health port. */
export function relayReady(healthPort = 8080): Promise<true> {
  return eventually(
    "the relay to be ready",
    async () => ((await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
    30_000,
  );
}

/**
 * support@example.com with an outbound server the scenario never reaches (it
 * tests inbound, certificates, the chart or the plugin), and its credentials Secret.
 */
export function inboundOnlyAddress(namespace: string): object[] {
  return [
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "support-smtp", namespace },
      stringData: { username: "support@example.com", password: "x" },
    },
    supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "support-smtp" } }),
  ];
}
