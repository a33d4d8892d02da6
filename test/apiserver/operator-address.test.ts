// SupportAddress rules through the real API server: each verdict reaches
// status with its reason, and only served addresses reach the relay config.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import type { SupportAddress } from "../../crds/schema.js";
import type { Controller } from "../../operator/controller.js";
import { parseConfig } from "../../relay/config/load.js";
import { installCRDs } from "../support/crds.js";
import { startTestController } from "../support/operator-rbac.js";
import { applyManifests, connect, eventually, freshNamespace } from "../support/kube.js";

const domain = (namespace: string, name: string, mail: string) => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name, namespace },
  spec: { domain: mail, inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } }, relay: { replicas: 1 } },
});
const address = (namespace: string, name: string, mail: string, domainRef: string, secret = "outbound") => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SupportAddress",
  metadata: { name, namespace },
  spec: { address: mail, domainRef: { name: domainRef }, outbound: { host: "smtp.example.com", credentialsSecretRef: { name: secret } } },
});

describe("SupportAddress rules", () => {
  let controller: Controller;
  let custom: k8s.CustomObjectsApi;
  let core: k8s.CoreV1Api;
  before(async () => {
    await installCRDs();
    const cluster = await connect();
    core = cluster.core;
    custom = cluster.config.makeApiClient(k8s.CustomObjectsApi);
    // The operator runs with the chart's RBAC, not as admin.
    controller = await startTestController({ systemDomains: ["helpdesk.example.net"] });
  });
  after(() => controller.stop());

  const domainReady = async (namespace: string, name: string) => {
    const a = (await custom.getNamespacedCustomObject({ group: "smtpconnector.dev", version: "v1alpha1", namespace, plural: "supportaddresses", name })) as SupportAddress;
    return a.status?.conditions?.find((c) => c.type === "DomainReady");
  };

  test("each rule shows in DomainReady with its reason; only served addresses reach the relay", async (t) => {
    const namespace = await freshNamespace(t, "addr");
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: "outbound" }, stringData: { username: "u", password: "p" } } });
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: "broken" }, stringData: { username: "u" } } });
    await applyManifests(domain(namespace, "example-com", "example.com"));
    await applyManifests(address(namespace, "support", "support@example.com", "example-com"));
    await applyManifests(address(namespace, "mismatch", "support@other.org", "example-com"));
    await applyManifests(address(namespace, "system", "team@helpdesk.example.net", "example-com"));
    await applyManifests(address(namespace, "orphan", "orphan@example.com", "no-such-domain"));
    await applyManifests(address(namespace, "nosecret", "sales@example.com", "example-com", "missing"));
    await applyManifests(address(namespace, "badsecret", "billing@example.com", "example-com", "broken"));
    const expected: Record<string, string> = {
      support: "DomainNotReady",
      mismatch: "DomainMismatch",
      system: "SystemAddress",
      orphan: "DomainNotFound",
      nosecret: "CredentialsSecretNotFound",
      badsecret: "CredentialsSecretInvalid",
    };
    for (const [name, reason] of Object.entries(expected)) {
      const condition = await eventually(`${name}: ${reason}`, async () => {
        const c = await domainReady(namespace, name);
        return c?.reason === reason ? c : undefined;
      });
      assert.equal(condition.status, "False");
    }
    const config = await eventually("the relay config", async () => {
      const secret = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
      return parseConfig(Buffer.from(secret.data!["relay.yaml"]!, "base64").toString());
    });
    assert.deepEqual(config.domains[0]!.addresses, ["support@example.com"]);

    // Fixing the Secret brings the address in.
    await core.replaceNamespacedSecret({ namespace, name: "broken", body: { metadata: { name: "broken" }, stringData: { username: "u", password: "p" } } });
    await eventually("billing@ in the relay config", async () => {
      const secret = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
      return Buffer.from(secret.data!["relay.yaml"]!, "base64").toString().includes("billing@example.com") ? true : undefined;
    });
  });

  test("the same domain in a second account (namespace) is flagged; the first keeps working", async (t) => {
    const production = await freshNamespace(t, "prod");
    await applyManifests(domain(production, "example-com", "example.com"));
    await eventually("the production credentials", () => core.readNamespacedSecret({ namespace: production, name: "example-com-inbound-v1" }));
    const sandbox = await freshNamespace(t, "sandbox");
    await applyManifests(domain(sandbox, "example-com", "example.com"));
    const ready = await eventually("the sandbox domain flagged", async () => {
      const d = (await custom.getNamespacedCustomObject({ group: "smtpconnector.dev", version: "v1alpha1", namespace: sandbox, plural: "smtpdomains", name: "example-com" })) as { status?: { conditions?: { type: string; reason: string; message: string }[] } };
      return d.status?.conditions?.find((c) => c.type === "Stalled" && c.reason === "DomainConflict");
    });
    assert.match(ready.message, new RegExp(`already connected in namespace ${production}`));
    const sandboxSecrets = (await core.listNamespacedSecret({ namespace: sandbox })).items.map((s) => s.metadata?.name);
    assert.equal(sandboxSecrets.includes("example-com-inbound-v1"), false, "a flagged domain gets no credentials");
  });
});
