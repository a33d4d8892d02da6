// The operator when the API server answers 429 Too Many Requests: its flow control during a cold start among
// thousands of objects, or an admission webhook's own rate limit. Nothing is wrong with the resource, so nothing
// is written on it while the 429s last (a ReconcileFailed and its taking back were 816 writes in a 10k restart),
// a Retry-After is waited for, and the domain converges once the server has room again.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import https from "node:https";
import { after, before, describe, test } from "node:test";
import type { Controller } from "../../operator/controller.js";
import { installCRDs } from "../support/crds.js";
import { applyManifests, conditionOf, eventually, freshNamespace, kubectl, listEvents } from "../support/kube.js";
import { freePort, selfSignedCertificate, tempDir } from "../support/mail.js";
import { smtpDomainManifest } from "../support/manifests.js";
import { operatorKubeconfig, operatorNamespace, startTestController } from "../support/operator-rbac.js";
import { startThrottledApiServer, type ThrottledApiServer } from "../support/throttled-apiserver.js";
import type { SmtpDomain } from "../../crds/schema.js";

const operatorUser = `system:serviceaccount:${operatorNamespace}:smtp-connector`;

async function readDomain(namespace: string): Promise<SmtpDomain | undefined> {
  const got = await kubectl(["-n", namespace, "get", "smtpdomain", "example-com", "-o", "json"]);
  return got.code === 0 ? (JSON.parse(got.stdout) as SmtpDomain) : undefined;
}

const reconcileFailedEvents = (namespace: string) => listEvents(namespace, "reason=ReconcileFailed");

/** Every ReconcileFailed condition a domain shows while `during` runs, polled. */
async function watchForReconcileFailed<T>(namespace: string, during: () => Promise<T>): Promise<{ value: T; seen: string[] }> {
  const seen: string[] = [];
  let done = false;
  const poll = (async () => {
    while (!done) {
      const d = await readDomain(namespace);
      for (const c of d?.status?.conditions ?? []) if (c.reason === "ReconcileFailed") seen.push(`${c.type}: ${c.message}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  try {
    return { value: await during(), seen };
  } finally {
    done = true;
    await poll;
  }
}

const converged = (namespace: string) =>
  eventually(
    "the domain's credentials issued",
    async () => {
      const d = await readDomain(namespace);
      return d && conditionOf(d, "CredentialsIssued")?.status === "True" ? d : undefined;
    },
    60_000,
  );

describe("the API server's flow control answers 429", () => {
  let server: ThrottledApiServer;
  let controller: Controller;

  before(async () => {
    await installCRDs();
    server = await startThrottledApiServer({ maxMutatingInflight: 8 });
    controller = await startTestController({ kubeconfig: server.kubeconfigFor(await operatorKubeconfig()) });
  });
  after(async () => {
    await controller?.stop();
    await server?.stop();
  });

  test("while flow control refuses every write, nothing is written on the domain; it converges once there is room", async (t) => {
    const namespace = await freshNamespace(t, "throttled");
    const seat = await server.holdMutatingSeats(await operatorKubeconfig(), namespace);
    const refusedBefore = controller.cluster.apiErrors.get("429") ?? 0;
    const { seen } = await watchForReconcileFailed(namespace, async () => {
      try {
        // Made through the run's own API server (admin); the operator reads and writes through the throttled one.
        await applyManifests(smtpDomainManifest(namespace, { credentials: [{ version: 1 }] }));
        // Three 429s in a row for its reconcile: 1 + 2 s of backing off at least, and a fourth try under way.
        await eventually(
          "three 429s",
          () => ((controller.cluster.apiErrors.get("429") ?? 0) - refusedBefore >= 3 ? true : undefined),
          30_000,
        );
        const during = await readDomain(namespace);
        assert.deepEqual(during?.status ?? {}, {}, "nothing written on the domain while the 429s last");
      } finally {
        seat.release();
      }
      return converged(namespace);
    });
    assert.deepEqual(seen, [], "ReconcileFailed shown on the domain");
    // Events are written off the reconcile's path: what is told has been written before its absence is asserted.
    assert.ok(await controller.events.flush(10_000), "the Events told are written");
    assert.equal(await reconcileFailedEvents(namespace), "", "ReconcileFailed Events");
  });
});

describe("an admission webhook answers 429 with Retry-After", () => {
  let controller: Controller;

  before(async () => {
    await installCRDs();
    controller = await startTestController();
  });
  after(() => controller?.stop());

  test("the operator does not try again before Retry-After, however its other objects' events come", async (t) => {
    const namespace = await freshNamespace(t, "retry-after");
    const { certFile, keyFile } = await selfSignedCertificate(tempDir("webhook"), "webhook.test");
    // An admission webhook with a rate limit of its own: the operator's first two writes of the domain's status
    // are refused with 429 and "Retry-After: 4" (the API server sends the webhook's retryAfterSeconds). They come
    // last in a reconcile: the relay's objects and Secrets it has just made bring watch events meanwhile, and
    // those must not have it tried again sooner either.
    const operatorCalls: number[] = [];
    let seenAny = 0;
    const webhook = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        const review = JSON.parse(body) as { request: { uid: string; subResource?: string; userInfo: { username?: string } } };
        seenAny++;
        let refuse = false;
        if (review.request.userInfo.username === operatorUser && review.request.subResource === "status") {
          operatorCalls.push(Date.now());
          refuse = operatorCalls.length <= 2;
        }
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            apiVersion: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: {
              uid: review.request.uid,
              allowed: !refuse,
              ...(refuse
                ? { status: { code: 429, reason: "TooManyRequests", message: "rate limited", details: { retryAfterSeconds: 4 } } }
                : {}),
            },
          }),
        );
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => webhook.listen(port, "127.0.0.1", resolve));
    const name = `smtpc-retry-after-${namespace}`;
    t.after(async () => {
      await kubectl(["delete", "validatingwebhookconfiguration", name, "--ignore-not-found"]);
      webhook.close();
    });
    await applyManifests({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingWebhookConfiguration",
      metadata: { name },
      webhooks: [
        {
          name: "rate-limit.smtpconnector.test",
          clientConfig: { url: `https://127.0.0.1:${port}/`, caBundle: readFileSync(certFile).toString("base64") },
          rules: [
            { operations: ["CREATE"], apiGroups: ["smtpconnector.dev"], apiVersions: ["*"], resources: ["smtpdomains"] },
            { operations: ["UPDATE"], apiGroups: ["smtpconnector.dev"], apiVersions: ["*"], resources: ["smtpdomains/status"] },
          ],
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": namespace } },
          // Only a refusal is meant: an unreachable webhook lets everything through (the namespace can go).
          failurePolicy: "Ignore",
          sideEffects: "None",
          admissionReviewVersions: ["v1"],
          timeoutSeconds: 5,
        },
      ],
    });
    const manifest = JSON.stringify(smtpDomainManifest(namespace, { credentials: [{ version: 1 }] }));
    // In force before the domain is made (a dry run calls the webhook too).
    await eventually("the webhook in force", async () => {
      await kubectl(["create", "--dry-run=server", "-f", "-"], { input: manifest });
      return seenAny > 0 ? true : undefined;
    });

    const { seen } = await watchForReconcileFailed(namespace, async () => {
      await applyManifests(JSON.parse(manifest) as object);
      return converged(namespace);
    });
    assert.ok(operatorCalls.length >= 3, `the operator's status writes: ${operatorCalls.length}`);
    const gaps = operatorCalls.slice(1, 3).map((at, i) => at - operatorCalls[i]!);
    // The backoff alone would try again after 1–2 s, then 2–3 s.
    for (const gap of gaps) assert.ok(gap >= 4_000 && gap < 6_000, `tried again after ${gaps.join(", ")} ms; Retry-After said 4 s`);
    assert.deepEqual(seen, [], "ReconcileFailed shown on the domain");
    // Events are written off the reconcile's path: what is told has been written before its absence is asserted.
    assert.ok(await controller.events.flush(10_000), "the Events told are written");
    assert.equal(await reconcileFailedEvents(namespace), "", "ReconcileFailed Events");
    assert.ok((controller.cluster.apiErrors.get("429") ?? 0) >= 2);
  });
});
