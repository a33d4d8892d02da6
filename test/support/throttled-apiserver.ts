// A second kube-apiserver on the run's etcd (so the same cluster), with
// flow control reduced to the old in-flight limits and almost no room: the
// API server's own 429s, on demand. Its certificates and ServiceAccount keys
// are the run's, so the operator's kubeconfig works against it with only the
// server changed. Priority and fairness is off: it queues before it rejects,
// and its seats are shared with every client of the cluster; the in-flight
// limit rejects at once, and only this server's own clients count.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parse, stringify } from "yaml";
import { controlPlane } from "./controlplane.js";
import { freePort, stopChild } from "./mail.js";

export interface ThrottledApiServer {
  url: string;
  /** `kubeconfig` (a ServiceAccount's, with a token) pointed at this server instead. */
  kubeconfigFor(kubeconfig: string): string;
  /**
   * Takes every mutating seat of this server, each with a request whose body never comes, sent as the
   * ServiceAccount of `kubeconfig` (authenticated and allowed to create Events in `namespace`: a seat is taken
   * after authorization, while the body is read). Every other mutating request of a client outside
   * system:masters is answered 429 until `release`.
   */
  holdMutatingSeats(kubeconfig: string, namespace: string): Promise<{ release(): void }>;
  stop(): Promise<void>;
}

interface KubeconfigFile {
  clusters: { cluster: { server: string; "certificate-authority-data"?: string } }[];
  users: { user: { token?: string } }[];
}

/** The etcd the run's kube-apiserver uses, from its command line (hack/testenv writes it nowhere else). */
function etcdServersOf(pki: string): string {
  for (const pid of readdirSync("/proc").filter((p) => /^[0-9]+$/.test(p))) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (!args.includes(`--cert-dir=${pki}`)) continue;
    const etcd = args.find((a) => a.startsWith("--etcd-servers="));
    if (etcd) return etcd.slice("--etcd-servers=".length);
  }
  throw new Error(`no kube-apiserver with --cert-dir=${pki} found in /proc`);
}

export async function startThrottledApiServer({ maxMutatingInflight = 8 } = {}): Promise<ThrottledApiServer> {
  const { kubeconfig, binary } = await controlPlane();
  const pki = join(dirname(kubeconfig), "pki");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "smtpc-throttled-apiserver-"));
  const args = [
    "kube-apiserver",
    `--etcd-servers=${etcdServersOf(pki)}`,
    `--cert-dir=${dir}`,
    `--tls-cert-file=${pki}/apiserver.crt`,
    `--tls-private-key-file=${pki}/apiserver.key`,
    `--client-ca-file=${pki}/ca.crt`,
    `--secure-port=${port}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    "--service-cluster-ip-range=10.0.0.0/20",
    "--allow-privileged=true",
    "--authorization-mode=RBAC",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${pki}/sa.pub`,
    `--service-account-signing-key-file=${pki}/sa.key`,
    "--endpoint-reconciler-type=none",
    "--disable-admission-plugins=ServiceAccount",
    "--enable-priority-and-fairness=false",
    `--max-mutating-requests-inflight=${maxMutatingInflight}`,
    "--v=0",
  ];
  const child: ChildProcess = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const url = `https://127.0.0.1:${port}`;
  const agent = new https.Agent({
    ca: readFileSync(`${pki}/ca.crt`),
    cert: readFileSync(`${pki}/admin.crt`),
    key: readFileSync(`${pki}/admin.key`),
  });
  const ready = () =>
    new Promise<boolean>((resolve) => {
      const req = https.get(`${url}/readyz`, { agent }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on("error", () => resolve(false));
      req.setTimeout(2_000, () => req.destroy());
    });
  const deadline = Date.now() + 90_000;
  while (!(await ready())) {
    if (child.exitCode !== null) throw new Error(`the throttled kube-apiserver exited (${child.exitCode}): ${stderr}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the throttled kube-apiserver was not ready after 90 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  agent.destroy();

  const kubeconfigFor = (file: string): string => {
    const config = parse(readFileSync(file, "utf8")) as KubeconfigFile;
    for (const c of config.clusters) c.cluster.server = url;
    const out = join(dir, `kubeconfig-${config.clusters.length}-${Date.now()}`);
    writeFileSync(out, stringify(config), { mode: 0o600 });
    return out;
  };

  return {
    url,
    kubeconfigFor,
    async holdMutatingSeats(file, namespace) {
      const config = parse(readFileSync(file, "utf8")) as KubeconfigFile;
      const token = config.users[0]?.user.token;
      const ca = config.clusters[0]?.cluster["certificate-authority-data"];
      if (!token || !ca) throw new Error(`${file} has no token or CA data`);
      const held = await Promise.all(
        Array.from({ length: maxMutatingInflight }, async () => {
          const req = https.request(`${url}/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, {
            method: "POST",
            ca: Buffer.from(ca, "base64"),
            agent: false,
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": 100_000 },
          });
          req.on("error", () => undefined);
          // Headers and a first byte: the server authorizes it and waits in the handler for the rest.
          req.write("{");
          await new Promise<void>((resolve) => req.once("socket", (socket) => socket.once("secureConnect", () => resolve())));
          return req;
        }),
      );
      return { release: () => held.forEach((req) => req.destroy()) };
    },
    async stop() {
      process.off("exit", killOnExit);
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
