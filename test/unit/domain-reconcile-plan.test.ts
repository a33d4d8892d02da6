// The domain reconcile's plan from what was read (operator/domain/snapshot.ts),
// with plain objects: the Secrets as the API server returns them, the CA as a
// key pair. What to issue is planned, never done: the reconcile's apply step
// makes each secret and creates its Secret once (the 409 race and the re-read
// are the API server's to show: test/faults/operator-faults.test.ts).
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { reasons as allReasons, smtpDomainConditions } from "../../crds/conditions.js";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { caNameConstraints, type CertificateAuthority } from "../../operator/domain/certificate.js";
import { clientSnippets, credentialSecretName } from "../../operator/domain/credentials.js";
import { objectKey, planNotServed, relayObjectRefs } from "../../operator/domain/plan.js";
import {
  certificateNames,
  controlSecret,
  credentialSecret,
  dkimKeySecret,
  relayHostname,
  relayTlsSecret,
  submissionSecret,
  type KubeObject,
  type OperatorSettings,
} from "../../operator/domain/render.js";
import type { CaGathered } from "../../operator/domain/installation-ca.js";
import { planReconcile as planReconcileOf, type DomainReads, type ReconcilePlan } from "../../operator/domain/snapshot.js";
import { caSecretContents, rotateAnnotation, trustBundle, type CaState } from "../../operator/tls/ca-rotation.js";
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
const ca: CertificateAuthority = { ...pair, trustPem: pair.certPem, state: { signing: pair, retired: [] } };

/** The CA Secret as gathered for a CA in `state` (decoded, as stored), with extra annotations (the user's). */
function caRead(state: CaState, annotations: Record<string, string> = {}): CaGathered {
  const contents = caSecretContents(state);
  return {
    secret: { state, data: contents.data, annotations: { ...contents.annotations, ...annotations }, resourceVersion: "3", uid: "ca-uid" },
  };
}

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
    ca: caRead(ca.state),
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

/** Every reason a planner output in this file carried: the last test holds it against crds/conditions.ts. */
const seen = new Set<string>();
const note = <T extends { conditions?: { reason: string }[] }>(status: T): T => {
  for (const c of status.conditions ?? []) seen.add(c.reason);
  return status;
};
function planReconcile(r: DomainReads, s: OperatorSettings, at: Date): ReconcilePlan {
  const result = planReconcileOf(r, s, at);
  if ("plan" in result) note(result.plan.status);
  return result;
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
          ? `certificate ${a.certificate.secretName} ${a.certificate.dnsNames[0]} (${a.certificate.reason}, signed by the ${a.certificate.signer} CA)`
          : a.kind === "credential"
            ? `credential ${a.credential.secretName}`
            : a.kind === "generated"
              ? `generated ${a.generated.name}`
              : "ca",
      ),
      [
        "certificate example-com-relay-tls example-com.acme.relay.example.net (none was issued yet, signed by the signing CA)",
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
    // Nor the CA's key: the certificate names its signer, the apply step takes the key from what was read.
    assert.ok(!JSON.stringify(result).includes("PRIVATE KEY"), "no key is planned");
  });

  test("the installation's CA first, alone: created when missing, its rotation's steps taken, a hand edit repaired; no key planned", () => {
    const caActions = (r: DomainReads, at = now) => {
      const result = planReconcile(r, settings, at);
      assert.ok("issue" in result);
      assert.ok(!JSON.stringify(result).includes("PRIVATE KEY"), "no key is planned: a new CA's is made when it is applied");
      return result.issue.map((a) => (a.kind === "ca" ? a.ca : a.kind));
    };
    assert.deepEqual(caActions(reads({ ca: { missing: true } })), [{ create: true }], "nothing else before the CA exists");
    // Phase 1 asked for: the next CA is published beside the signing one, onto the version read.
    const asked = caActions({ ...issuedReads(), ca: caRead(ca.state, { [rotateAnnotation]: "now" }) });
    assert.deepEqual(
      asked.map((a) => (typeof a === "object" && "advance" in a ? [a.advance.resourceVersion, ...a.advance.steps.map((s) => s.step)] : a)),
      [["3", "published"]],
    );
    // Phase 2 due: the next CA signs.
    const next = newCertificateAuthority("next", now, caNameConstraints(settings));
    const phase1: CaState = { signing: pair, next: { pair: next, signsFrom: now, reason: "asked" }, retired: [], rotatedFor: "now" };
    assert.deepEqual(caActions({ ...issuedReads(), ca: caRead(phase1, { [rotateAnnotation]: "now" }) }), [
      { advance: { steps: [{ step: "promoted" }], resourceVersion: "3" } },
    ]);
    // ca.crt edited by hand: written back as the state says, no step taken.
    const edited = caRead(ca.state);
    assert.ok("secret" in edited);
    const repaired = caActions({ ...issuedReads(), ca: { secret: { ...edited.secret, data: { ...edited.secret.data, "ca.crt": "" } } } });
    assert.deepEqual(repaired, [{ advance: { steps: [], resourceVersion: "3" } }]);
    // The same CA, current: nothing for it; the domain is planned.
    planned(planReconcile(issuedReads(), settings, now));
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
    // A rotation done: the replaced CA stays in the bundle.
    const replaced = newCertificateAuthority("replaced", now, caNameConstraints(settings));
    const rotatedState: CaState = { signing: pair, retired: [replaced.certPem], rotatedAt: now };
    const rotated = { trustPem: trustBundle(rotatedState) };
    const bundle = planned(planReconcile({ ...base, ca: caRead(rotatedState) }, settings, now));
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

  /** The conditions of the plan for `r` (read once issued), as `Type: Status Reason`, and the messages. */
  function conditionsOf(r: DomainReads, s: OperatorSettings = settings, at = now) {
    const { plan } = planned(planReconcile(r, s, at));
    return {
      reasons: reasons(plan.status),
      message: (type: string) => plan.status.conditions?.find((c) => c.type === type)?.message ?? "",
    };
  }

  const withDomain = (r: DomainReads, d: SmtpDomain): DomainReads => ({ ...r, domain: d });
  const spec = (patch: Partial<SmtpDomain["spec"]>, status?: SmtpDomain["status"]) => domain(patch, status);
  const tenYears = { durationMs: 90 * 86_400_000, renewBeforeMs: 30 * 86_400_000 };

  describe("every condition reason, from plain objects", () => {
    const referenced = spec({ relay: { replicas: 1, tls: { secretName: "relay-tls" } } });
    const host = "example-com.acme.relay.example.net";
    /** A referenced (e.g. cert-manager) TLS Secret: not the domain's, signed by some CA. */
    const userTls = (names: string[], issuedAt: Date, key?: string): DomainReads => {
      const pair = issueServerCertificate(ca, names, issuedAt, tenYears);
      const secret = live(
        {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "relay-tls", namespace: "acme" },
          stringData: { "tls.crt": pair.certPem, "tls.key": key ?? pair.keyPem },
        },
        undefined,
      );
      return { ...withDomain(issuedReads(referenced), referenced), tlsSecret: secret, ca: undefined };
    };
    const days = (n: number) => new Date(now.getTime() + n * 86_400_000);

    test("the relay: Progressing until a replica is available, then Available; addresses: NoAddresses, then AddressesServed; Ready", () => {
      const first = conditionsOf(issuedReads());
      assert.equal(first.reasons.RelayAvailable, "False Progressing");
      assert.equal(first.reasons.AddressesConfigured, "False NoAddresses");
      assert.equal(first.reasons.Ready, "False Progressing");
      assert.equal(first.reasons.Reconciling, "True Progressing");
      const support = {
        metadata: { name: "support", namespace: "acme" },
        spec: {
          address: "support@example.com",
          domainRef: { name: "example-com" },
          outbound: { host: "smtp", credentialsSecretRef: { name: "o" } },
        },
      } as SupportAddress;
      const serving = conditionsOf({ ...issuedReads(), available: 1, served: [support] });
      assert.deepEqual(serving.reasons, {
        CredentialsIssued: "True Issued",
        CertificateReady: "True Issued",
        RelayAvailable: "True Available",
        AddressesConfigured: "True AddressesServed",
        Ready: "True Ready",
      });
    });

    test("a referenced TLS Secret: SecretNotFound (with what to do), SecretInvalid, Valid, ExpiringSoon, Expired, NotYetValid, KeyMismatch, HostnamesNotCovered", () => {
      const missing = conditionsOf({ ...withDomain(issuedReads(referenced), referenced), tlsSecret: undefined, ca: undefined });
      assert.equal(missing.reasons.CertificateReady, "False SecretNotFound");
      assert.equal(missing.reasons.Ready, "False SecretNotFound");
      assert.match(missing.message("CertificateReady"), /relay-tls does not exist: create a kubernetes\.io\/tls Secret/);
      const noKey = userTls([host], now);
      delete noKey.tlsSecret!.data!["tls.key"];
      assert.equal(conditionsOf(noKey).reasons.CertificateReady, "False SecretInvalid");
      assert.equal(conditionsOf(userTls([host], now)).reasons.CertificateReady, "True Valid");
      assert.equal(conditionsOf(userTls([host], days(-80))).reasons.CertificateReady, "True ExpiringSoon");
      const expired = conditionsOf(userTls([host], days(-100)));
      assert.equal(expired.reasons.CertificateReady, "False Expired");
      assert.equal(expired.reasons.Stalled, "True Expired");
      const early = conditionsOf(userTls([host], days(1)));
      assert.equal(early.reasons.CertificateReady, "False NotYetValid");
      assert.equal(early.reasons.Stalled, undefined, "time fixes it: not Stalled");
      const otherKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" })
        .privateKey.export({ format: "pem", type: "pkcs8" })
        .toString();
      assert.equal(conditionsOf(userTls([host], now, otherKey)).reasons.CertificateReady, "False KeyMismatch");
      assert.equal(conditionsOf(userTls(["other.example.net"], now)).reasons.CertificateReady, "False HostnamesNotCovered");
    });

    test("host names: outside the allowed suffixes HostnameNotAllowed, referenced Secret or not; held by another domain HostnameConflict", () => {
      const outside = spec({ relay: { replicas: 1, hostnames: ["relay.other-tenant.example"], tls: { secretName: "relay-tls" } } });
      const restricted = { ...settings, allowedHostnameSuffixes: ["acme.test"] };
      const refused = conditionsOf({ ...userTls(["relay.other-tenant.example"], now), domain: outside }, restricted);
      assert.equal(refused.reasons.CertificateReady, "False HostnameNotAllowed");
      assert.equal(refused.reasons.Ready, "False HostnameNotAllowed");
      assert.match(
        refused.message("CertificateReady"),
        /relay\.other-tenant\.example is not under .*the domain is not made Ready with them/,
      );
      const issuedOutside = spec({ relay: { replicas: 1, hostnames: ["relay.other-tenant.example"] } });
      assert.equal(
        // Nothing is signed for it: the gather does not read the CA (issuesCertificate).
        conditionsOf({ ...withDomain(issuedReads(issuedOutside), issuedOutside), ca: undefined }, restricted).reasons.CertificateReady,
        "False HostnameNotAllowed",
      );
      const conflicts = [{ hostname: "relay.shared.test", holder: { namespace: "other", name: "mail" }, why: "Earlier" as const }];
      assert.equal(conditionsOf({ ...issuedReads(), hostnameConflicts: conflicts }).reasons.CertificateReady, "False HostnameConflict");
    });

    test("the operator's certificate: a Secret of that name someone else owns is SecretConflict; a CA it cannot use is CAInvalid", () => {
      const base = issuedReads();
      const foreign = { ...base.tlsSecret!, metadata: { ...base.tlsSecret!.metadata, ownerReferences: [] } };
      assert.equal(conditionsOf({ ...base, tlsSecret: foreign, ca: undefined }).reasons.CertificateReady, "False SecretConflict");
      const invalid = conditionsOf({ ...base, ca: { invalid: "the operator's CA Secret has no tls.key" } });
      assert.equal(invalid.reasons.CertificateReady, "False CAInvalid");
      assert.equal(invalid.reasons.Stalled, "True CAInvalid");
    });

    test("credentials: a user's Secret SecretNotFound or SecretInvalid; edited by hand SecretModified; revoked re-added VersionRevoked; none Active NoActiveCredential", () => {
      const own = spec({
        inbound: { credentials: [{ version: 1, secretRef: { name: "mine" } }], delivery: { smtp: { host: "ingest", port: 25 } } },
      });
      const mine = (secret: k8s.V1Secret | undefined) => ({
        ...withDomain(issuedReads(own), own),
        credentials: { issuedSecrets: [], secrets: new Map([["mine", secret]]) },
      });
      assert.equal(conditionsOf(mine(undefined)).reasons.CredentialsIssued, "False SecretNotFound");
      const userless = live(
        { apiVersion: "v1", kind: "Secret", metadata: { name: "mine", namespace: "acme" }, stringData: { username: "u" } },
        undefined,
      );
      assert.equal(conditionsOf(mine(userless)).reasons.CredentialsIssued, "False SecretInvalid");

      const record = (version: number, passwordSha256: string) => ({
        version,
        secretName: credentialSecretName(domain(), version),
        username: "example-com-v1-abcdef",
        state: "Active" as const,
        createdAt: "2026-05-01T00:00:00Z",
        passwordSha256,
      });
      const edited = spec({}, { credentials: [record(1, "0".repeat(64))] });
      const modified = conditionsOf(withDomain(issuedReads(edited), edited));
      assert.equal(modified.reasons.CredentialsIssued, "False SecretModified");
      assert.equal(modified.reasons.Stalled, "True SecretModified");

      const readded = spec({}, { revokedVersions: [1] });
      const refused = conditionsOf(withDomain(issuedReads(readded), readded));
      assert.equal(refused.reasons.CredentialsIssued, "False NoActiveCredential", "nothing else is Active: said first");
      assert.equal(refused.reasons.Stalled, "True NoActiveCredential");
      const two = spec(
        { inbound: { credentials: [{ version: 1 }, { version: 2 }], delivery: { smtp: { host: "ingest", port: 25 } } } },
        { revokedVersions: [1] },
      );
      const twoReads = issuedReads(two);
      const v2 = live(credentialSecret(two, 2, { username: "example-com-v2-abcdef", password: "q".repeat(43) }, {}));
      const withV2 = {
        ...twoReads,
        credentials: { issuedSecrets: [], secrets: new Map([...twoReads.credentials.secrets, [v2.metadata!.name!, v2]]) },
      };
      const revoked = conditionsOf(withV2);
      assert.equal(revoked.reasons.CredentialsIssued, "False VersionRevoked");
      assert.equal(revoked.reasons.Ready, "False Progressing", "version 2 serves on: VersionRevoked does not hold Ready back");
    });

    test("Forwarded mode: NotRequired; a switch still rolling out is Reconciling ModeChanging", () => {
      const forwarded = spec({ inbound: { mode: "Forwarded", delivery: { smtp: { host: "ingest", port: 25 } } } });
      const fresh = conditionsOf({
        ...withDomain(issuedReads(forwarded), forwarded),
        credentials: { issuedSecrets: [], secrets: new Map() },
      });
      assert.equal(fresh.reasons.CredentialsIssued, "True NotRequired");
      const switching = spec(
        { inbound: { mode: "Forwarded", delivery: { smtp: { host: "ingest", port: 25 } } } },
        { inboundMode: "Authenticated", relay: { serviceName: "example-com-relay", endpoint: "x:587" } },
      );
      const rolling = conditionsOf({
        ...withDomain(issuedReads(switching), switching),
        credentials: { issuedSecrets: [], secrets: new Map() },
        available: 1,
      });
      assert.equal(rolling.reasons.Reconciling, "True ModeChanging");
    });

    test("the relay's Secrets and objects: the next hop's login SecretNotFound or SecretInvalid; a generated Secret or an object someone else owns SecretConflict or ObjectConflict", () => {
      const login = spec({
        inbound: { credentials: [{ version: 1 }], delivery: { smtp: { host: "ingest", port: 25, authSecretRef: { name: "next-hop" } } } },
      });
      const base = withDomain(issuedReads(login), login);
      assert.equal(conditionsOf(base).reasons.RelayAvailable, "False SecretNotFound");
      const half = live(
        { apiVersion: "v1", kind: "Secret", metadata: { name: "next-hop", namespace: "acme" }, stringData: { username: "u" } },
        undefined,
      );
      assert.equal(
        conditionsOf({ ...base, secrets: new Map([...base.secrets, ["next-hop", half]]) }).reasons.RelayAvailable,
        "False SecretInvalid",
      );
      const plain = issuedReads();
      const submission = plain.secrets.get("example-com-submission")!;
      const taken = { ...submission, metadata: { ...submission.metadata, ownerReferences: [] } };
      assert.equal(
        conditionsOf({ ...plain, secrets: new Map([...plain.secrets, ["example-com-submission", taken]]) }).reasons.RelayAvailable,
        "False SecretConflict",
      );
      const deployment = relayObjectRefs(domain(), settings).find((o) => o.kind === "Deployment")!;
      const theirs = { ...deployment, metadata: { ...deployment.metadata, ownerReferences: [] } };
      assert.equal(
        conditionsOf({ ...plain, existing: new Map([[objectKey(deployment), theirs]]) }).reasons.RelayAvailable,
        "False ObjectConflict",
      );
    });

    test("DKIM: RecordPublished, RecordNotConfirmed, RecordMissing, RecordMismatch, DNSCheckFailed; none holds Ready back", () => {
      const pem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
      const withKey = (recordPublished: boolean) => {
        const d = spec({ dkim: { keys: [{ selector: "s1", algorithm: "Ed25519", recordPublished }] } });
        const r = withDomain(issuedReads(d), d);
        return { ...r, secrets: new Map([...r.secrets, ["example-com-dkim-s1", live(dkimKeySecret(d, "s1", pem))]]) };
      };
      const resolver = { ...settings, dnsResolver: "127.0.0.1" };
      const dkim = (r: DomainReads, s: OperatorSettings = settings) => conditionsOf(r, s).reasons.DKIMRecordPublished;
      assert.equal(dkim(withKey(true)), "True RecordPublished");
      assert.equal(dkim(withKey(false)), "False RecordNotConfirmed");
      const name = "s1._domainkey.example.com";
      assert.equal(dkim({ ...withKey(false), dns: new Map([[name, { found: [] }]]) }, resolver), "False RecordMissing");
      assert.equal(
        dkim({ ...withKey(false), dns: new Map([[name, { found: ["v=DKIM1; k=ed25519; p=AAAA"] }]]) }, resolver),
        "False RecordMismatch",
      );
      assert.equal(dkim({ ...withKey(false), dns: new Map([[name, { error: "ESERVFAIL" }]]) }, resolver), "False DNSCheckFailed");
      assert.equal(conditionsOf(withKey(false)).reasons.Ready, "False Progressing", "Ready waits for the relay only");
    });

    test("message limits: AsRequested, or LimitCapped above the installation's maximum", () => {
      const limited = (maxRecipients: number) => {
        const d = spec({ relay: { replicas: 1, limits: { maxRecipients } } });
        return withDomain(issuedReads(d), d);
      };
      const caps = { ...settings, relayLimitCaps: { maxMessageBytes: 10 * 2 ** 20, maxRecipients: 50 } };
      assert.equal(conditionsOf(limited(10), caps).reasons.LimitsApplied, "True AsRequested");
      assert.equal(conditionsOf(limited(500), caps).reasons.LimitsApplied, "True LimitCapped");
    });

    test("a domain the rules do not serve: Ready and Stalled with the verdict's reason (SystemDomain, DomainConflict, LimitExceeded)", () => {
      for (const reason of ["SystemDomain", "DomainConflict", "LimitExceeded"] as const) {
        const status = note(planNotServed(domain(), { served: false, reason, message: "m" }, now));
        assert.deepEqual(reasons(status), { Ready: `False ${reason}`, Stalled: `True ${reason}` });
      }
    });

    test("every reason crds/conditions.ts gives an SmtpDomain condition was set by a case above", () => {
      // Set outside the planner: by the controller (a failed reconcile, an invalid object) and the finalizer.
      const elsewhere = new Set(["ReconcileFailed", "InvalidObject", "Disconnecting"]);
      const ownTypes = Object.keys(smtpDomainConditions).filter((t) => !["Ready", "Reconciling", "Stalled"].includes(t));
      const expected = Object.entries(allReasons)
        .filter(([, r]) => r.conditions.some((c) => ownTypes.includes(c)))
        .map(([name]) => name)
        .concat("Ready", "Progressing", "ModeChanging", "SystemDomain", "DomainConflict", "LimitExceeded")
        .filter((r) => !elsewhere.has(r));
      assert.deepEqual([...new Set(expected)].filter((r) => !seen.has(r)).sort(), [], "reasons no case set");
      assert.deepEqual([...seen].filter((r) => !(r in allReasons)).sort(), [], "reasons set that crds/conditions.ts does not list");
    });
  });
});
