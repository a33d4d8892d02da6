// What the operator keeps of the cluster's Secrets, on the real API server:
// with many large unrelated Secrets about (Helm keeps each release in one), it
// holds in full only the Secrets a domain or address names (its own among
// them), read by name, and of the rest only metadata, whatever labels they
// carry; every list is paginated; and a Secret the user names still
// reconciles when it is made, changed or deleted.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { installCRDs } from "../support/crds.js";
import { startTestController } from "../support/operator-rbac.js";
import { applyManifests, deleteDomainsAtEnd, connect, eventually, freshNamespace, kubectl, readSupportAddress } from "../support/kube.js";
import { loginSecretManifest, smtpDomainManifest, supportAddressManifest } from "../support/manifests.js";

const pageSize = 10;
const unrelatedCount = 40;
const unrelatedBytes = 256 * 1024;
/** Anyone who may create a Secret may give it the operator's labels. */
const ourLabels = { "app.kubernetes.io/managed-by": "smtp-connector", "smtpconnector.dev/domain": "example-com" };

describe("the operator's Secret cache", () => {
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;
  let controller: Controller;
  let unrelated: string;
  const marker = "release-payload-";
  const cleanups: (() => Promise<void> | void)[] = [];

  before(async () => {
    await installCRDs();
    const cluster = await connect();
    core = cluster.core;
    custom = cluster.config.makeApiClient(k8s.CustomObjectsApi);
    // Present before the operator starts: its first (paginated) list meets them.
    unrelated = await freshNamespace({ after: (fn) => cleanups.push(fn) }, "helm");
    for (let i = 0; i < unrelatedCount; i++) {
      await core.createNamespacedSecret({
        namespace: unrelated,
        body: {
          metadata: { name: `sh.helm.release.v1.app.v${i}`, labels: { owner: "helm" } },
          type: "helm.sh/release.v1",
          data: { release: Buffer.from(marker + randomBytes(unrelatedBytes).toString("base64")).toString("base64") },
        },
      });
    }
    // Made with kubectl apply (client-side): kubectl keeps a whole copy of it, data included, in the
    // kubectl.kubernetes.io/last-applied-configuration annotation.
    const applied = await kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "applied-by-kubectl", namespace: unrelated, labels: { team: "web" } },
        data: { token: Buffer.from(marker + "x".repeat(64)).toString("base64") },
      }),
    });
    assert.equal(applied.code, 0, applied.stderr);
    // Labelled as the operator labels its own, about 1 MB, named by nothing: met by the first list.
    await core.createNamespacedSecret({
      namespace: unrelated,
      body: {
        metadata: { name: "labelled-like-ours", labels: ourLabels },
        data: { payload: Buffer.from(marker + randomBytes(700 * 1024).toString("base64")).toString("base64") },
      },
    });
    controller = await startTestController({ pageSize });
  });
  after(async () => {
    await controller?.stop();
    for (const cleanup of cleanups) await cleanup();
  });

  test("holds none of the unrelated Secrets' data, reads lists in pages, and still follows the Secrets a user names", async (t) => {
    const namespace = await freshNamespace(t, "sec");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(smtpDomainManifest(namespace));
    // Its credentials Secret does not exist yet.
    await applyManifests(supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "support-login" } }));
    const reason = async () => {
      const a = await readSupportAddress(custom, namespace);
      return a.status?.conditions?.find((c) => c.type === "DomainReady")?.reason;
    };
    const relayConfig = async () => {
      const secret = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }).catch(() => undefined);
      return secret?.data?.["relay.yaml"] ? Buffer.from(secret.data["relay.yaml"], "base64").toString() : undefined;
    };
    await eventually("the missing Secret is reported", async () => ((await reason()) === "CredentialsSecretNotFound" ? true : undefined));

    // Made: the metadata watch sees it, the controller reads it by name, the address is served.
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "support-login" }, stringData: { username: "support", password: "first" } },
    });
    await eventually(
      "the address in the relay config",
      async () => ((await relayConfig())?.includes("support@example.com") ? true : undefined),
      20_000,
    );
    // Changed: read again (its resourceVersion moved), judged again.
    await core.replaceNamespacedSecret({
      namespace,
      name: "support-login",
      body: { metadata: { name: "support-login" }, stringData: { username: "support" } },
    });
    await eventually(
      "the broken Secret is reported",
      async () => ((await reason()) === "CredentialsSecretInvalid" ? true : undefined),
      20_000,
    );
    await eventually(
      "the address leaves the relay config",
      async () => ((await relayConfig())?.includes("support@example.com") === false ? true : undefined),
      20_000,
    );
    // Deleted: dropped.
    await core.deleteNamespacedSecret({ namespace, name: "support-login" });
    await eventually("the deletion is reported", async () => ((await reason()) === "CredentialsSecretNotFound" ? true : undefined), 20_000);
    await controller.queue.idle();

    // What is cached: no unrelated Secret in full, and nothing but metadata of any of them.
    const census = controller.secrets.census();
    assert.deepEqual(
      census.full.filter((key) => key.startsWith(`${unrelated}/`)),
      [],
      "no unrelated Secret is cached in full",
    );
    assert.ok(census.full.includes(`${namespace}/example-com-relay-control`), "its own Secrets that it reads are held in full");
    assert.ok(!census.full.includes(`${namespace}/example-com-relay-config`), "its own Secrets that it never reads back are not");
    assert.ok(census.metadataOnly >= unrelatedCount, `every Secret is known by metadata (${census.metadataOnly})`);
    for (const object of controller.secrets.metadataObjects()) {
      assert.deepEqual(
        Object.keys(object).filter((k) => k !== "apiVersion" && k !== "kind"),
        ["metadata"],
        `${object.metadata?.name}: metadata only`,
      );
      assert.equal(object.metadata?.managedFields, undefined);
      assert.equal(
        object.metadata?.annotations,
        undefined,
        `${object.metadata?.name}: no annotations (kubectl's last-applied-configuration holds the data)`,
      );
    }
    const cachedText =
      JSON.stringify(controller.secrets.metadataObjects()) +
      JSON.stringify(census.full.map((key) => controller.secrets.get(key.split("/")[1]!, key.split("/")[0])));
    assert.ok(
      !cachedText.includes(Buffer.from(marker).toString("base64").slice(0, 16)),
      "no unrelated Secret's data is anywhere in the cache",
    );
    // Paginated: the first list of all Secrets needed a page per ten of them, the list of its own one more.
    assert.ok(
      controller.secrets.listRequests() >= 1 + Math.ceil(unrelatedCount / pageSize),
      `lists were paginated (${controller.secrets.listRequests()} list requests at ${pageSize} per page)`,
    );
  });

  test("a Secret of its own that lost (or never had) the owner label is still found, by name", async (t) => {
    const namespace = await freshNamespace(t, "unl");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(smtpDomainManifest(namespace));
    const control = "example-com-relay-control";
    const token = await eventually(
      "the control token",
      async () => (await core.readNamespacedSecret({ namespace, name: control }).catch(() => undefined))?.data?.token,
    );
    // As a Secret made by a version of the operator before the label existed.
    const unlabelled = await kubectl(["label", "secret", control, "-n", namespace, "app.kubernetes.io/managed-by-"]);
    assert.equal(unlabelled.code, 0, unlabelled.stderr);
    await eventually("the unlabelled Secret read by name", () => {
      const cached = controller.secrets.get(control, namespace);
      return cached && !cached.metadata?.labels?.["app.kubernetes.io/managed-by"] ? cached : undefined;
    });
    assert.equal(controller.secrets.get(control, namespace)?.data?.token, token, "the same token: nothing was issued again");
    await controller.queue.idle();
    assert.equal((await core.readNamespacedSecret({ namespace, name: control })).data?.token, token);
  });

  test("a Secret with the operator's own labels, not one a domain names, is not held in full", async (t) => {
    const namespace = await freshNamespace(t, "lbl");
    deleteDomainsAtEnd(t, namespace);
    // Made while the operator runs (the watch, not the first list), next to a domain of the name its label gives.
    const payload = Buffer.from(marker + randomBytes(700 * 1024).toString("base64")).toString("base64");
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "labelled-like-ours", labels: ourLabels }, data: { payload } },
    });
    await applyManifests(smtpDomainManifest(namespace));
    await eventually("the domain's control Secret held", () => controller.secrets.get("example-com-relay-control", namespace));
    await controller.queue.idle();
    for (const where of [namespace, unrelated]) {
      assert.equal(controller.secrets.get("labelled-like-ours", where), undefined, `${where}: the labelled Secret is not held`);
      assert.ok(!controller.secrets.census().full.includes(`${where}/labelled-like-ours`), `${where}: not counted as held in full`);
    }
    const held = JSON.stringify(
      controller.secrets.census().full.map((key) => controller.secrets.get(key.split("/")[1]!, key.split("/")[0])),
    );
    assert.ok(!held.includes(payload.slice(0, 32)), "its data is nowhere in what is held");
  });

  test("of a Secret a tenant names, only the keys it reads are held, each within a bound", async (t) => {
    const namespace = await freshNamespace(t, "big");
    deleteDomainsAtEnd(t, namespace);
    // An outbound login named from a Secret that also carries ~1 MB the operator never reads.
    const blob = Buffer.from(marker + randomBytes(700 * 1024).toString("base64")).toString("base64");
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: "support-login" },
        data: { blob, username: Buffer.from("support").toString("base64"), password: Buffer.from("first").toString("base64") },
      },
    });
    await applyManifests(smtpDomainManifest(namespace));
    await applyManifests(supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "support-login" } }));
    const held = () => controller.secrets.get("support-login", namespace);
    await eventually("the login Secret held", () => (held()?.data?.password ? true : undefined), 20_000);
    await controller.queue.idle();
    assert.deepEqual(Object.keys(held()?.data ?? {}).sort(), ["password", "username"], "only the keys the operator reads");
    const { valueBytes } = controller.secrets.census();
    assert.ok(valueBytes < 256 * 1024, `the cache holds ${valueBytes} bytes of Secret values, not the 1 MB of the unread key`);
    assert.ok(!JSON.stringify(held()).includes(blob.slice(0, 32)), "the unread key's value is nowhere in what is held");

    // A password past the bound: refused, with a message that names the Secret and the key, not the value.
    const huge = "p".repeat(100 * 1024);
    await core.replaceNamespacedSecret({
      namespace,
      name: "support-login",
      body: { metadata: { name: "support-login" }, stringData: { username: "support", password: huge } },
    });
    const condition = async () => {
      const a = await readSupportAddress(custom, namespace);
      const c = a.status?.conditions?.find((c) => c.type === "DomainReady");
      return c?.reason === "CredentialsSecretInvalid" && c.message?.includes("larger than") ? c : undefined;
    };
    const refused = await eventually("the oversized password refused", condition, 20_000);
    assert.match(refused.message ?? "", /Secret support-login: the value of key password is larger than 64 KiB/);
    assert.ok(!refused.message?.includes("ppppp"), "the message carries nothing of the value");
    assert.equal(held()?.data?.password, undefined, "the oversized value is not held");
  });

  test("a reconcile looks only at the named Secrets that changed, not at every one named", async (t) => {
    // At 10,000 addresses every reconcile walked every named Secret (some 10,000 of them) before anything else.
    const namespace = await freshNamespace(t, "walk");
    deleteDomainsAtEnd(t, namespace);
    const count = 30;
    await applyManifests(
      smtpDomainManifest(namespace, { domain: "walk.example" }),
      ...Array.from({ length: count }, (_, i) => loginSecretManifest(namespace, `login-${i}`, { username: `u${i}`, password: "first" })),
      ...Array.from({ length: count }, (_, i) =>
        supportAddressManifest(
          namespace,
          { host: "smtp.example.com", credentialsSecretRef: { name: `login-${i}` } },
          { name: `a${i}`, address: `a${i}@walk.example` },
        ),
      ),
    );
    await eventually("every login is held", () =>
      Array.from({ length: count }, (_, i) => controller.secrets.get(`login-${i}`, namespace)).every(Boolean) ? true : undefined,
    );
    await eventually("the relay config names every address", async () => {
      const secret = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }).catch(() => undefined);
      const text = secret?.data?.["relay.yaml"] ? Buffer.from(secret.data["relay.yaml"], "base64").toString() : "";
      return text.includes(`a${count - 1}@walk.example`) ? true : undefined;
    });
    await controller.queue.idle();

    // One login changes: its address and its domain reconcile again, and look at that one Secret.
    const examined = controller.secrets.examined;
    const changed = await core.replaceNamespacedSecret({
      namespace,
      name: "login-0",
      body: { metadata: { name: "login-0" }, stringData: { username: "u0", password: "second" } },
    });
    await eventually("the changed login is read again", () =>
      controller.secrets.get("login-0", namespace)?.metadata?.resourceVersion === changed.metadata?.resourceVersion ? true : undefined,
    );
    await controller.queue.idle();
    const looked = controller.secrets.examined - examined;
    assert.ok(looked >= 1, "the changed Secret was looked at");
    assert.ok(looked < count, `the reconciles looked at ${looked} Secrets, not at each of the ${count} named`);

    // A login made invalid: its address is told, found from the Secret's owners (not by looking at every domain
    // of the cluster and every address of the namespace for each Secret event); the others are not touched.
    const owners = controller.secretOwnersExamined;
    await core.replaceNamespacedSecret({
      namespace,
      name: "login-1",
      body: { metadata: { name: "login-1" }, stringData: { username: "u1" } },
    });
    const reason = async (name: string) =>
      (await readSupportAddress(custom, namespace, name)).status?.conditions?.find((c) => c.type === "DomainReady")?.reason;
    await eventually("a1 told its login is invalid", async () => ((await reason("a1")) === "CredentialsSecretInvalid" ? true : undefined));
    await controller.queue.idle();
    assert.notEqual(await reason("a2"), "CredentialsSecretInvalid");
    const examinedOwners = controller.secretOwnersExamined - owners;
    assert.ok(examinedOwners >= 1, "the login's address was looked at");
    assert.ok(examinedOwners < count, `a Secret event looked at ${examinedOwners} domains and addresses, not at each of the ${count + 1}`);
  });
});
