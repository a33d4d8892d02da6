// operator/kube/cluster.ts: failed API requests are counted by status for the metrics, the Event writes' apart
// from the rest (smtpc_operator_event_api_errors beside smtpc_operator_api_errors): a dashboard tells Events
// throttled from reconciles throttled.
import assert from "node:assert/strict";
import https from "node:https";
import { createServer } from "node:net";
import { test } from "node:test";
import type { ClusterAccess, RequestCredentials } from "../../operator/kube/access.js";
import { Cluster } from "../../operator/kube/cluster.js";

/** A loopback port nothing listens on: every request fails with no answer ("network"). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test("an Event write's failure is counted in eventApiErrors, a reconcile's request in apiErrors", async () => {
  const agent = new https.Agent();
  const access: ClusterAccess = {
    server: new URL(`https://127.0.0.1:${await closedPort()}`),
    credentials: () => Promise.resolve({ agent } as unknown as RequestCredentials),
    unauthorized: () => false,
  };
  const cluster = new Cluster(access);
  await assert.rejects(cluster.postEvent("ns", { kind: "Event" }));
  await assert.rejects(cluster.postEvent("ns", { kind: "Event" }));
  assert.deepEqual([...cluster.eventApiErrors], [["network", 2]]);
  assert.deepEqual([...cluster.apiErrors], [], "the reconciles' errors: none");
  await assert.rejects(cluster.get("/api/v1/namespaces/ns/secrets/s"));
  assert.deepEqual([...cluster.apiErrors], [["network", 1]]);
  assert.deepEqual([...cluster.eventApiErrors], [["network", 2]]);
  agent.destroy();
});
