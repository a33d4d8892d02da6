// A fresh operator among many named Secrets (a restart at scale) reads them by name a few at a time: read
// all at once, each read had a TLS connection of its own, kept open by the agent, and met the API server's
// flow control.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { installCRDs } from "../support/crds.js";
import { applyManifests, eventually, freshNamespace } from "../support/kube.js";
import { startTestController } from "../support/operator-rbac.js";

describe("the operator's reads of named Secrets at a fresh start", () => {
  test("120 addresses naming 120 Secrets: all of them read, over far fewer than 120 connections", async (t) => {
    await installCRDs();
    const namespace = await freshNamespace(t, "reads");
    const count = 120;
    await applyManifests(
      ...Array.from({ length: count }, (_, i) => ({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: `login-${i}`, namespace },
        stringData: { username: `u${i}`, password: "p" },
      })),
      // No SmtpDomain: the addresses say DomainNotFound, and their Secrets are read all the same.
      ...Array.from({ length: count }, (_, i) => ({
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SupportAddress",
        metadata: { name: `a${i}`, namespace },
        spec: {
          address: `a${i}@reads.example`,
          domainRef: { name: "reads-example" },
          outbound: { host: "smtp.example.com", credentialsSecretRef: { name: `login-${i}` } },
        },
      })),
    );
    const controller = await startTestController({ namespaces: [namespace] });
    t.after(() => controller.stop());
    await eventually("every login is held", () =>
      Array.from({ length: count }, (_, i) => controller.secrets.get(`login-${i}`, namespace)).every(Boolean) ? true : undefined,
    );
    await controller.queue.idle();
    // The agent keeps each connection it opened: their number is how many requests were in flight at once,
    // at most (the watches hold one each, and each reconcile worker one).
    const { agent } = await controller.cluster.access.credentials();
    const connections = [...Object.values(agent.sockets), ...Object.values(agent.freeSockets)].flat().length;
    assert.ok(connections < 60, `${connections} connections to the API server for ${count} Secrets read`);
  });
});
