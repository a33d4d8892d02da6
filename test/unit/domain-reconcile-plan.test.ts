// The domain reconcile's plan from what was read (operator/domain/snapshot.ts),
// with plain objects: the Secrets as the API server returns them, the CA as a
// key pair. What to issue is planned, never done: the reconcile's apply step
// makes each secret and creates its Secret once (the 409 race and the re-read
// are the API server's to show: test/faults/operator-faults.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { caNameConstraints, type CertificateAuthority } from "../../operator/domain/certificate.js";
import { clientSnippets, credentialSecretName } from "../../operator/domain/credentials.js";
import { objectKey, relayObjectRefs } from "../../operator/domain/plan.js";
import {
  certificateNames,
  controlSecret,
  credentialSecret,
  relayHostname,
  relayTlsSecret,
  submissionSecret,
  type KubeObject,
  type OperatorSettings,
} from "../../operator/domain/render.js";
import { planReconcile, type DomainReads, type ReconcilePlan } from "../../operator/domain/snapshot.js";
import { defaultCertificatePolicy, issueServerCertificate, newCertificateAuthority } from "../../operator/tls/certificates.js";

const now = new Date("2026-06-01T12:00:00Z");
const settings: OperatorSettings = { relayImage: "img", relayHostSuffix: "relay.example.net" };
const uid = "uid-1";

function domain(spec: Partial<SmtpDomain["spec"]> = {}, status?: SmtpDomain["status"]): SmtpDomain {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "example-com", namespace: "acme", uid, generation: 1 },
    spec: {
      domain: "example.com",
      inbound: { credentials: [{ version: 1 }], delivery: { smtp: { host: "ingest", port: 25 } } },
      relay: { replicas: 1 },
      ...spec,
    },
    ...(status ? { status } : {}),
  };
}

const pair = newCertificateAuthority("test", now, caNameConstraints(settings));
const ca: CertificateAuthority = { ...pair, trustPem: pair.certPem };

/** An object as the API server returns it: stringData as data, owned by `owner` (the domain unless told). */
function live(object: KubeObject, owner: string | undefined = uid): k8s.V1Secret {
  const { stringData, ...rest } = structuredClone(object) as KubeObject & { stringData?: Record<string, string> };
  const data = stringData ? Object.fromEntries(Object.entries(stringData).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) : {};
  return {
    ...(rest as k8s.V1Secret),
    metadata: {
      ...(rest.metadata as k8s.V1ObjectMeta),
      resourceVersion: "7",
      creationTimestamp: new Date("2026-05-01T00:00:00Z"),
      ownerReferences: owner
        ? [{ apiVersion: "smtpconnector.dev/v1alpha1", kind: "SmtpDomain", name: "example-com", uid: owner, controller: true }]
        : [],
    },
    data: { ...(rest as k8s.V1Secret).data, ...data },
  };
}

/** Nothing exists yet: a new domain. */
function reads(overrides: Partial<DomainReads> = {}): DomainReads {
  const d = overrides.domain ?? domain();
  return {
    domain: d,
    served: [],
    hostnameConflicts: [],
    tlsSecret: undefined,
    ca: { ca },
    credentials: { issuedSecrets: [], secrets: new Map([[credentialSecretName(d, 1), undefined]]) },
    secrets: new Map(),
    dns: new Map(),
    existing: new Map(),
    available: 0,
    rolledOut: false,
    reportedUse: new Map(),
    pollsLastUse: false,
    ...overrides,
  };
}

/** What the apply step would have issued for a new domain, as read back. */
function issuedReads(d = domain()): DomainReads {
  const tls = issueServerCertificate(ca, certificateNames(d, settings), now, defaultCertificatePolicy);
  const issued = { username: "example-com-v1-abcdef", password: "p".repeat(43) };
  const snippets = clientSnippets(d.spec.domain, relayHostname(d, settings), issued.username, issued.password, ca.trustPem);
  const credential = credentialSecret(d, 1, issued, snippets);
  return reads({
    domain: d,
    tlsSecret: live(relayTlsSecret(d, tls, ca.trustPem)),
    credentials: { issuedSecrets: [], secrets: new Map([[credentialSecretName(d, 1), live(credential)]]) },
    secrets: new Map([
      ["example-com-submission", live(submissionSecret(d, { username: "helpdesk-example-com-abc123", password: "s".repeat(43) }))],
      ["example-com-relay-control", live(controlSecret(d, "t".repeat(43)))],
    ]),
  });
}

const planned = (result: ReconcilePlan) => {
  assert.ok("plan" in result, `a plan, not issuing: ${JSON.stringify("issue" in result ? result.issue.map((a) => a.kind) : [])}`);
  return result;
};
const reasons = (status: { conditions?: { type: string; reason: string; status: string }[] }) =>
  Object.fromEntries((status.conditions ?? []).map((c) => [c.type, `${c.status} ${c.reason}`]));

describe("the domain reconcile's plan from what was read", () => {
  test("a new domain: the certificate, credential version 1, the submission credential and the control token are issued first, and nothing else is planned", () => {
    const result = planReconcile(reads(), settings, now);
    assert.ok("issue" in result);
    assert.deepEqual(
      result.issue.map((a) =>
        a.kind === "certificate"
          ? `certificate ${a.certificate.secretName} ${a.certificate.dnsNames[0]} (${a.certificate.reason})`
          : a.kind === "credential"
            ? `credential ${a.credential.secretName}`
            : `generated ${a.generated.name}`,
      ),
      [
        "certificate example-com-relay-tls example-com.acme.relay.example.net (none was issued yet)",
        "credential example-com-inbound-v1",
        "generated example-com-submission",
        "generated example-com-relay-control",
      ],
    );
    const credential = result.issue.find((a) => a.kind === "credential");
    assert.ok(credential?.kind === "credential");
    // The snippets name the relay and the CA to trust; the password is made only when it is issued.
    assert.equal(credential.credential.host, "example-com.acme.relay.example.net");
    assert.equal(credential.credential.caPem, ca.trustPem);
    assert.ok(!JSON.stringify(result).includes("password"), "no secret is planned");
  });

  test("once issued and read back: the relay objects and status are planned from them, nothing is issued again", () => {
    const result = planned(planReconcile(issuedReads(), settings, now));
    assert.deepEqual(result.plan.apply.map(objectKey), relayObjectRefs(domain(), settings).map(objectKey));
    assert.deepEqual(result.writeIfUnchanged, []);
    const status = reasons(result.plan.status);
    assert.equal(status.CredentialsIssued, "True Issued");
    assert.equal(status.CertificateReady, "True Issued");
    assert.equal(result.plan.status.credentials?.[0]?.username, "example-com-v1-abcdef");
    assert.equal(result.plan.status.credentials?.[0]?.createdAt, "2026-05-01T00:00:00Z");
  });

  test("an empty credential Secret of ours is filled only if unchanged since read; someone else's is never issued into", () => {
    const base = issuedReads();
    const empty = live({ apiVersion: "v1", kind: "Secret", metadata: { name: "example-com-inbound-v1", namespace: "acme" } });
    const fill = planReconcile(
      { ...base, credentials: { issuedSecrets: [], secrets: new Map([["example-com-inbound-v1", empty]]) } },
      settings,
      now,
    );
    assert.ok("issue" in fill);
    assert.deepEqual(
      fill.issue.map((a) => (a.kind === "credential" ? a.credential.resourceVersion : a.kind)),
      ["7"],
    );
    const foreign = { ...empty, metadata: { ...empty.metadata, ownerReferences: [] } };
    const conflict = planned(
      planReconcile(
        { ...base, credentials: { issuedSecrets: [], secrets: new Map([["example-com-inbound-v1", foreign]]) } },
        settings,
        now,
      ),
    );
    assert.equal(reasons(conflict.plan.status).CredentialsIssued, "False SecretConflict");
  });

  test("a certificate due for renewal is reissued; one whose Secret lacks the current trust bundle gets it, without a new key", () => {
    const base = issuedReads();
    const renewal = planReconcile(base, settings, new Date(now.getTime() + 80 * 86_400_000));
    assert.ok("issue" in renewal);
    assert.deepEqual(
      renewal.issue.map((a) => a.kind),
      ["certificate"],
    );
    const rotated: CertificateAuthority = { ...ca, trustPem: `${ca.certPem}${ca.certPem}` };
    const bundle = planned(planReconcile({ ...base, ca: { ca: rotated } }, settings, now));
    const tls = bundle.plan.apply.find((o) => o.metadata.name === "example-com-relay-tls") as
      { stringData?: Record<string, string> } | undefined;
    assert.ok(tls, "the TLS Secret is applied");
    assert.equal(tls.stringData?.["ca.crt"], rotated.trustPem);
    assert.equal(tls.stringData?.["tls.key"], Buffer.from(base.tlsSecret?.data?.["tls.key"] ?? "", "base64").toString(), "the same key");
    // The credential Secret's snippets carry the CA to trust: refreshed, only if unchanged since read.
    assert.deepEqual(
      bundle.writeIfUnchanged.map((w) => `${w.object.metadata.name} ${w.resourceVersion}`),
      ["example-com-inbound-v1 7"],
    );
  });
});
