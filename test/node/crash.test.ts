// One node per machine, and a node whose supervisor was SIGKILLed is cleaned
// up by the next one: while a node runs, a second `testenv up --node` exits
// naming the first one's PID and leaves it running; after a SIGKILL of the
// first (its kubelet, containerd, pods and control plane orphaned, its address,
// bridge, chains, ipsets and cgroups left), the next start removes all of it,
// says what it removed, comes up, and its own teardown leaves the host as it
// was. It starts nodes of its own: run it on its own, not beside the tier's.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { claimFile, hostState } from "../../hack/node/node.js";
import { startCluster, startSleeper, type Cluster } from "../support/node.js";
import { eventually } from "../support/kube.js";

const run = promisify(execFile);
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

const running = (pid: number) => {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
};
/** The node's processes, as its claim recorded them. */
const recorded = () => JSON.parse(readFileSync(claimFile, "utf8")) as { pid: number; processes: { name: string; pid: number }[] };

test(
  "one node per machine: a second node is refused naming the first; a SIGKILLed node is cleaned up by the next, which comes up and leaves the host as it was",
  { timeout: 1_500_000 },
  async (t) => {
    const before = await hostState();
    const first = await startCluster();
    let second: Cluster | undefined;
    try {
      await startSleeper(first);

      // A second node on the same machine: refused at once, naming the holder; the first is unaffected.
      const started = Date.now();
      const other = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "hack/node/up.ts")], {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let otherErr = "";
      other.stderr.on("data", (chunk: Buffer) => (otherErr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => other.once("exit", resolve));
      assert.equal(code, 3, otherErr);
      assert.match(
        otherErr,
        new RegExp(`a node already runs on this machine: pid ${first.pid} \\(.*up\\.ts.*\\), state in \\S+; one node per machine`),
        otherErr,
      );
      t.diagnostic(`the second node refused in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const node = await run(first.testenv, [
        "kubectl",
        `--kubeconfig=${first.kubeconfig}`,
        "get",
        "node",
        "-o",
        'jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}',
      ]);
      assert.equal(node.stdout, "True", "the first node still Ready");
      assert.equal(recorded().pid, first.pid, "the claim still names the first node");

      // The first node's supervisor SIGKILLed: everything it started keeps running, and the host keeps its traces.
      const orphans = recorded().processes;
      assert.ok(
        ["namespace", "containerd", "kubelet", "kube-scheduler", "kube-proxy", "kube-router", "control plane"].every((n) =>
          orphans.some((p) => p.name === n),
        ),
        JSON.stringify(orphans),
      );
      process.kill(first.pid, "SIGKILL");
      await eventually("the supervisor gone", () => Promise.resolve(running(first.pid) ? undefined : true), 10_000);
      const left = await hostState();
      assert.ok(
        left.loAddresses.includes("172.30.255.1/32") && left.links.includes("smtpc0") && left.cgroups.some((c) => c.endsWith("/kubepods")),
        JSON.stringify(left),
      );
      assert.ok(
        orphans.filter((p) => p.name === "kubelet" || p.name === "containerd").every((p) => running(p.pid)),
        "the kubelet and containerd outlive their supervisor",
      );

      // The next node: it cleans up (and says what), then comes up.
      second = await startCluster();
      assert.match(
        second.stderr(),
        new RegExp(
          `a node left behind by pid ${first.pid} \\(not running\\) was cleaned up: killed .*kubelet \\(pid \\d+\\).*containerd-shim.*a pod's process.*address on lo: 172\\.30\\.255\\.1/32.*links: smtpc0.*iptables chains: .*KUBE-.*ipsets: KUBE-.*cgroups: .*kubepods`,
        ),
        second.stderr(),
      );
      t.diagnostic(
        second
          .stderr()
          .split("\n")
          .find((l) => l.includes("left behind")) ?? "",
      );
      assert.ok(
        orphans.every((p) => !running(p.pid)),
        `every process of the first node is gone: ${JSON.stringify(orphans.filter((p) => running(p.pid)))}`,
      );
      await startSleeper(second);
      const exit = await second.stop();
      second = undefined;
      assert.equal(exit, 0, "a clean exit on SIGTERM");
      assert.deepEqual(await hostState(), before);
    } finally {
      if (running(first.pid)) await first.stop();
      await second?.stop();
    }
  },
);
