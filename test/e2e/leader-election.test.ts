// Two operator replicas: only the Lease holder acts; when it dies the other
// takes over within the lease duration; a clean stop hands the Lease back.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, Socket, type Server } from "node:net";
import { after, describe, test } from "node:test";
import { stringify } from "yaml";
import { installCRDs } from "../support/crds.js";
import { connect, eventually, freshNamespace, kubectl } from "../support/kube.js";
import { freePort, stopChild } from "../support/mail.js";
import { operatorKubeconfig, operatorNamespace } from "../support/operator-rbac.js";

interface Replica {
  child: ChildProcess;
  /** The end of its log (warnings and errors), for failure messages. */
  log(): string;
  port: number;
  metric(name: string): Promise<number>;
}

/** An operator replica; `clockAheadSeconds` runs it under libfaketime with its wall clock that far ahead (its monotonic clock untouched). */
async function replica(kubeconfig: string, { clockAheadSeconds = 0 } = {}): Promise<Replica> {
  const port = await freePort();
  const args = [
    "--import",
    "tsx",
    "operator/main.ts",
    "--kubeconfig",
    kubeconfig,
    "--metrics-port",
    String(port),
    "--leader-elect",
    "--leader-election-namespace",
    operatorNamespace,
    "--lease-duration-seconds",
    "4",
  ];
  // libfaketime preloaded into node itself (not the faketime wrapper, which would stand between the test and the replica's signals).
  const skew = clockAheadSeconds
    ? { LD_PRELOAD: fakeTimeLibrary(), FAKETIME: `+${clockAheadSeconds}s`, FAKETIME_DONT_FAKE_MONOTONIC: "1" }
    : {};
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, LOG_LEVEL: process.env.SMTPC_TEST_LOG ?? "warn", ...skew },
  });
  let log = "";
  child.stderr?.on("data", (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  await eventually(
    "the replica's metrics",
    async () => ((await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok ? true : undefined),
    30_000,
  );
  return {
    child,
    log: () => log,
    port,
    metric: async (name) => {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      if (!response) return NaN;
      const text = await response.text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      return Number(line?.split(" ")[1] ?? NaN);
    },
  };
}

/** Debian's libfaketime (installed by hack/setup.sh). */
function fakeTimeLibrary(): string {
  const library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
  assert.ok(existsSync(library), `${library} is missing: apt-get install faketime`);
  return library;
}

const holder = async () => {
  const lease = await kubectl([
    "get",
    "lease",
    "smtp-connector-operator",
    "-n",
    operatorNamespace,
    "-o",
    "jsonpath={.spec.holderIdentity}",
  ]);
  return lease.code === 0 ? lease.stdout : "";
};

/**
 * A TCP proxy in front of the API server that can hang: from `hang()` on it
 * accepts and holds every connection but forwards nothing either way, as a
 * partitioned or overloaded API server looks to a client.
 */
async function hangableProxy(kubeconfig: string): Promise<{ kubeconfig: string; hang(): void; close(): void }> {
  const text = readFileSync(kubeconfig, "utf8");
  const match = /server: https:\/\/127\.0\.0\.1:(\d+)/.exec(text);
  assert.ok(match, "the kubeconfig names the API server on 127.0.0.1");
  const upstream = Number(match[1]);
  let hung = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => undefined);
    if (hung) return client.pause();
    const api = new Socket().connect(upstream, "127.0.0.1");
    sockets.add(api);
    api.on("error", () => client.destroy());
    client.pipe(api);
    api.pipe(client);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const file = `${kubeconfig}.proxied`;
  writeFileSync(file, text.replace(match[0], `server: https://127.0.0.1:${port}`));
  return {
    kubeconfig: file,
    hang: () => {
      hung = true;
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
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
    const first = await replica(kubeconfig);
    replicas.push(first);
    await eventually(
      "the first replica to lead",
      async () => ((await holder()).endsWith(`-${first.child.pid}`) ? true : undefined),
      20_000,
    );
    const second = await replica(kubeconfig);
    replicas.push(second);

    const one = await freshNamespace(t, "le");
    assert.equal((await kubectl(["apply", "--server-side", "-f", "-"], { input: stringify(domain(one)) })).code, 0);
    await eventually(
      "the leader to issue credentials",
      () => core.readNamespacedSecret({ namespace: one, name: "example-com-inbound-v1" }),
      30_000,
    );
    assert.ok((await first.metric("smtpc_operator_api_writes")) > 0);
    assert.equal(await second.metric("smtpc_operator_api_writes"), 0, "the standby wrote nothing");
    assert.equal(await second.metric("smtpc_operator_leader"), 0);

    first.child.kill("SIGKILL");
    const killedAt = Date.now();
    // Within about one lease duration; how long exactly is the machine's business, not this test's.
    await eventually(
      "the second replica to take over",
      async () => ((await holder()).endsWith(`-${second.child.pid}`) ? true : undefined),
      60_000,
    );
    t.diagnostic(`took over ${Date.now() - killedAt} ms after the leader was killed`);
    const two = await freshNamespace(t, "le");
    assert.equal((await kubectl(["apply", "--server-side", "-f", "-"], { input: stringify(domain(two)) })).code, 0);
    await eventually(
      "the new leader to issue credentials",
      () => core.readNamespacedSecret({ namespace: two, name: "example-com-inbound-v1" }),
      30_000,
    );

    const exited = new Promise<number | null>((resolve) => second.child.once("exit", (code) => resolve(code)));
    second.child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.equal(await holder(), "", "a clean stop hands the Lease back");
  });

  test("probes: the leader is ready once its informers synced, a standby once it has read the Lease; a replica that cannot reach the API server is alive but not ready", async (t) => {
    const readyz = async (r: Replica) => {
      const response = await fetch(`http://127.0.0.1:${r.port}/readyz`);
      return `${response.status} ${(await response.text()).trim()}`;
    };
    await installCRDs();
    const kubeconfig = await operatorKubeconfig();
    const leader = await replica(kubeconfig);
    t.after(() => stopChild(leader.child));
    await eventually(
      "the first replica to lead",
      async () => ((await holder()).endsWith(`-${leader.child.pid}`) ? true : undefined),
      30_000,
    );
    assert.equal(
      await eventually("the leader ready", async () => ((await readyz(leader)).startsWith("200") ? readyz(leader) : undefined), 30_000),
      "200 ready: leader; informers synced",
    );
    const standby = await replica(kubeconfig);
    t.after(() => stopChild(standby.child));
    assert.equal(
      await eventually("the standby ready", async () => ((await readyz(standby)).startsWith("200") ? readyz(standby) : undefined), 30_000),
      "200 ready: standby; the Lease was read",
    );
    assert.equal(await standby.metric("smtpc_operator_leader"), 0, "ready without leading");

    // The API server unreachable (every connection held, nothing answered) from the start: alive, never ready.
    const proxy = await hangableProxy(kubeconfig);
    t.after(() => proxy.close());
    proxy.hang();
    const cut = await replica(proxy.kubeconfig);
    t.after(() => stopChild(cut.child));
    for (const end = Date.now() + 6_000; Date.now() < end;) {
      assert.equal(await readyz(cut), "503 not ready: standby; the Lease not read yet (the API server not reached)");
      assert.equal((await fetch(`http://127.0.0.1:${cut.port}/healthz`)).status, 200, "liveness does not depend on the API server");
      assert.equal(cut.child.exitCode, null, "it keeps running");
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  });

  test("a standby whose wall clock runs 20 s ahead never takes the lease from a live leader", async (t) => {
    const kubeconfig = await operatorKubeconfig();
    const leader = await replica(kubeconfig);
    t.after(() => stopChild(leader.child));
    await eventually(
      "the first replica to lead",
      async () => ((await holder()).endsWith(`-${leader.child.pid}`) ? true : undefined),
      30_000,
    );
    const ahead = await replica(kubeconfig, { clockAheadSeconds: 20 });
    t.after(() => stopChild(ahead.child));
    // Three lease durations: the standby sees the holder's renewTime 20 s in its past the whole time.
    for (const end = Date.now() + 12_000; Date.now() < end;) {
      assert.ok((await holder()).endsWith(`-${leader.child.pid}`), "the standby took the lease");
      assert.equal(await ahead.metric("smtpc_operator_leader"), 0, "the standby leads");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });

  test("a leader whose API server hangs stops leading before the standby takes over", async (t) => {
    const proxy = await hangableProxy(await operatorKubeconfig());
    t.after(() => proxy.close());
    const leader = await replica(proxy.kubeconfig);
    t.after(() => stopChild(leader.child));
    await eventually(
      "the proxied replica to lead",
      async () => ((await holder()).endsWith(`-${leader.child.pid}`) ? true : undefined),
      30_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}; its log: ${leader.log()}`);
    });
    const standby = await replica(await operatorKubeconfig());
    t.after(() => stopChild(standby.child));
    proxy.hang();
    // Sample both until the standby leads: at no sample may both say they lead.
    let both = 0;
    await eventually(
      "the standby to take over",
      async () => {
        const [next, old] = [await standby.metric("smtpc_operator_leader"), await leader.metric("smtpc_operator_leader")];
        if (old === 1 && next === 1) both++;
        return next === 1 ? true : undefined;
      },
      60_000,
    );
    assert.equal(both, 0, "samples with two leaders at once");
    assert.ok(leader.child.exitCode !== null || (await leader.metric("smtpc_operator_leader")) !== 1, "the cut-off leader still leads");
  });
});
