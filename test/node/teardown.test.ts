// `testenv up --node` leaves nothing on the host once it gets SIGTERM: no
// address on lo, no bridge, no iptables chain or ipset, no cgroup, no mount,
// none of the host paths the kubelet and containerd use, no sysctl changed.
// A pod and a NetworkPolicy exist first, so there is a sandbox, a veth,
// cgroups, volume mounts, kube-proxy's and kube-router's chains and ipsets to
// remove. It starts a node of its own: run it on its own, not beside the tier's.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { hostState } from "../../hack/node/node.js";
import { startCluster } from "../support/node.js";
import { eventually } from "../support/kube.js";

const run = promisify(execFile);

test("SIGTERM stops the node and the control plane and leaves the host as it was", { timeout: 900_000 }, async () => {
  const before = await hostState();
  const cluster = await startCluster();
  let stopped = false;
  try {
    const kubectl = (...args: string[]) => run(cluster.testenv, ["kubectl", `--kubeconfig=${cluster.kubeconfig}`, ...args]);
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "sleeper", namespace: "default" },
      spec: {
        securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
          {
            name: "sleeper",
            image: cluster.image,
            imagePullPolicy: "Never",
            command: ["node", "-e", "setInterval(() => {}, 1 << 30)"],
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
            volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
          },
        ],
        volumes: [{ name: "tmp", emptyDir: { sizeLimit: "1Mi" } }],
      },
    };
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
    await kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s");

    const during = await hostState();
    // The comparison below means something only if the node's traces are visible to it.
    assert.ok(during.loAddresses.includes("172.30.255.1/32"), "the node's address is on lo");
    assert.ok(during.links.includes("smtpc0"), "the CNI bridge exists");
    assert.ok(
      during.cgroups.some((c) => c.endsWith("/kubepods")),
      "the pods' cgroups exist",
    );
    assert.ok(during.iptables.length > before.iptables.length, "the kubelet added iptables chains");
    await eventually(
      "kube-router's ipsets for the policy",
      async () => ((await hostState()).ipsets.length > before.ipsets.length ? true : undefined),
      30_000,
    );

    assert.equal(await cluster.stop(), 0, "a clean exit on SIGTERM");
    stopped = true;
    assert.deepEqual(await hostState(), before);
  } finally {
    if (!stopped) await cluster.stop();
  }
});
