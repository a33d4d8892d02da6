// Kubernetes helpers for the apiserver and e2e tiers: clients for the run's
// control plane, a fresh namespace per test, and kubectl from the same build.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { stringify } from "yaml";
import type { Condition, SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { controlPlane } from "./controlplane.js";

const execFileAsync = promisify(execFile);

export interface Cluster {
  kubeconfigPath: string;
  config: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  binary: string;
}

let cluster: Promise<Cluster> | undefined;

export function connect(): Promise<Cluster> {
  cluster ??= (async () => {
    const plane = await controlPlane();
    const config = new k8s.KubeConfig();
    config.loadFromFile(plane.kubeconfig);
    return { kubeconfigPath: plane.kubeconfig, config, core: config.makeApiClient(k8s.CoreV1Api), binary: plane.binary };
  })();
  return cluster;
}

/** Minimal view of the test context both `test()` and `describe()` hand out. */
interface Hooks {
  after(fn: () => Promise<void> | void): void;
}

/**
 * Creates a namespace for one test and deletes it when the test ends, pass or
 * fail. The namespace controller finishes the deletion in the background.
 */
export async function freshNamespace(t: Hooks, prefix = "t"): Promise<string> {
  const { core } = await connect();
  const name = `${prefix}-${randomBytes(4).toString("hex")}`;
  await core.createNamespace({ body: { metadata: { name, labels: { "smtpconnector.dev/test": "true" } } } });
  t.after(async () => {
    await core.deleteNamespace({ name }).catch(() => undefined);
  });
  return name;
}

/**
 * At the test's end its SmtpDomains are deleted, and waited for while the operator disconnects them (at most
 * `timeoutMs`; a test whose operator is stopped does not wait on it). Deleting the namespace alone reaches its
 * objects only after the namespace controller's fixed grace period (5 s): until then the next test's domain of
 * the same name, in its own namespace, is the later of two accounts (DomainConflict) and waits that long.
 */
export function deleteDomainsAtEnd(t: Hooks, namespace: string, timeoutMs = 15_000): void {
  t.after(async () => {
    const { config } = await connect();
    const custom = config.makeApiClient(k8s.CustomObjectsApi);
    const where = { group: "smtpconnector.dev", version: "v1alpha1", namespace, plural: "smtpdomains" };
    try {
      await custom.deleteCollectionNamespacedCustomObject(where);
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && ((await custom.listNamespacedCustomObject(where)) as { items: unknown[] }).items.length > 0)
        await new Promise((resolve) => setTimeout(resolve, 100));
    } catch {
      // Cleanup only: the namespace's deletion removes whatever is left.
    }
  });
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs the control plane's own kubectl; never throws on a non-zero exit. */
export async function kubectl(args: string[], options: { kubeconfig?: string; input?: string } = {}): Promise<KubectlResult> {
  const { kubeconfigPath, binary } = await connect();
  const run = execFileAsync(binary, ["kubectl", "--kubeconfig", options.kubeconfig ?? kubeconfigPath, ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
  if (options.input !== undefined) {
    run.child.stdin?.end(options.input);
  }
  try {
    const { stdout, stderr } = await run;
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: failed.stdout ?? "", stderr: failed.stderr ?? "", code: failed.code ?? 1 };
  }
}

/** Server-side applies manifests as a platform team would (kubectl, its own field manager); throws with kubectl's message on failure. */
export async function applyManifests(...manifests: object[]): Promise<string> {
  const result = await kubectl(["apply", "--server-side", "--field-manager=platform-team", "-f", "-"], {
    input: manifests.map((m) => stringify(m)).join("---\n"),
  });
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
  return result.stdout;
}

/** Mints a kubeconfig that authenticates as the ServiceAccount, for RBAC tests. */
export async function serviceAccountKubeconfig(namespace: string, name: string, out: string): Promise<string> {
  const { kubeconfigPath, binary } = await connect();
  await execFileAsync(binary, [
    "sa-kubeconfig",
    "--kubeconfig",
    kubeconfigPath,
    "--namespace",
    namespace,
    "--serviceaccount",
    name,
    "--create",
    "--out",
    out,
  ]);
  return out;
}

/** Polls until check returns a value other than undefined, or fails with the last reason. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? `: ${lastError.message}` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** An SmtpDomain as the API server returns it (example-com unless named). */
export async function readSmtpDomain(custom: k8s.CustomObjectsApi, namespace: string, name = "example-com"): Promise<SmtpDomain> {
  return (await custom.getNamespacedCustomObject({
    group: "smtpconnector.dev",
    version: "v1alpha1",
    namespace,
    plural: "smtpdomains",
    name,
  })) as SmtpDomain;
}

/** A SupportAddress as the API server returns it (support unless named). */
export async function readSupportAddress(custom: k8s.CustomObjectsApi, namespace: string, name = "support"): Promise<SupportAddress> {
  return (await custom.getNamespacedCustomObject({
    group: "smtpconnector.dev",
    version: "v1alpha1",
    namespace,
    plural: "supportaddresses",
    name,
  })) as SupportAddress;
}

/** One condition of an object's status, by type. */
export const conditionOf = (object: { status?: { conditions?: Condition[] } }, type: string): Condition | undefined =>
  object.status?.conditions?.find((c) => c.type === type);

/** A key of a Secret's data, decoded ("" when absent). */
export const secretText = (secret: k8s.V1Secret, key: string): string => Buffer.from(secret.data?.[key] ?? "", "base64").toString();

/** A Secret, once it exists. */
export const readSecret = (core: k8s.CoreV1Api, namespace: string, name: string, within = 60_000): Promise<k8s.V1Secret> =>
  eventually(`Secret ${name}`, () => core.readNamespacedSecret({ namespace, name }), within);
