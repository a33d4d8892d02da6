// An operator killed mid-reconcile (SIGKILL) and started again converges:
// one Secret per credential version, never a second password, and the relay
// config agrees with the Secret.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { passwordDigest } from "../../relay/contract/digests.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { installCRDs } from "../support/crds.js";
import { applyManifests, connect, eventually, freshNamespace } from "../support/kube.js";
import { stopChild } from "../support/mail.js";
import { operatorKubeconfig } from "../support/operator-rbac.js";

describe("operator restart", () => {
  const children: ChildProcess[] = [];
  after(async () => {
    for (const child of children) await stopChild(child);
  });

  test("SIGKILL mid-reconcile, then a restart converges without duplicate or regenerated credentials", async (t) => {
    await installCRDs();
    const { core } = await connect();
    const kubeconfig = await operatorKubeconfig();
    const start = () => {
      const child = spawn(process.execPath, ["--import", "tsx", "operator/main.ts", "--kubeconfig", kubeconfig, "--metrics-port", "0"], {
        stdio: "ignore",
        env: { ...process.env, LOG_LEVEL: "warn" },
      });
      children.push(child);
      return child;
    };
    const namespace = await freshNamespace(t, "restart");
    await applyManifests({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "outbound", namespace },
      stringData: { username: "u", password: "p" },
    });
    const domains = ["a", "b", "c"].map((n) => ({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { name: n, namespace },
      spec: {
        domain: `${n}.example.com`,
        inbound: { credentials: [{ version: 1 }, { version: 2 }], delivery: { smtp: { host: "ingest.svc", port: 25, tls: "None" } } },
        relay: { replicas: 1 },
      },
    }));
    const first = start();
    await applyManifests(...domains);
    // Kill as soon as the first credential appears: the other objects are mid-flight.
    await eventually(
      "the first credential",
      async () =>
        (await core.listNamespacedSecret({ namespace })).items.some((s) => s.metadata?.name?.includes("-inbound-")) ? true : undefined,
      60_000,
    );
    first.kill("SIGKILL");
    const seen = new Map(
      (await core.listNamespacedSecret({ namespace })).items
        .filter((s) => s.metadata?.name?.includes("-inbound-"))
        .map((s) => [s.metadata!.name!, s.data!.password]),
    );

    start();
    const secretText = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
    for (const d of ["a", "b", "c"]) {
      const config = await eventually(
        `${d}: converged`,
        async () => {
          const secret = await core.readNamespacedSecret({ namespace, name: `${d}-relay-config` });
          const parsed = parseConfig(secretText(secret, "relay.yaml"));
          return parsed.domains[0]!.credentials.length === 2 ? parsed : undefined;
        },
        60_000,
      );
      for (const version of [1, 2]) {
        const secret = await core.readNamespacedSecret({ namespace, name: `${d}-inbound-v${version}` });
        const before = seen.get(`${d}-inbound-v${version}`);
        if (before) assert.equal(secret.data!.password, before, `${d} v${version} was regenerated after the restart`);
        assert.equal(
          config.domains[0]!.credentials.find((c) => c.version === version)!.passwordSha256,
          passwordDigest(secretText(secret, "password")),
        );
      }
    }
    const inbound = (await core.listNamespacedSecret({ namespace })).items.filter((s) => s.metadata?.name?.includes("-inbound-"));
    assert.equal(inbound.length, 6, "one Secret per domain and version");
  });
});
