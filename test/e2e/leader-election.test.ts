// Two operator replicas: only the Lease holder acts; when it dies the other
// takes over within the lease duration; a clean stop hands the Lease back.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, describe, test } from "node:test";
import { stringify } from "yaml";
import { installCRDs } from "../support/crds.js";
import { connect, eventually, freshNamespace, kubectl } from "../support/kube.js";
import { freePort, stopChild } from "../support/mail.js";
import { operatorKubeconfig, operatorNamespace } from "../support/operator-rbac.js";

interface Replica {
  child: ChildProcess;
  port: number;
  metric(name: string): Promise<number>;
}

async function replica(kubeconfig: string): Promise<Replica> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "operator/main.ts", "--kubeconfig", kubeconfig, "--metrics-port", String(port), "--leader-elect", "--leader-election-namespace", operatorNamespace, "--lease-duration-seconds", "4"],
    { stdio: ["ignore", "ignore", "ignore"], env: { ...process.env, LOG_LEVEL: "warn" } },
  );
  await eventually("the replica's metrics", async () => ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok ? true : undefined), 30_000);
  return {
    child,
    port,
    metric: async (name) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      return Number(line?.split(" ")[1] ?? NaN);
    },
  };
}

const domain = (namespace: string) => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace },
  spec: { domain: `${namespace}.example.com`, inbound: { delivery: { smtp: { host: "ingest.svc", port: 25, tls: "None" } } } },
});

describe("leader election", () => {
  const replicas: Replica[] = [];
  after(async () => {
    for (const r of replicas) await stopChild(r.child);
  });

  test("one replica acts, the other takes over when it dies, and a clean stop releases the Lease", async (t) => {
    await installCRDs();
    const { core } = await connect();
    const kubeconfig = await operatorKubeconfig();
    const holder = async () => {
      const lease = await kubectl(["get", "lease", "smtp-connector-operator", "-n", operatorNamespace, "-o", "jsonpath={.spec.holderIdentity}"]);
      return lease.code === 0 ? lease.stdout : "";
    };
    const first = await replica(kubeconfig);
    replicas.push(first);
    await eventually("the first replica to lead", async () => ((await holder()).endsWith(`-${first.child.pid}`) ? true : undefined), 20_000);
    const second = await replica(kubeconfig);
    replicas.push(second);

    const one = await freshNamespace(t, "le");
    assert.equal((await kubectl(["apply", "--server-side", "-f", "-"], { input: stringify(domain(one)) })).code, 0);
    await eventually("the leader to issue credentials", () => core.readNamespacedSecret({ namespace: one, name: "example-com-inbound-v1" }), 30_000);
    assert.ok((await first.metric("smtpc_operator_api_writes")) > 0);
    assert.equal(await second.metric("smtpc_operator_api_writes"), 0, "the standby wrote nothing");
    assert.equal(await second.metric("smtpc_operator_leader"), 0);

    first.child.kill("SIGKILL");
    const killedAt = Date.now();
    // Within about one lease duration; how long exactly is the machine's business, not this test's.
    await eventually("the second replica to take over", async () => ((await holder()).endsWith(`-${second.child.pid}`) ? true : undefined), 60_000);
    t.diagnostic(`took over ${Date.now() - killedAt} ms after the leader was killed`);
    const two = await freshNamespace(t, "le");
    assert.equal((await kubectl(["apply", "--server-side", "-f", "-"], { input: stringify(domain(two)) })).code, 0);
    await eventually("the new leader to issue credentials", () => core.readNamespacedSecret({ namespace: two, name: "example-com-inbound-v1" }), 30_000);

    const exited = new Promise<number | null>((resolve) => second.child.once("exit", (code) => resolve(code)));
    second.child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.equal(await holder(), "", "a clean stop hands the Lease back");
  });
});
