// Kubernetes helpers for the apiserver and e2e tiers: clients for the run's
// control plane, a fresh namespace per test, and kubectl from the same build.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { stringify } from "yaml";
import type { Condition, SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { request, type ClusterAccess } from "../../operator/kube/access.js";
import type { RelayConfig } from "../../relay/contract/config.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { controlPlane } from "./controlplane.js";
import { tlsSecretManifest } from "./mail.js";

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

/** A fresh namespace (as freshNamespace gives) holding relay-tls, a TLS Secret a domain's relay may serve. */
export async function namespaceWithRelayTls(t: Hooks, prefix: string): Promise<string> {
  const namespace = await freshNamespace(t, prefix);
  await applyManifests(await tlsSecretManifest(namespace));
  return namespace;
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

async function readOurs<T>(custom: k8s.CustomObjectsApi, plural: string, namespace: string, name: string): Promise<T> {
  return (await custom.getNamespacedCustomObject({ group: "smtpconnector.dev", version: "v1alpha1", namespace, plural, name })) as T;
}

/** An SmtpDomain as the API server returns it (example-com unless named). */
export const readSmtpDomain = (custom: k8s.CustomObjectsApi, namespace: string, name = "example-com"): Promise<SmtpDomain> =>
  readOurs(custom, "smtpdomains", namespace, name);

/** A SupportAddress as the API server returns it (support unless named). */
export const readSupportAddress = (custom: k8s.CustomObjectsApi, namespace: string, name = "support"): Promise<SupportAddress> =>
  readOurs(custom, "supportaddresses", namespace, name);

/** The relay config rendered for example-com (unless named), read with the relay's own parser: the contract. */
export const readRelayConfig = async (core: k8s.CoreV1Api, namespace: string, domain = "example-com"): Promise<RelayConfig> =>
  parseConfig(secretText(await core.readNamespacedSecret({ namespace, name: `${domain}-relay-config` }), "relay.yaml"));

/** One condition of an object's status, by type. */
export const conditionOf = (object: { status?: { conditions?: Condition[] } }, type: string): Condition | undefined =>
  object.status?.conditions?.find((c) => c.type === type);

/** A key of a Secret's data, decoded ("" when absent). */
export const secretText = (secret: k8s.V1Secret, key: string): string => Buffer.from(secret.data?.[key] ?? "", "base64").toString();

/** A Secret, once it exists. */
export const readSecret = (core: k8s.CoreV1Api, namespace: string, name: string, within = 60_000): Promise<k8s.V1Secret> =>
  eventually(`Secret ${name}`, () => core.readNamespacedSecret({ namespace, name }), within);

/**
 * Polls `read` until the object's condition `type` is as wanted: with the status and reason given, or as `wanted`
 * judges it (the condition, undefined when absent, and the object); resolves to that object. A failed read is tried
 * again.
 */
export function waitForCondition<T extends { status?: { conditions?: Condition[] } }>(
  what: string,
  read: () => Promise<T>,
  type: string,
  wanted: { status?: Condition["status"]; reason?: string } | ((condition: Condition | undefined, object: T) => boolean),
  timeoutMs?: number,
): Promise<T> {
  const matches =
    typeof wanted === "function"
      ? wanted
      : (c: Condition | undefined) =>
          c !== undefined &&
          (wanted.status === undefined || c.status === wanted.status) &&
          (wanted.reason === undefined || c.reason === wanted.reason);
  return eventually(
    what,
    async () => {
      const object = await read();
      return matches(conditionOf(object, type), object) ? object : undefined;
    },
    timeoutMs,
  );
}

/** Each Event's `field` (its message unless told) of those in `namespace` that `fieldSelector` selects, space-separated; "" when none. */
export async function listEvents(namespace: string, fieldSelector: string, field = "message"): Promise<string> {
  const listed = await kubectl([
    "get",
    "events",
    "-n",
    namespace,
    "--field-selector",
    fieldSelector,
    "-o",
    `jsonpath={.items[*].${field}}`,
  ]);
  if (listed.code !== 0) throw new Error(`kubectl get events failed: ${listed.stderr}`);
  return listed.stdout.trim();
}

/** Waits until an Event that `fieldSelector` selects is in `namespace`; resolves to the messages of all of them. */
export const waitForEvents = (what: string, namespace: string, fieldSelector: string, timeoutMs?: number): Promise<string> =>
  eventually(what, async () => (await listEvents(namespace, fieldSelector)) || undefined, timeoutMs);

/** A user as the API server authenticated it. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** Who the API server authenticates requests made with `access` as (a SelfSubjectReview); throws unless it answers 201. */
export async function selfSubjectReview(access: ClusterAccess): Promise<UserInfo> {
  const review = await request(
    access,
    "POST",
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
  );
  if (review.status !== 201) throw new Error(`SelfSubjectReview answered ${review.status}: ${review.body}`);
  return (JSON.parse(review.body) as { status: { userInfo: UserInfo } }).status.userInfo;
}
