// Runs a relay Deployment the operator created as a local process: its exact
// command and environment, with every Secret volume written out under a
// temporary root that stands in for the container's file system. This proves
// the Deployment is runnable without a container runtime.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as k8s from "@kubernetes/client-node";
import { kubectl } from "./kube.js";
import { stopChild } from "./mail.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface RunningDeployment {
  child: ChildProcess;
  root: string;
  logs(): string;
  /** Writes the Secret volumes again, as the kubelet does when a Secret changes (it also does so every second). */
  sync(): Promise<void>;
  /** Reports the pod available in the Deployment's status, as the kubelet and the Deployment controller would. */
  markAvailable(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs the Deployment's container as a local process, the way the kubelet
 * would run its pod. With `apps`, it also follows the Deployment: scaled to
 * zero or deleted, the process gets SIGTERM, as the pod would.
 */
export async function runDeployment(
  core: k8s.CoreV1Api,
  deployment: k8s.V1Deployment,
  apps?: k8s.AppsV1Api,
  /**
   * Appended to the command: `--kubeconfig <file>` for a pod that talks to the API server, in place of the
   * ServiceAccount token the kubelet would mount at /var/run/secrets (an absolute path this stand-in cannot re-root).
   */
  extraArgs: string[] = [],
): Promise<RunningDeployment> {
  const namespace = deployment.metadata!.namespace!;
  const pod = deployment.spec!.template.spec!;
  const container = pod.containers[0]!;
  const root = mkdtempSync(join(tmpdir(), "smtpc-pod-"));
  const mountPaths = (container.volumeMounts ?? []).map((m) => m.mountPath);
  const sync = async () => {
    for (const mount of container.volumeMounts ?? []) {
      const volume = pod.volumes?.find((v) => v.name === mount.name);
      const target = join(root, mount.mountPath);
      mkdirSync(target, { recursive: true });
      if (!volume?.secret) continue;
      const secret = await core.readNamespacedSecret({ namespace, name: volume.secret.secretName! });
      for (const [key, value] of Object.entries(secret.data ?? {})) {
        // Write then rename: readers never see half a file (the kubelet swaps a symlink).
        writeFileSync(join(target, `.${key}.tmp`), Buffer.from(value, "base64"));
        renameSync(join(target, `.${key}.tmp`), join(target, key));
      }
    }
  };
  await sync();
  // The container's paths, re-rooted; nothing else in the command changes.
  const reroot = (arg: string) => (mountPaths.some((m) => arg.startsWith(m)) ? join(root, arg) : arg);
  const [command, ...args] = [...[...(container.command ?? []), ...(container.args ?? [])].map(reroot), ...extraArgs];
  // The downward API fields a pod of ours uses; anything else is refused rather than silently empty.
  const fieldValue = (path: string) => {
    if (path === "metadata.namespace") return namespace;
    throw new Error(`the deployment runner does not provide fieldRef ${path}`);
  };
  const env = Object.fromEntries(
    (container.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef ? fieldValue(e.valueFrom.fieldRef.fieldPath) : (e.value ?? "")]),
  );
  let output = "";
  const child = spawn(command === "node" ? process.execPath : command!, args, {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  // The kubelet refreshes mounted Secrets on its own; so does this stand-in.
  let syncing = false;
  const follow = async () => {
    if (!apps || child.exitCode !== null) return;
    const current = await apps.readNamespacedDeployment({ namespace, name: deployment.metadata!.name! }).catch((error: unknown) => {
      if (error instanceof Error && /HTTP-Code: 404/.test(error.message)) return null;
      throw error;
    });
    if (current === null || current.spec?.replicas === 0) child.kill("SIGTERM");
  };
  const periodic = setInterval(() => {
    if (syncing) return;
    syncing = true;
    Promise.all([sync(), follow()])
      .catch(() => undefined)
      .finally(() => (syncing = false));
  }, 1_000);
  periodic.unref();
  return {
    child,
    root,
    logs: () => output,
    sync,
    markAvailable: () => markDeploymentAvailable(namespace, deployment.metadata!.name!, 1, deployment.metadata!.generation),
    stop: async () => {
      clearInterval(periodic);
      await stopChild(child);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Writes a Deployment's status as the Deployment controller would once `replicas` pods of its latest template (of
 * `observedGeneration`, when given) are available: there is no kubelet here.
 */
export async function markDeploymentAvailable(
  namespace: string,
  name: string,
  replicas: number,
  observedGeneration?: number,
): Promise<void> {
  const status = {
    ...(observedGeneration === undefined ? {} : { observedGeneration }),
    replicas,
    updatedReplicas: replicas,
    readyReplicas: replicas,
    availableReplicas: replicas,
  };
  const result = await kubectl([
    "patch",
    "deployment",
    name,
    "-n",
    namespace,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status }),
  ]);
  if (result.code !== 0) throw new Error(`marking Deployment ${namespace}/${name} available failed: ${result.stderr}`);
}
