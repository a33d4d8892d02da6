// The SmtpDomain planner (operator/domain/plan.ts) with plain objects: every
// condition reason it sets, the objects it applies, the Events it records and
// when it looks again. What only an API server can show (ownership, 409s,
// garbage collection) stays in test/apiserver/operator-domain.test.ts; each
// reason from what was read (Secrets, certificates, DNS answers) is in
// test/unit/domain-reconcile-plan.test.ts, which checks the list is complete.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import type { CertificateState } from "../../operator/domain/certificate.js";
import type { IssuedCredential } from "../../operator/domain/credentials.js";
import type { Problem } from "../../operator/domain/inbound-credentials.js";
import {
  domainStatus,
  lastUseIntervalMs,
  objectKey,
  planDomain,
  planNotServed,
  relayObjects,
  type DomainSnapshot,
} from "../../operator/domain/plan.js";
import type { KubeObject, OperatorSettings } from "../../operator/domain/render.js";

const now = new Date("2026-06-01T12:00:00Z");
const settings: OperatorSettings = { relayImage: "img", relayHostSuffix: "relay.example.net" };

function domain(overrides: { generation?: number; status?: SmtpDomain["status"]; replicas?: number } = {}): SmtpDomain {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "example-com", namespace: "acme", uid: "uid-1", generation: overrides.generation ?? 1 },
    spec: {
      domain: "example.com",
      inbound: { delivery: { smtp: { host: "ingest", port: 25 } } },
      relay: { replicas: overrides.replicas ?? 2 },
    },
    ...(overrides.status ? { status: overrides.status } : {}),
  };
}

const issuedV1: IssuedCredential = {
  version: 1,
  secretName: "example-com-inbound-v1",
  username: "example-com-v1-abc",
  passwordSha256: "a".repeat(64),
  createdAt: "2026-05-01T00:00:00Z",
  userSupplied: false,
};
const certificate: CertificateState = {
  condition: { type: "CertificateReady", status: "True", reason: "Issued", message: "issued by the operator's CA" },
};

/** A served domain whose relay objects all exist as rendered, one replica available. */
function snapshot(overrides: Partial<DomainSnapshot> = {}): DomainSnapshot {
  const base: DomainSnapshot = {
    domain: domain(),
    addresses: ["support@example.com"],
    certificate,
    credentials: {
      plan: [{ version: 1, secretName: issuedV1.secretName, state: "Active" }],
      issued: new Map([[1, issuedV1]]),
      retired: new Set(),
    },
    problems: [],
    existing: new Map(),
    available: 1,
    reportedUse: new Map(),
    pollsLastUse: false,
    ...overrides,
  };
  if (!overrides.existing) base.existing = live(relayObjects(base, settings));
  return base;
}

/** Objects as the API server returns them after an apply (Secrets' stringData as data). */
function live(objects: readonly KubeObject[]): Map<string, Record<string, unknown>> {
  return new Map(
    objects.map((o) => {
      const { stringData, ...rest } = structuredClone(o) as KubeObject & { stringData?: Record<string, string> };
      const data = stringData
        ? { data: Object.fromEntries(Object.entries(stringData).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) }
        : {};
      return [objectKey(o), { ...rest, ...data }];
    }),
  );
}

const condition = (status: { conditions?: { type: string; status: string; reason: string; message: string }[] }, type: string) =>
  status.conditions?.find((c) => c.type === type);
const reasons = (status: { conditions?: { type: string; reason: string; status: string }[] }) =>
  Object.fromEntries((status.conditions ?? []).map((c) => [c.type, `${c.status} ${c.reason}`]));

describe("the SmtpDomain planner", () => {
  test("everything in place: no writes, no Events, Ready; no Stalled or Reconciling (present only while True)", () => {
    const plan = planDomain(snapshot(), settings, now);
    assert.deepEqual(plan.apply, []);
    assert.deepEqual(plan.events, []);
    assert.deepEqual(reasons(plan.status), {
      CredentialsIssued: "True Issued",
      CertificateReady: "True Issued",
      RelayAvailable: "True Available",
      AddressesConfigured: "True AddressesServed",
      Ready: "True Ready",
    });
    assert.equal(plan.status.activeVersions, "1");
    assert.equal(plan.status.relay?.endpoint, "example-com.acme.relay.example.net:587");
    assert.equal(plan.requeueAfterMs, undefined);
  });

  test("a first rollout: every object applied, no drift Event, RelayAvailable Progressing and Reconciling", () => {
    const plan = planDomain(snapshot({ existing: new Map(), available: 0 }), settings, now);
    assert.deepEqual(plan.apply.map(objectKey), [
      "Secret/example-com-relay-config",
      "Deployment/example-com-relay",
      "Service/example-com-relay",
      "Service/example-com-relay-internal",
      "NetworkPolicy/example-com-relay",
      "PodDisruptionBudget/example-com-relay",
    ]);
    assert.deepEqual(plan.events, []);
    assert.equal(reasons(plan.status).RelayAvailable, "False Progressing");
    assert.equal(reasons(plan.status).Ready, "False Progressing");
    assert.equal(reasons(plan.status).Reconciling, "True Progressing");
    assert.equal(reasons(plan.status).Stalled, undefined);
  });

  test("one replica asks for no PodDisruptionBudget", () => {
    const plan = planDomain(snapshot({ domain: domain({ replicas: 1 }), existing: new Map() }), settings, now);
    assert.ok(!plan.apply.some((o) => o.kind === "PodDisruptionBudget"));
  });

  test("drift on a settled spec: a deleted Deployment or an edited Service is restored with a Warning; a changed config is not drift", () => {
    const settled = domain({ status: { observedGeneration: 1, relay: { serviceName: "example-com-relay", endpoint: "x:587" } } });
    const base = snapshot({ domain: settled });
    const existing = new Map(base.existing);
    existing.delete("Deployment/example-com-relay");
    const service = structuredClone(existing.get("Service/example-com-relay")!) as { spec: { type: string } };
    service.spec.type = "NodePort";
    existing.set("Service/example-com-relay", service);
    const config = structuredClone(existing.get("Secret/example-com-relay-config")!) as { data: Record<string, string> };
    config.data["relay.yaml"] = Buffer.from("old").toString("base64");
    existing.set("Secret/example-com-relay-config", config);
    const plan = planDomain({ ...base, existing }, settings, now);
    assert.deepEqual(plan.apply.map(objectKey).sort(), [
      "Deployment/example-com-relay",
      "Secret/example-com-relay-config",
      "Service/example-com-relay",
    ]);
    assert.deepEqual(plan.events.map((e) => `${e.type} ${e.reason} ${e.message.split(":")[0]}`).sort(), [
      "Warning DriftRepaired Deployment example-com-relay was deleted",
      "Warning DriftRepaired Service example-com-relay differed from what the operator renders (edited by hand?)",
    ]);
    // A deleted config is drift too.
    existing.delete("Secret/example-com-relay-config");
    assert.ok(
      planDomain({ ...base, existing }, settings, now).events.some((e) =>
        e.message.startsWith("Secret example-com-relay-config was deleted"),
      ),
    );
  });

  test("after a spec change nothing missing is drift", () => {
    const changed = domain({
      generation: 2,
      status: { observedGeneration: 1, relay: { serviceName: "example-com-relay", endpoint: "x:587" } },
    });
    const plan = planDomain(snapshot({ domain: changed, existing: new Map() }), settings, now);
    assert.equal(plan.apply.length, 6);
    assert.deepEqual(plan.events, []);
  });

  test("an object of someone else's is never applied over: SecretConflict for a Secret, ObjectConflict for anything else", () => {
    const base = snapshot();
    const foreign = (key: string) => {
      const existing = new Map(base.existing);
      const object = structuredClone(existing.get(key)!) as { metadata: { ownerReferences?: unknown[] } };
      object.metadata.ownerReferences = [
        { apiVersion: "apps/v1", kind: "ReplicaSet", name: "other", uid: "someone-else", controller: true },
      ];
      existing.set(key, object);
      return planDomain({ ...base, existing }, settings, now);
    };
    const deployment = foreign("Deployment/example-com-relay");
    assert.deepEqual(deployment.apply, []);
    assert.equal(reasons(deployment.status).RelayAvailable, "False ObjectConflict");
    assert.equal(reasons(deployment.status).Ready, "False ObjectConflict");
    assert.equal(reasons(deployment.status).Stalled, "True ObjectConflict");
    assert.match(
      condition(deployment.status, "RelayAvailable")!.message,
      /^Deployment example-com-relay exists and is not owned by this SmtpDomain/,
    );
    const config = foreign("Secret/example-com-relay-config");
    assert.equal(reasons(config.status).RelayAvailable, "False SecretConflict");
  });

  test("a gathered problem sets its condition, Ready and Stalled; the first one found is Stalled's", () => {
    const problems: Problem[] = [
      { condition: "CertificateReady", reason: "HostnamesNotCovered", message: "the certificate does not name relay.example.com" },
      { condition: "RelayAvailable", reason: "SecretNotFound", message: "Secret next-hop (delivery.smtp.authSecretRef) does not exist" },
    ];
    const status = planDomain(
      snapshot({
        problems,
        certificate: {
          condition: { type: "CertificateReady", status: "False", reason: "HostnamesNotCovered", message: problems[0]!.message },
        },
      }),
      settings,
      now,
    ).status;
    assert.equal(reasons(status).CertificateReady, "False HostnamesNotCovered");
    assert.equal(reasons(status).RelayAvailable, "False SecretNotFound");
    assert.equal(reasons(status).Ready, "False HostnamesNotCovered");
    assert.equal(reasons(status).Stalled, "True HostnamesNotCovered");
    assert.equal(reasons(status).Reconciling, undefined);
  });

  test("a host name another domain holds: CertificateReady False HostnameConflict, Stalled and Ready say it; the relay is still applied", () => {
    const conflicts = [{ hostname: "relay.shared.test", holder: { namespace: "other-team", name: "mail" }, why: "Earlier" as const }];
    const plan = planDomain(snapshot({ hostnameConflicts: conflicts, existing: new Map() }), settings, now);
    const certificateReady = condition(plan.status, "CertificateReady");
    assert.equal(`${certificateReady?.status} ${certificateReady?.reason}`, "False HostnameConflict");
    assert.equal(reasons(plan.status).Ready, "False HostnameConflict", "Ready is held back");
    assert.equal(reasons(plan.status).Stalled, "True HostnameConflict");
    assert.match(certificateReady!.message, /relay\.shared\.test belongs to an SmtpDomain in another namespace/);
    assert.doesNotMatch(certificateReady!.message, /other-team/, "another account is not named");
    // Said first, before a problem the gathering found with the certificate itself.
    const both = planDomain(
      snapshot({ hostnameConflicts: conflicts, problems: [{ condition: "CertificateReady", reason: "CAInvalid", message: "bad CA" }] }),
      settings,
      now,
    );
    assert.equal(reasons(both.status).Stalled, "True HostnameConflict");
    assert.ok(
      plan.apply.some((o) => o.kind === "Deployment"),
      "the relay serves its other names",
    );
    // Without a conflict nothing of it remains.
    assert.equal(reasons(planDomain(snapshot(), settings, now).status).CertificateReady, "True Issued");
  });

  test("a host name another domain holds is neither announced by the relay nor the endpoint in status", () => {
    const listing = domain();
    listing.spec.relay = { ...listing.spec.relay, hostnames: ["relay.shared.test", "own.acme.test"] };
    const conflicts = [{ hostname: "relay.shared.test", holder: { namespace: "other-team", name: "mail" }, why: "Earlier" as const }];
    const plan = planDomain(snapshot({ domain: listing, hostnameConflicts: conflicts, existing: new Map() }), settings, now);
    assert.equal(plan.status.relay?.endpoint, "own.acme.test:587");
    const config = plan.apply.find((o) => o.kind === "Secret" && o.metadata.name === "example-com-relay-config") as
      { stringData?: Record<string, string> } | undefined;
    assert.match(config?.stringData?.["relay.yaml"] ?? "", /^hostname: own\.acme\.test$/m);
    // Holding it, the first listed name is the one.
    assert.equal(
      planDomain(snapshot({ domain: listing, existing: new Map() }), settings, now).status.relay?.endpoint,
      "relay.shared.test:587",
    );
  });

  test("credential problems: NoActiveCredential holds Ready back; VersionRevoked and SecretModified do not while a version is Active", () => {
    const none = planDomain(
      snapshot({
        problems: [
          { condition: "CredentialsIssued", reason: "NoActiveCredential", message: "every credential version is revoked or expired" },
        ],
        credentials: {
          plan: [{ version: 1, secretName: issuedV1.secretName, state: "Revoked" }],
          issued: new Map([[1, issuedV1]]),
          retired: new Set([1]),
        },
      }),
      settings,
      now,
    ).status;
    assert.equal(reasons(none).CredentialsIssued, "False NoActiveCredential");
    assert.equal(reasons(none).Ready, "False NoActiveCredential");
    assert.equal(none.activeVersions, "");
    assert.deepEqual(none.revokedVersions, [1]);
    for (const reason of ["VersionRevoked", "SecretModified"] as const) {
      const status = planDomain(snapshot({ problems: [{ condition: "CredentialsIssued", reason, message: "m" }] }), settings, now).status;
      assert.equal(reasons(status).CredentialsIssued, `False ${reason}`);
      assert.equal(reasons(status).Ready, "True Ready", reason);
      assert.equal(reasons(status).Stalled, `True ${reason}`);
    }
    // The same problem with nothing Active left does hold Ready back.
    const revokedOnly = planDomain(
      snapshot({
        problems: [{ condition: "CredentialsIssued", reason: "SecretModified", message: "m" }],
        credentials: {
          plan: [{ version: 1, secretName: issuedV1.secretName, state: "Revoked" }],
          issued: new Map([[1, issuedV1]]),
          retired: new Set([1]),
        },
      }),
      settings,
      now,
    ).status;
    assert.equal(reasons(revokedOnly).Ready, "False SecretModified");
  });

  test("addresses: none served says NoAddresses, and why when some name the domain but are not served", () => {
    const none = planDomain(snapshot({ addresses: [] }), settings, now).status;
    assert.equal(reasons(none).AddressesConfigured, "False NoAddresses");
    assert.equal(reasons(none).Ready, "False NoAddresses");
    assert.match(condition(none, "AddressesConfigured")!.message, /^add at least one SupportAddress/);
    const notServed = planDomain(snapshot({ addresses: [], addressesNotServed: 2 }), settings, now).status;
    assert.match(condition(notServed, "AddressesConfigured")!.message, /^none of the 2 SupportAddress\(es\)/);
    assert.equal(notServed.addressesNotServed, 2);
    const some = planDomain(snapshot({ addressesNotServed: 1 }), settings, now).status;
    assert.equal(condition(some, "AddressesConfigured")!.message, "1 support address(es) served, 1 not served (see their DomainReady)");
  });

  test("the DKIM condition is reported and never holds Ready back", () => {
    const dkimState = {
      signing: [],
      records: [{ selector: "s1", name: "s1._domainkey.example.com", value: "v=DKIM1; k=rsa; p=AAAA", published: false, signing: false }],
      pending: ["s1"],
      condition: { type: "DKIMRecordPublished", status: "False" as const, reason: "RecordMissing" as const, message: "no DKIM record" },
    };
    const outbound = { submission: { username: "u", password: "p" }, controlToken: "t", senders: [], dkim: [], dkimState };
    const plan = planDomain(snapshot({ outbound }), { ...settings, dnsResolver: "127.0.0.1:53", dnsCheckIntervalMs: 5_000 }, now);
    assert.equal(reasons(plan.status).DKIMRecordPublished, "False RecordMissing");
    assert.equal(reasons(plan.status).Ready, "True Ready");
    assert.deepEqual(plan.status.dkim, { records: dkimState.records, pending: "s1" });
    assert.equal(plan.requeueAfterMs, 5_000, "pending records are looked up again");
  });

  test("last use: the later of status and the relay's report; a running relay is asked again", () => {
    const earlier = domain({
      status: {
        credentials: [
          {
            version: 1,
            secretName: issuedV1.secretName,
            username: issuedV1.username,
            state: "Active",
            createdAt: issuedV1.createdAt,
            lastUsedAt: "2026-05-30T00:00:00Z",
            passwordSha256: issuedV1.passwordSha256,
          },
        ],
      },
    });
    const reported = planDomain(
      snapshot({ domain: earlier, reportedUse: new Map([[1, "2026-05-31T10:00:00.000Z"]]), pollsLastUse: true }),
      settings,
      now,
    );
    assert.equal(reported.status.credentials?.[0]?.lastUsedAt, "2026-05-31T10:00:00Z");
    assert.equal(reported.requeueAfterMs, lastUseIntervalMs);
    const forgotten = planDomain(snapshot({ domain: earlier, reportedUse: new Map() }), settings, now);
    assert.equal(forgotten.status.credentials?.[0]?.lastUsedAt, "2026-05-30T00:00:00Z");
    assert.equal(
      planDomain(snapshot({ pollsLastUse: true, available: 0, existing: new Map() }), settings, now).requeueAfterMs,
      undefined,
      "no relay to ask",
    );
  });

  test("it comes back when an older version expires and when the certificate is due", () => {
    const expiring = planDomain(
      snapshot({
        credentials: {
          plan: [{ version: 1, secretName: issuedV1.secretName, state: "Active", expiresAt: "2026-06-01T13:00:00Z" }],
          issued: new Map([[1, issuedV1]]),
          retired: new Set(),
        },
      }),
      settings,
      now,
    );
    assert.equal(expiring.requeueAfterMs, 3_600_000 + 500);
    assert.equal(expiring.status.credentials?.[0]?.expiresAt, "2026-06-01T13:00:00Z");
    const renewal = planDomain(snapshot({ certificate: { ...certificate, nextCheck: new Date(now.getTime() + 120_000) } }), settings, now);
    assert.equal(renewal.requeueAfterMs, 120_500);
  });

  test("a domain the rules do not serve: Ready False and Stalled with the verdict's reason, what was issued kept on record", () => {
    const issued = domain({
      status: {
        credentials: [
          {
            version: 1,
            secretName: "s",
            username: "u",
            state: "Active",
            createdAt: "2026-05-01T00:00:00Z",
            passwordSha256: "a".repeat(64),
          },
        ],
        revokedVersions: [0],
      },
    });
    const status = planNotServed(
      issued,
      { served: false, reason: "DomainConflict", message: "example.com is connected in namespace other" },
      now,
    );
    assert.deepEqual(reasons(status), { Ready: "False DomainConflict", Stalled: "True DomainConflict" });
    assert.deepEqual(status.credentials, issued.status!.credentials);
    assert.deepEqual(status.revokedVersions, [0]);
    assert.equal(status.observedGeneration, 1);
  });

  test("domainStatus takes one typed input and keeps a condition's transition time when it does not change", () => {
    const input = {
      domain: domain(),
      credentials: snapshot().credentials,
      problems: [],
      available: 1,
      addressCount: 1,
      settings,
      now,
      certificate,
    };
    const first = domainStatus(input);
    const later = domainStatus({ ...input, domain: { ...domain(), status: first }, now: new Date(now.getTime() + 60_000) });
    assert.equal(condition(later, "Ready")!.status, "True");
    assert.deepEqual(
      later.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime,
      first.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime,
    );
  });
});
