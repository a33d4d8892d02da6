// An object the operator's schema does not allow reaches it when the CRD in
// the cluster is not this operator's (applied by hand from another version, a
// conversion gap): here the SupportAddress CRD's spec schema is loosened for the
// length of the test. The operator must say on the object which fields are
// wrong, act on nothing of it, and carry on with everything else.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { e2eClients } from "../support/e2e.js";
import { assertReconcileWritesNothing, startTestController } from "../support/operator-rbac.js";
import {
  applyManifests,
  conditionOf,
  eventually,
  freshNamespace,
  kubectl,
  readSmtpDomain,
  readSupportAddress,
  secretText,
  waitForCondition,
  waitForEvents,
} from "../support/kube.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { tlsSecretManifest } from "../support/mail.js";
import { smtpDomainManifest } from "../support/manifests.js";

const crd = "crd/supportaddresses.smtpconnector.dev";
const domainCrd = "crd/smtpdomains.smtpconnector.dev";
const specSchema = "/spec/versions/0/schema/openAPIV3Schema/properties/spec";

async function patchSpecSchema(value: unknown, of = crd): Promise<void> {
  const patched = await kubectl(["patch", of, "--type=json", "-p", JSON.stringify([{ op: "replace", path: specSchema, value }])]);
  assert.equal(patched.code, 0, patched.stderr);
}

async function specSchemaOf(of: string): Promise<unknown> {
  const read = await kubectl(["get", of, "-o", "json"]);
  return (JSON.parse(read.stdout) as { spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: unknown } } } }[] } }).spec
    .versions[0]!.schema.openAPIV3Schema.properties.spec;
}

const loose = { type: "object", "x-kubernetes-preserve-unknown-fields": true };

/**
 * The hooks of a describe() here: admin clients and a test Controller, `of`'s spec schema loosened before the tests
 * when `loosened`, and put back as it was after them. The fields are set once the before hook ran.
 */
function schemaSuite(of: string, { loosened }: { loosened: boolean }) {
  const suite = {} as { controller: Controller; core: k8s.CoreV1Api; custom: k8s.CustomObjectsApi };
  let original: unknown;
  before(async () => {
    ({ core: suite.core, custom: suite.custom } = await e2eClients());
    original = await specSchemaOf(of);
    if (loosened) await patchSpecSchema(loose, of);
    suite.controller = await startTestController();
  });
  after(async () => {
    await suite.controller.stop();
    // The next test file gets this control plane's CRD exactly as it was.
    await patchSpecSchema(original, of);
  });
  return suite;
}

describe("an object that does not match the operator's schema", () => {
  const suite = schemaSuite(crd, { loosened: true });

  test("is reported on itself (InvalidObject, naming the fields), not acted on, and replaced by its next valid version", async (t) => {
    const namespace = await freshNamespace(t, "invalid");
    const manifest = (spec: unknown) => ({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { name: "support", namespace },
      spec,
    });
    // The loosened CRD may take a moment to be served.
    await eventually("the loosened CRD to admit the object", async () => {
      try {
        await applyManifests(manifest({ address: 42, domainRef: "example-com" }));
        return true;
      } catch {
        return undefined;
      }
    });
    const get = async () => await readSupportAddress(suite.custom, namespace, "support");
    const condition = conditionOf;
    const reported = await waitForCondition("Ready=False InvalidObject", get, "Ready", { reason: "InvalidObject" });
    const message = condition(reported, "Ready")!.message;
    assert.match(message, /spec\.address: Expected string/);
    assert.match(message, /spec\.domainRef: Expected object/);
    assert.match(message, /apply the CRD of this operator's version/);
    assert.equal(condition(reported, "Stalled")?.status, "True");
    assert.equal(condition(reported, "Stalled")?.reason, "InvalidObject");
    const events = await waitForEvents("a Warning Event", namespace, "involvedObject.name=support,type=Warning,reason=InvalidObject");
    assert.match(events, /spec\.address: Expected string/);

    // Reported once: a reconcile of the same invalid version writes nothing.
    await assertReconcileWritesNothing(suite.controller, `address/${namespace}/support`, "writes for the same invalid version");

    // A valid version: reconciled as any address (its domain does not exist, which it now says).
    await applyManifests(
      manifest({
        address: "support@example.com",
        domainRef: { name: "example-com" },
        outbound: { host: "smtp.example.com", port: 587, tls: "StartTLS", credentialsSecretRef: { name: "support-smtp-credentials" } },
      }),
    );
    const fixed = await waitForCondition(
      "InvalidObject replaced",
      get,
      "Ready",
      (ready) => ready !== undefined && ready.reason !== "InvalidObject",
    );
    assert.notEqual(condition(fixed, "Stalled")?.reason, "InvalidObject");
  });
});

describe("an SmtpDomain that stops matching the operator's schema", () => {
  const suite = schemaSuite(domainCrd, { loosened: false });

  test("is deleted when the user deletes it: its credentials revoked in the relay config, then its finalizer goes", async (t) => {
    const namespace = await freshNamespace(t, "invalid-domain");
    const { core, custom } = suite;
    await applyManifests(await tlsSecretManifest(namespace));
    // Valid first (the CRD's own schema and defaults): connected, so it carries the finalizer and owns a relay config.
    await applyManifests(smtpDomainManifest(namespace, { credentials: [{ version: 1 }], relay: { tls: { secretName: "relay-tls" } } }));
    const configExists = async () =>
      (await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }).then(
        () => true,
        () => false,
      )) || undefined;
    await eventually("the relay config", configExists);
    assert.equal(
      parseConfig(secretText(await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }), "relay.yaml")).domains[0]
        ?.credentials[0]?.state,
      "Active",
    );
    assert.ok((await readSmtpDomain(custom, namespace)).metadata.finalizers?.includes("smtpconnector.dev/disconnect"));

    // Then broken under a loosened CRD.
    await patchSpecSchema(loose, domainCrd);
    await eventually("the loosened CRD to admit an invalid spec", async () => {
      const patched = await kubectl([
        "-n",
        namespace,
        "patch",
        "smtpdomain",
        "example-com",
        "--type=merge",
        "-p",
        '{"spec":{"domain":42}}',
      ]);
      return patched.code === 0 ? true : undefined;
    });
    await waitForCondition("Ready=False InvalidObject", () => readSmtpDomain(custom, namespace), "Ready", { reason: "InvalidObject" });

    const deleted = await kubectl(["-n", namespace, "delete", "smtpdomain", "example-com", "--wait=false"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    await eventually("the SmtpDomain gone (its finalizer removed)", async () =>
      (await readSmtpDomain(custom, namespace).catch(() => undefined)) ? undefined : true,
    );
    // Its relay refuses every credential from then on; the garbage collector removes the config in its own time.
    const config = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }).catch(() => undefined);
    if (config) {
      const relay = parseConfig(secretText(config, "relay.yaml"));
      assert.deepEqual(
        relay.domains.flatMap((d) => d.credentials.map((c) => c.state)),
        ["Revoked"],
      );
    }
  });
});
