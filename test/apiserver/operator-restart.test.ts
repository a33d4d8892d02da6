// An operator restart (or a failover to another replica) among objects it
// already converged: a cold list of everything, then nothing to write. Level-
// based reconciles of the same world write nothing, however the caches fill.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Controller } from "../../operator/controller.js";
import { installCRDs } from "../support/crds.js";
import { applyManifests, eventually, freshNamespace, kubectl } from "../support/kube.js";
import { loginSecretManifest, supportAddressManifest } from "../support/manifests.js";
import { startTestController } from "../support/operator-rbac.js";

const addresses = 12;

/** Until the controller is idle and wrote nothing between two looks (the echoes of its last writes handled too). */
async function settled(controller: Controller): Promise<void> {
  let writes = -1;
  await eventually(
    "the operator to stop writing",
    async () => {
      await controller.queue.idle();
      const now = controller.cluster.writes;
      const same = now === writes;
      writes = now;
      return same && controller.queue.depth === 0 ? true : undefined;
    },
    60_000,
  );
}

describe("operator restart", () => {
  const running: Controller[] = [];
  before(async () => {
    await installCRDs();
  });
  after(async () => {
    await Promise.all(running.map((c) => c.stop()));
  });

  test("a fresh operator among converged objects writes nothing, even while its lists arrive in small pages", async (t) => {
    const namespace = await freshNamespace(t, "restart");
    await applyManifests(
      loginSecretManifest(namespace, "outbound", { username: "u", password: "p" }),
      {
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        metadata: { name: "example-com", namespace },
        spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } } },
      },
      ...Array.from({ length: addresses }, (_, i) =>
        supportAddressManifest(
          namespace,
          { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } },
          { name: `a${i}`, address: `a${i}@example.com` },
        ),
      ),
    );
    // Pages of two: the addresses take several requests to list, long after the one domain is listed.
    const first = await startTestController({ pageSize: 2 });
    running.push(first);
    await eventually("every status written", async () => {
      const domain = await kubectl(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "jsonpath={.status.addresses}"]);
      const observed = await kubectl([
        "get",
        "supportaddresses",
        "-n",
        namespace,
        "-o",
        'jsonpath={range .items[*]}{.status.observedGeneration}{"\\n"}{end}',
      ]);
      return domain.stdout === String(addresses) && observed.stdout.split("\n").filter(Boolean).length === addresses ? true : undefined;
    });
    await settled(first);
    await first.stop();
    running.splice(running.indexOf(first), 1);

    const second = await startTestController({ pageSize: 2 });
    running.push(second);
    await settled(second);
    // Another test's namespace may still be terminating in this control plane: it refuses every write, so its
    // objects are tried again by any operator. Those are not converged objects; every other write counts.
    const terminating = new Set<string>();
    for (const ns of new Set(second.cluster.recentWrites.map((w) => w.split(" ")[1]?.split("/")[0] ?? ""))) {
      const phase = await kubectl(["get", "namespace", ns, "-o", "jsonpath={.status.phase}"]);
      if (phase.code !== 0 || phase.stdout === "Terminating") terminating.add(ns);
    }
    const counted = second.cluster.recentWrites.filter((w) => !terminating.has(w.split(" ")[1]?.split("/")[0] ?? ""));
    assert.ok(second.cluster.writes <= 50, `the restarted operator wrote ${second.cluster.writes} times`);
    assert.deepEqual(counted, [], `the restarted operator wrote: ${counted.join(", ")}`);

    // Its cold lists went through the informers' string pool (operator/kube/intern.ts), and so do watch events: a
    // condition message no cached object had before is pooled once the status carrying it arrives.
    const listed = second.strings.size;
    assert.ok(second.strings.has("example-com") && listed > 0, `${listed} strings pooled after the cold lists`);
    const message = `SmtpDomain no-such-domain does not exist in namespace ${namespace}`;
    assert.equal(second.strings.has(message), false);
    await applyManifests({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { name: "orphan", namespace },
      spec: {
        address: `orphan@example.com`,
        domainRef: { name: "no-such-domain" },
        outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } },
      },
    });
    await eventually("the new condition message pooled from its watch event", () => (second.strings.has(message) ? true : undefined));
    assert.ok(second.strings.size > listed, `${second.strings.size} strings pooled, ${listed} before`);
  });
});
