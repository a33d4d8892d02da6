// `testenv up --node` leaves nothing on the host once it gets SIGTERM: no
// address on lo, no bridge, no iptables chain or ipset, no cgroup, no mount,
// none of the host paths the kubelet and containerd use, no sysctl changed.
// A pod and a NetworkPolicy exist first, so there is a sandbox, a veth,
// cgroups, volume mounts, kube-proxy's and kube-router's chains and ipsets to
// remove. It starts a node of its own: run it on its own, not beside the tier's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { hostState } from "../../hack/node/node.js";
import { startCluster, startSleeper } from "../support/node.js";
import { eventually } from "../support/kube.js";

test("SIGTERM stops the node and the control plane and leaves the host as it was", { timeout: 900_000 }, async () => {
  const before = await hostState();
  const cluster = await startCluster();
  let stopped = false;
  try {
    await startSleeper(cluster, { tmpVolume: true });

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
