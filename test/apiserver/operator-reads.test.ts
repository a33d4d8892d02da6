// What a steady state costs the API server: an available domain is reconciled
// every 30 s (its relays' last-use reports), and each reconcile used to read
// the relay's Deployment, Services, NetworkPolicy, config, TLS and credential
// Secrets by name (7 GETs; 20.5 requests/s for 100 domains in bench:operator).
// They come from the watches now; a change the watch shows is still read afresh.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { apiRequests } from "../../operator/kube/access.js";
import { e2eClients } from "../support/e2e.js";
import { operatorQuiet, startTestController } from "../support/operator-rbac.js";
import { markDeploymentAvailable } from "../support/deployment-runner.js";
import { applyManifests, eventually, freshNamespace, kubectl, readSmtpDomain, waitForCondition } from "../support/kube.js";
import { loginSecretManifest, smtpDomainManifest, supportAddressManifest } from "../support/manifests.js";

const gets = () => apiRequests.get("GET") ?? 0;

describe("reads at steady state", () => {
  let controller: Controller;
  let custom: k8s.CustomObjectsApi;
  /** Told of each reconcile as it ends (the key still running: an add runs it again at once). */
  let onDomainReconciled: (() => void) | undefined;

  before(async () => {
    ({ custom } = await e2eClients());
    controller = await startTestController({ onReconcile: (kind) => (kind === "SmtpDomain" ? onDomainReconciled?.() : undefined) });
  });
  after(() => controller.stop());

  test("an available domain's reconcile reads nothing from the API server; an edited Secret is read again", async (t) => {
    const namespace = await freshNamespace(t, "reads");
    await applyManifests(loginSecretManifest(namespace, "outbound", { username: "support@example.com", password: "x" }));
    await applyManifests(smtpDomainManifest(namespace, { credentials: [{ version: 1 }] }));
    await applyManifests(supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } }));
    // The relay runs (there is no node here: its status is written as the Deployment controller would).
    const generation = await eventually("the relay Deployment", async () => {
      const d = await kubectl(["-n", namespace, "get", "deployment", "example-com-relay", "-o", "jsonpath={.metadata.generation}"]);
      return d.code === 0 && d.stdout ? Number(d.stdout) : undefined;
    });
    await markDeploymentAvailable(namespace, "example-com-relay", 1, generation);
    await waitForCondition("RelayAvailable=True", () => readSmtpDomain(custom, namespace), "RelayAvailable", { status: "True" });

    // Steady state: reconciles of an unchanged world neither write nor read.
    await operatorQuiet(controller);
    const [writes, reads] = [controller.cluster.writes, gets()];
    for (let i = 0; i < 3; i++) {
      controller.queue.add(`domain/${namespace}/example-com`);
      await controller.queue.idle();
    }
    assert.equal(
      controller.cluster.writes,
      writes,
      `wrote: ${controller.cluster.recentWrites.slice(writes - controller.cluster.writes).join(", ")}`,
    );
    assert.equal(gets() - reads, 0, "three reconciles of an available domain read from the API server");
    // What is held in full: the domain's own Secrets, nothing else of the namespace (not the outbound login).
    const held = controller.ownReads.heldSecrets().filter((k) => k.startsWith(`${namespace}/`));
    assert.ok(held.includes(`${namespace}/example-com-relay-config`), held.join(", "));
    assert.ok(!held.includes(`${namespace}/outbound`), held.join(", "));

    // Someone edits the relay config by hand: the watch shows the new resourceVersion, the reconcile reads it
    // and repairs it — the cached copy is not mistaken for the live one.
    const edited = await kubectl([
      "-n",
      namespace,
      "patch",
      "secret",
      "example-com-relay-config",
      "--type=merge",
      "-p",
      JSON.stringify({ data: { "relay.yaml": Buffer.from("edited by hand\n").toString("base64") } }),
    ]);
    assert.equal(edited.code, 0, edited.stderr);
    await eventually("the relay config repaired", async () => {
      const s = await kubectl(["-n", namespace, "get", "secret", "example-com-relay-config", "-o", "jsonpath={.data.relay\\.yaml}"]);
      const text = Buffer.from(s.stdout, "base64").toString("utf8");
      return text.includes("support@example.com") ? true : undefined;
    });
  });

  test("a drift repaired is not repaired again by a reconcile before the watch shows the repair", async (t) => {
    const namespace = await freshNamespace(t, "repair");
    await applyManifests(smtpDomainManifest(namespace));
    const replicas = async () => {
      const d = await kubectl(["-n", namespace, "get", "deployment", "example-com-relay", "-o", "jsonpath={.spec.replicas}"]);
      return d.code === 0 && d.stdout ? Number(d.stdout) : undefined;
    };
    await eventually("the relay Deployment", replicas);
    await eventually("the domain settled", async () => {
      const d = await kubectl(["-n", namespace, "get", "smtpdomain", "example-com", "-o", "json"]);
      const domain = JSON.parse(d.stdout) as {
        metadata: { generation?: number };
        status?: { observedGeneration?: number; relay?: unknown };
      };
      return domain.status?.relay !== undefined && domain.status.observedGeneration === domain.metadata.generation ? true : undefined;
    });
    await controller.queue.idle();

    // Each reconcile of the domain is followed at once by another, as a burst of events would bring: the one
    // right after the repair reads the Deployment before the watch has brought the repair.
    const key = `domain/${namespace}/example-com`;
    let again = 3;
    onDomainReconciled = () => {
      if (again-- > 0) controller.queue.add(key);
    };
    t.after(() => (onDomainReconciled = undefined));
    const writes = controller.cluster.writes;
    const edited = await kubectl(["-n", namespace, "scale", "deployment", "example-com-relay", "--replicas=3"]);
    assert.equal(edited.code, 0, edited.stderr);
    await eventually("the drift repaired", async () => ((await replicas()) === 1 && again < 0 ? true : undefined));
    await controller.queue.idle();
    const deploymentWrites = controller.cluster.recentWrites
      .slice(writes - controller.cluster.writes)
      .filter((w) => w === `Deployment ${namespace}/example-com-relay`);
    assert.equal(deploymentWrites.length, 1, `the Deployment written ${deploymentWrites.length} times`);
    const events = await kubectl([
      "-n",
      namespace,
      "get",
      "events",
      "--field-selector",
      "reason=DriftRepaired",
      "-o",
      "jsonpath={range .items[*]}{.message}{'\\n'}{end}",
    ]);
    assert.equal(events.stdout.trim().split("\n").filter(Boolean).length, 1, events.stdout);
  });
});
