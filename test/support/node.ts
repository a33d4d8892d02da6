// A control plane with a real node (hack/node/up.ts): pods run from the image
// `npm run image` built in this run. hack/test-tier.sh node starts one for the
// whole tier and passes it in SMTPC_NODE_CLUSTER (JSON of the ready event); a
// file run on its own starts a private one.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface Cluster {
  kubeconfig: string;
  node: string;
  /** The image built from the Dockerfile, imported into the node's containerd (pull policy Never). */
  image: string;
  testenv: string;
  /** hack/node/up.ts's PID: the node's supervisor, named in its claim. */
  pid: number;
  /** What up.ts printed on stderr so far (its log lines). */
  stderr(): string;
  /** SIGTERM, as a user's Ctrl-C: resolves to the exit code once the node and control plane are down. */
  stop(): Promise<number | null>;
}

export async function startCluster(timeoutMs = 900_000): Promise<Cluster> {
  const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "hack/node/up.ts")], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = await new Promise<{ kubeconfig: string; node: string; image: string; testenv: string }>((resolve, reject) => {
    const timer = setTimeout(() => (child.kill("SIGTERM"), reject(new Error(`no node after ${timeoutMs} ms:\n${stderr}`))), timeoutMs);
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n").find((l) => l.includes('"event":"ready"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { kubeconfig: string; node: string; image: string; testenv: string });
      }
    });
    child.once(
      "exit",
      (code) => (clearTimeout(timer), reject(new Error(`hack/node/up.ts exited (${code}) before the node was ready:\n${stderr}`))),
    );
  });
  return { ...ready, pid: child.pid!, stderr: () => stderr, stop: () => stopCluster(child) };
}

async function stopCluster(child: ChildProcess): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    await exited;
  }
  return child.exitCode;
}

/**
 * A pod `name` in `namespace` that only idles, from the cluster's image (pull policy Never), as the restricted Pod
 * Security profile wants it: non-root, no capability, a read-only root. `spec` adds to its spec, `container` to its
 * one container.
 */
export function idlePod(
  image: string,
  namespace: string,
  name: string,
  { spec = {}, container = {} }: { spec?: Record<string, unknown>; container?: Record<string, unknown> } = {},
) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: "RuntimeDefault" } },
      containers: [
        {
          name,
          image,
          imagePullPolicy: "Never",
          command: ["node", "-e", "setInterval(() => {}, 1 << 30)"],
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
          ...container,
        },
      ],
      ...spec,
    },
  };
}

/**
 * A pod ("sleeper", in default, from the cluster's image) and a NetworkPolicy selecting it, applied and waited
 * Ready: a sandbox, a veth, cgroups, kube-proxy's and kube-router's chains and ipsets exist then, the host traces
 * a node's teardown must remove. With `tmpVolume`, an emptyDir on /tmp: a volume mount too.
 */
export async function startSleeper(cluster: Cluster, { tmpVolume = false } = {}): Promise<void> {
  const pod = idlePod(
    cluster.image,
    "default",
    "sleeper",
    tmpVolume
      ? {
          spec: { volumes: [{ name: "tmp", emptyDir: { sizeLimit: "1Mi" } }] },
          container: { volumeMounts: [{ name: "tmp", mountPath: "/tmp" }] },
        }
      : {},
  );
  // A NetworkPolicy for it: kube-router's chains and ipsets.
  const policy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "sleeper", namespace: "default" },
    spec: {
      podSelector: {},
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ ipBlock: { cidr: "203.0.113.0/24" } }], ports: [{ protocol: "TCP", port: 8587 }] }],
    },
  };
  const applied = execFile(cluster.testenv, ["kubectl", `--kubeconfig=${cluster.kubeconfig}`, "apply", "-f", "-"]);
  applied.stdin!.end(JSON.stringify({ apiVersion: "v1", kind: "List", items: [pod, policy] }));
  await new Promise((resolve, reject) =>
    applied.once("exit", (code) => (code === 0 ? resolve(code) : reject(new Error(`kubectl apply exited ${code}`)))),
  );
  await promisify(execFile)(cluster.testenv, [
    "kubectl",
    `--kubeconfig=${cluster.kubeconfig}`,
    "wait",
    "--for=condition=Ready",
    "pod/sleeper",
    "--timeout=120s",
  ]);
}
