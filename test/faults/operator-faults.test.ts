// The operator under API faults, against a private control plane this file
// can break: two replicas writing at once (no leader election: the worst
// hand-over), kube-apiserver killed and restarted with etcd kept while changes
// are in flight, and every watch expired (etcd compacted while the operator
// was paused, so its watches resume into 410 Gone). Each time it converges
// with one Secret per credential version, no generated secret ever replaced
// (inbound passwords, the submission credential, the control token, DKIM
// keys: every version of every Secret is watched), relay configs that agree
// with the Secrets, and a revoked version that stays revoked.
//
// The other operator faults are tested where their setup lives: SIGKILL
// mid-reconcile (test/e2e/operator-restart), leader hand-over between two
// replicas (test/e2e/leader-election), malformed resources through the API
// server (test/apiserver/api).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { controlTokenDigest, passwordDigest } from "../../relay/contract/digests.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import type { RelayConfig } from "../../relay/contract/config.js";
import { startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { installCRDs } from "../support/crds.js";
import { applyManifests, connect, eventually, freshNamespace, kubectl } from "../support/kube.js";
import { freePort, stopChild } from "../support/mail.js";
import { operatorKubeconfig } from "../support/operator-rbac.js";
import { recordFigures } from "./figures.js";

interface Operator {
  child: ChildProcess;
  metrics: () => Promise<string>;
}

describe("the operator under API faults", () => {
  let plane: ControlPlane;
  const operators: Operator[] = [];
  const watches: { abort(): void }[] = [];

  before(async () => {
    plane = await startControlPlane();
    process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
    await installCRDs();
  });
  after(async () => {
    for (const w of watches) w.abort();
    for (const o of operators) await stopChild(o.child);
    await plane?.stop();
  });

  async function startOperator(): Promise<Operator> {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "operator/main.ts", "--kubeconfig", await operatorKubeconfig(), "--metrics-port", String(port)],
      {
        stdio: "ignore",
        env: { ...process.env, LOG_LEVEL: "warn" },
      },
    );
    const operator = { child, metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text() };
    operators.push(operator);
    await eventually(
      "the operator's metrics",
      async () => ((await operator.metrics().catch(() => "")).includes("smtpc_operator_") ? true : undefined),
      30_000,
    );
    return operator;
  }

  /** The generated secret a Secret of the operator's holds, by the kind its name says; undefined for any other Secret. */
  const generatedKey = (name: string) =>
    name.includes("-inbound-v") || name.endsWith("-submission")
      ? "password"
      : name.endsWith("-relay-control")
        ? "token"
        : /-dkim-[a-z0-9-]+$/.test(name)
          ? "private.pem"
          : undefined;

  /**
   * Every value each generated secret in the namespace ever had (inbound
   * passwords, submission passwords, control tokens, DKIM keys): a watch
   * (every version), started again with a fresh list whenever the API server
   * ends it (a restart), so a replaced secret is seen whenever it happened.
   */
  async function watchPasswords(namespace: string): Promise<Map<string, Set<string>>> {
    const { config, core } = await connect();
    const seen = new Map<string, Set<string>>();
    const record = (secret: k8s.V1Secret) => {
      const name = secret.metadata?.name ?? "";
      const key = generatedKey(name);
      const value = key && secret.data?.[key];
      if (value) seen.set(name, (seen.get(name) ?? new Set()).add(value));
    };
    let stopped = false;
    let current: { abort(): void } | undefined;
    const follow = async (): Promise<void> => {
      while (!stopped) {
        try {
          const list = await core.listNamespacedSecret({ namespace });
          list.items.forEach(record);
          await new Promise<void>((resolve, reject) => {
            new k8s.Watch(config)
              .watch(
                `/api/v1/namespaces/${namespace}/secrets`,
                { resourceVersion: list.metadata?.resourceVersion },
                (_type: string, secret: k8s.V1Secret) => record(secret),
                () => resolve(),
              )
              .then((request) => (current = request), reject);
          });
        } catch {
          /* the API server is down: try again */
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    };
    void follow();
    watches.push({ abort: () => ((stopped = true), current?.abort()) });
    return seen;
  }

  function domain(namespace: string, name: string, credentials: object[], spec: object = {}) {
    return {
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { name, namespace },
      spec: {
        domain: `${name}.example.com`,
        inbound: { credentials, delivery: { smtp: { host: "ingest.svc", port: 25, tls: "None" } } },
        relay: { replicas: 1 },
        ...spec,
      },
    };
  }

  /** The relay config once it lists `versions` and every Active digest matches its Secret's password. */
  async function converged(namespace: string, name: string, versions: number[], within = 60_000): Promise<RelayConfig> {
    const { core } = await connect();
    const text = (secret: k8s.V1Secret, key: string) => Buffer.from(secret.data?.[key] ?? "", "base64").toString();
    return eventually(
      `${name}: relay config with versions ${versions.join(", ")} matching their Secrets`,
      async () => {
        const config = parseConfig(text(await core.readNamespacedSecret({ namespace, name: `${name}-relay-config` }), "relay.yaml"));
        const listed = config.domains[0]!.credentials;
        if (listed.map((c) => c.version).join() !== versions.join()) return undefined;
        for (const credential of listed) {
          const secret = await core.readNamespacedSecret({ namespace, name: `${name}-inbound-v${credential.version}` });
          if (credential.passwordSha256 !== passwordDigest(text(secret, "password"))) return undefined;
        }
        return config;
      },
      within,
    );
  }

  const metric = (text: string, name: string, labels: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
    return line ? Number(line.split(" ").pop()) : 0;
  };

  function assertNeverReplaced(passwords: Map<string, Set<string>>, expected: number, kind = "-inbound-v"): void {
    const ofKind = [...passwords].filter(([name]) => name.includes(kind));
    assert.equal(ofKind.length, expected, `one Secret per domain and version: ${ofKind.map(([name]) => name).join(", ")}`);
    const replaced = [...passwords].filter(([, values]) => values.size > 1).map(([name, values]) => `${name} (${values.size} values)`);
    assert.deepEqual(replaced, [], `generated secrets were replaced: ${replaced.join(", ")}`);
  }

  test("two replicas at once: every generated secret is created exactly once, the loser of each race reads the winner's", async (t) => {
    const namespace = await freshNamespace(t, "split");
    const passwords = await watchPasswords(namespace);
    const [a, b] = [await startOperator(), await startOperator()];
    const names = ["d1", "d2", "d3", "d4"];
    // Generated DKIM keys of both kinds, beside the submission credential and control token every domain has.
    const dkim = { keys: [{ selector: "rsa1" }, { selector: "ed1", algorithm: "Ed25519" }] };
    await applyManifests(...names.map((n) => domain(namespace, n, [{ version: 1 }], { dkim })));
    for (const n of names) await converged(namespace, n, [1]);
    const { core } = await connect();
    const config = async (n: string) =>
      parseConfig(
        Buffer.from(
          (await core.readNamespacedSecret({ namespace, name: `${n}-relay-config` })).data?.["relay.yaml"] ?? "",
          "base64",
        ).toString(),
      );
    const secretText = async (name: string, key: string) =>
      Buffer.from((await core.readNamespacedSecret({ namespace, name })).data?.[key] ?? "", "base64").toString();
    // The relay is configured with what the Secrets hold (the winner's), not with a loser's own.
    for (const n of names) {
      await eventually(
        `${n}: relay config agrees with the submission and control Secrets`,
        async () => {
          const c = await config(n);
          const submission = c.domains[0]!.outbound?.submission[0];
          const ok =
            submission?.passwordSha256 === passwordDigest(await secretText(`${n}-submission`, "password")) &&
            c.listeners.control?.tokenSha256 === controlTokenDigest(await secretText(`${n}-relay-control`, "token"));
          return ok ? true : undefined;
        },
        30_000,
      );
    }
    // A rotation everywhere at once: both replicas race to issue version 2.
    for (const n of names) {
      const added = await kubectl([
        "-n",
        namespace,
        "patch",
        "smtpdomain",
        n,
        "--type=json",
        "-p",
        JSON.stringify([{ op: "add", path: "/spec/inbound/credentials/-", value: { version: 2 } }]),
      ]);
      assert.equal(added.code, 0, added.stderr);
    }
    for (const n of names) await converged(namespace, n, [1, 2]);
    assertNeverReplaced(passwords, names.length * 2);
    for (const kind of ["-submission", "-relay-control", "-dkim-rsa1", "-dkim-ed1"]) assertNeverReplaced(passwords, names.length, kind);
    const conflicts =
      metric(await a.metrics(), "smtpc_operator_reconciles_total", 'result="Conflict"') +
      metric(await b.metrics(), "smtpc_operator_reconciles_total", 'result="Conflict"');
    recordFigures("operator-split-brain", {
      scenario:
        "two operator replicas without leader election, 4 domains with two generated DKIM keys each (RSA, Ed25519) issued a credential, a submission credential and a control token each, then a second credential version added to all at once",
      figures: {
        credentialsIssued: names.length * 2,
        otherSecretsGenerated: names.length * 4,
        secretsReplaced: 0,
        conflictsResolved: conflicts,
      },
    });
    console.log(`two replicas: ${names.length * 2} credentials issued once each; ${conflicts} reconciles lost a race (409) and redid`);
    for (const o of [a, b]) await stopChild(o.child);
  });

  test("kube-apiserver killed and restarted (etcd kept) with changes in flight, then every watch expired: it converges and keeps following", async (t) => {
    const namespace = await freshNamespace(t, "restart");
    const passwords = await watchPasswords(namespace);
    const operator = await startOperator();
    await applyManifests(...["r1", "r2", "r3"].map((n) => domain(namespace, n, [{ version: 1 }])));
    for (const n of ["r1", "r2", "r3"]) await converged(namespace, n, [1]);

    // Changes the operator has just begun to act on when the API server dies.
    await applyManifests(
      domain(namespace, "r1", [{ version: 1 }, { version: 2 }]),
      domain(namespace, "r2", [{ version: 1, state: "Revoked" }, { version: 2 }]),
    );
    await plane.restartApiServer();
    await converged(namespace, "r1", [1, 2], 90_000);
    const r2 = await converged(namespace, "r2", [1, 2], 90_000);
    assert.equal(
      r2.domains[0]!.credentials.find((c) => c.version === 1)!.state,
      "Revoked",
      "the revocation made while the API server died holds",
    );

    // Paused across a restart that compacted etcd: its watches resume with
    // resourceVersions that no longer exist (410 Gone) and must relist.
    operator.child.kill("SIGSTOP");
    try {
      await plane.restartApiServer({ compact: true });
    } finally {
      operator.child.kill("SIGCONT");
    }
    await applyManifests(domain(namespace, "r3", [{ version: 1 }, { version: 2 }]));
    // Only a working watch brings this change within the minute (the resync is every ten).
    await converged(namespace, "r3", [1, 2], 60_000);
    const r2After = await converged(namespace, "r2", [1, 2]);
    assert.equal(r2After.domains[0]!.credentials.find((c) => c.version === 1)!.state, "Revoked", "a revoked version never comes back");
    assertNeverReplaced(passwords, 3 * 2);
    const metrics = await operator.metrics();
    const expired = metric(metrics, "smtpc_operator_watch_relists", 'reason="Expired"');
    recordFigures("operator-apiserver-restart", {
      scenario:
        "kube-apiserver SIGKILLed and restarted (etcd kept) right after a rotation and a revocation; then restarted again after compacting etcd while the operator was paused (SIGSTOP)",
      figures: { relistsAfterGone: expired, passwordsReplaced: 0, revokedComingBack: 0 },
    });
    console.log(`API server restarts: ${expired} relists after 410 Gone`);
    assert.ok(expired > 0, "no watch saw 410 Gone after the compaction");
    assert.equal(operator.child.exitCode, null, "the operator outlived both restarts");
  });
});
