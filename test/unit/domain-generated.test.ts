// Which generated Secrets a domain uses as they are, creates, or leaves alone
// (operator/domain/generated.ts), with plain objects. That a create is a POST
// and the loser of a race reads the winner's is test/faults/operator-faults.test.ts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { planGeneratedSecret, planGeneratedSecrets } from "../../operator/domain/generated.js";

const domain: SmtpDomain = {
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "acme", uid: "uid-1" },
  spec: {
    domain: "example.com",
    inbound: { delivery: { smtp: { host: "ingest", port: 25 } } },
    dkim: {
      keys: [
        { selector: "rsa1" },
        { selector: "ed1", algorithm: "Ed25519" },
        { selector: "own", privateKeySecretRef: { name: "their-key" } },
      ],
    },
  },
};

const b64 = (v: string) => Buffer.from(v).toString("base64");
function secret(name: string, data: Record<string, string>, owner = "uid-1"): k8s.V1Secret {
  return {
    metadata: {
      name,
      resourceVersion: "41",
      ownerReferences: [
        { apiVersion: "smtpconnector.dev/v1alpha1", kind: "SmtpDomain", name: "example-com", uid: owner, controller: true },
      ],
    },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  };
}

describe("generated Secrets", () => {
  test("every one a domain has: submission, control, then each DKIM key without a Secret of its own", () => {
    const decisions = planGeneratedSecrets(domain, () => undefined);
    assert.deepEqual(
      decisions.map((d) => [d.name, d.what.kind, "create" in d]),
      [
        ["example-com-submission", "submission", true],
        ["example-com-relay-control", "control", true],
        ["example-com-dkim-rsa1", "dkim", true],
        ["example-com-dkim-ed1", "dkim", true],
      ],
    );
    assert.deepEqual(decisions[3]!.what, { kind: "dkim", selector: "ed1", algorithm: "Ed25519" });
    assert.ok(
      decisions.every((d) => !("resourceVersion" in d)),
      "none exists: each is created (POST), never overwritten",
    );
  });

  test("ours and complete: used as it is, nothing written", () => {
    const d = planGeneratedSecret(
      domain,
      "example-com-relay-control",
      { kind: "control" },
      secret("example-com-relay-control", { token: "t0k" }),
    );
    assert.deepEqual("use" in d && d.use, { token: "t0k" });
  });

  test("ours but incomplete (a key empty or missing): filled only if still the version read", () => {
    const d = planGeneratedSecret(
      domain,
      "example-com-submission",
      { kind: "submission" },
      secret("example-com-submission", { username: "helpdesk", password: "" }),
    );
    assert.ok("create" in d);
    assert.equal(d.resourceVersion, "41");
  });

  test("someone else's: SecretConflict on RelayAvailable, never written over", () => {
    const d = planGeneratedSecret(
      domain,
      "example-com-submission",
      { kind: "submission" },
      secret("example-com-submission", { username: "u", password: "p" }, "uid-other"),
    );
    assert.ok("conflict" in d);
    assert.deepEqual(
      { condition: d.conflict.condition, reason: d.conflict.reason },
      { condition: "RelayAvailable", reason: "SecretConflict" },
    );
    assert.match(
      d.conflict.message,
      /Secret example-com-submission exists and is not owned by this SmtpDomain; the operator never overwrites it/,
    );
  });

  test("no DKIM key is made while the submission or control Secret is someone else's (the domain has no outbound)", () => {
    const decisions = planGeneratedSecrets(domain, (name) =>
      name === "example-com-relay-control" ? secret(name, { token: "x" }, "uid-other") : undefined,
    );
    assert.deepEqual(
      decisions.map((d) => d.name),
      ["example-com-submission", "example-com-relay-control"],
    );
    assert.ok("create" in decisions[0]!, "the submission Secret is still made");
  });
});
