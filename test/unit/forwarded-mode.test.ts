// Forwarded mode (spec.inbound.mode: Forwarded, issue 25), its pure parts: which
// credential versions the operator works from (a switch revokes them all, for
// good), what the relay config says, the status of a switch, what a forwarded
// receipt means for verification, and the installation flags.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain, SmtpDomainStatus } from "../../crds/schema.js";
import { basisOf, judge, proofStands, type Attempt, type Receipt } from "../../operator/address/verification.js";
import { declaredCredentials, planCredentials, type IssuedCredential } from "../../operator/domain/credentials.js";
import { modeChangeOf } from "../../operator/domain/plan.js";
import { endpointPort, relayConfig } from "../../operator/domain/render.js";
import { parseDnsServers, parseFlags, parseSealers } from "../../operator/flags.js";
import type { SupportAddress } from "../../crds/schema.js";
import { stringify } from "yaml";
import { parseConfig } from "../../relay/contract/config-parser.js";

type Inbound = SmtpDomain["spec"]["inbound"];
const domain = (inbound: Partial<Inbound>, status?: SmtpDomainStatus): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "ns", uid: "u" },
  spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "ingest.svc" } }, ...inbound } },
  ...(status ? { status } : {}),
});
const recorded = (version: number, secretName = `example-com-inbound-v${version}`) => ({
  version,
  secretName,
  username: `u${version}`,
  state: "Active" as const,
  passwordSha256: "a".repeat(64),
});
const issued = (version: number): [number, IssuedCredential] => [
  version,
  {
    version,
    secretName: `example-com-inbound-v${version}`,
    username: `u${version}`,
    passwordSha256: "a".repeat(64),
    createdAt: "2026-11-01T00:00:00Z",
    userSupplied: false,
  },
];
const settings = { relayImage: "img", relayHostSuffix: "relay.example.net" };
const outbound = { submission: { username: "u", password: "p" }, controlToken: "t", senders: [], dkim: [] };

describe("credential versions by mode", () => {
  test("Forwarded: every version on record is worked from as Revoked, a user's own Secret by its name", () => {
    const d = domain({ mode: "Forwarded" }, { credentials: [recorded(1), recorded(2, "my-own")] });
    assert.deepEqual(declaredCredentials(d), [
      { version: 1, state: "Revoked" },
      { version: 2, state: "Revoked", secretRef: { name: "my-own" } },
    ]);
    const plan = planCredentials(d, new Map([issued(1), issued(2)]), new Date());
    assert.deepEqual(
      plan.map((p) => `${p.version}:${p.state}`),
      ["1:Revoked", "2:Revoked"],
    );
  });

  test("Forwarded: a version with a Secret of the domain's but no status record (status never written) is revoked too", () => {
    const d = domain({ mode: "Forwarded" }, { credentials: [recorded(2)] });
    assert.deepEqual(declaredCredentials(d, [1, 2, 1]), [
      { version: 1, state: "Revoked" },
      { version: 2, state: "Revoked" },
    ]);
    assert.deepEqual(
      planCredentials(d, new Map([issued(1), issued(2)]), new Date(), new Set(), [1]).map((p) => `${p.version}:${p.state}`),
      ["1:Revoked", "2:Revoked"],
    );
    assert.deepEqual(declaredCredentials(domain({}), [1]), [{ version: 1 }], "Authenticated: the spec (or its default) decides, as before");
  });

  test("Forwarded from the start: nothing to work from, nothing issued", () => {
    assert.deepEqual(declaredCredentials(domain({ mode: "Forwarded" })), []);
    assert.deepEqual(planCredentials(domain({ mode: "Forwarded" }), new Map(), new Date()), []);
  });

  test("Authenticated without a list: version 1 for a new domain, the next never-used number after a stretch in Forwarded mode", () => {
    assert.deepEqual(declaredCredentials(domain({})), [{ version: 1 }]);
    assert.deepEqual(declaredCredentials(domain({ mode: "Authenticated" }, { revokedVersions: [1, 2] })), [{ version: 3 }]);
    // A declared list is the list, as before modes existed: a revoked version in it is refused, not skipped.
    assert.deepEqual(declaredCredentials(domain({ credentials: [{ version: 1 }] }, { revokedVersions: [1] })), [{ version: 1 }]);
    assert.deepEqual(
      planCredentials(domain({ credentials: [{ version: 1 }] }), new Map([issued(1)]), new Date(), new Set([1])).map(
        (p) => p.reactivationRefused,
      ),
      [true],
    );
  });
});

describe("relay config by mode", () => {
  test("Forwarded: the forwarded listener only, mode Forwarded, no credentials, the installation's forwarded checks", () => {
    const d = domain({ mode: "Forwarded" }, { credentials: [recorded(1)] });
    const plan = planCredentials(d, new Map([issued(1)]), new Date());
    const config = relayConfig(
      d,
      plan,
      new Map([issued(1)]),
      ["support@example.com"],
      { ...settings, forwarded: { trustedArcSealers: ["microsoft.com"], dnsServers: ["127.0.0.1:5353"] } },
      undefined,
      outbound,
    );
    assert.deepEqual(config.listeners.forwarded, { port: 8025 });
    assert.equal(config.listeners.starttls, undefined);
    assert.equal(config.listeners.implicitTls, undefined);
    assert.deepEqual(config.forwarded, { trustedArcSealers: ["microsoft.com"], dnsServers: ["127.0.0.1:5353"] });
    const entry = config.domains[0]!;
    assert.equal(entry.mode, "Forwarded");
    assert.deepEqual(
      entry.credentials,
      [],
      "a revoked version is not even listed: the relay's loader refuses a Forwarded entry with credentials",
    );
    assert.deepEqual(entry.addresses, ["support@example.com"]);
    assert.ok(entry.outbound, "the outbound half is unchanged");
    assert.ok(config.listeners.submission && config.listeners.control);
  });

  test("the relay's own loader takes the rendered Forwarded config (the contract), and refuses it with a credential", () => {
    const d = domain({ mode: "Forwarded" }, { credentials: [recorded(1)] });
    const config = relayConfig(
      d,
      planCredentials(d, new Map([issued(1)]), new Date()),
      new Map([issued(1)]),
      ["support@example.com"],
      { ...settings, forwarded: { trustedArcSealers: ["microsoft.com"], dnsServers: ["127.0.0.1:5353"] } },
      undefined,
      outbound,
    );
    const loaded = parseConfig(stringify(config));
    assert.equal(loaded.domains[0]!.mode, "Forwarded");
    assert.deepEqual(loaded.listeners.forwarded, { port: 8025 });
    const withCredential = {
      ...config,
      domains: [
        { ...config.domains[0]!, credentials: [{ version: 1, username: "u1", passwordSha256: "a".repeat(64), state: "Active" as const }] },
      ],
    };
    assert.throws(() => parseConfig(stringify(withCredential)), /example\.com/);
  });

  test("Forwarded without the flags: the default sealers, the pod's resolver", () => {
    const config = relayConfig(domain({ mode: "Forwarded" }), [], new Map(), [], settings, undefined, outbound);
    assert.deepEqual(config.forwarded, { trustedArcSealers: ["microsoft.com", "google.com"] });
  });

  test("Authenticated: the config is what it was before modes existed (no mode, no forwarded listener or section)", () => {
    const d = domain({ credentials: [{ version: 1 }] });
    const config = relayConfig(
      d,
      planCredentials(d, new Map([issued(1)]), new Date()),
      new Map([issued(1)]),
      [],
      settings,
      undefined,
      outbound,
    );
    assert.equal("forwarded" in config, false);
    assert.equal("forwarded" in config.listeners, false);
    assert.equal("mode" in config.domains[0]!, false);
    assert.deepEqual(
      config.domains[0]!.credentials.map((c) => c.version),
      [1],
    );
    assert.equal(endpointPort(d), 587);
    assert.equal(endpointPort(domain({ mode: "Forwarded" })), 25);
  });
});

describe("a switch of mode", () => {
  const relay = { serviceName: "example-com-relay", endpoint: "x:587" };
  test("a new domain has nothing to switch from", () => {
    assert.equal(modeChangeOf(domain({ mode: "Forwarded" }), false), undefined);
  });
  test("says what is applied already and what it waits for, until the relay has rolled out", () => {
    const d = domain({ mode: "Forwarded" }, { inboundMode: "Authenticated", relay });
    const change = modeChangeOf(d, false);
    assert.equal(change?.from, "Authenticated");
    assert.match(change?.message ?? "", /from Authenticated to Forwarded: every credential version is revoked for good/);
    assert.match(change?.message ?? "", /port 25 only/);
    assert.equal(modeChangeOf(d, true), undefined, "rolled out: the switch is done");
    assert.match(
      modeChangeOf(domain({ mode: "Authenticated" }, { inboundMode: "Forwarded", relay }), false)!.message,
      /credentials are issued/,
    );
  });
  test("a status from before modes existed reads as Authenticated", () => {
    assert.equal(modeChangeOf(domain({ mode: "Forwarded" }, { relay }), false)?.from, "Authenticated");
    assert.equal(modeChangeOf(domain({}, { relay }), false), undefined);
  });
});

describe("verification in Forwarded mode", () => {
  const now = new Date("2026-11-25T12:00:00Z");
  const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
  const pending = (direction: Attempt["direction"], startedAt = ago(60_000)): Attempt => ({
    direction,
    startedAt,
    result: "Pending",
    reason: "VerificationPending",
    basis: "b",
    tokenSha256: "0".repeat(64),
  });
  const forwarded = domain({ mode: "Forwarded" }, { activeVersions: "" });
  const authenticated = domain({ credentials: [{ version: 1 }] }, { activeVersions: "1" });
  const receipt = (checks: Receipt["forwarded"], over: Partial<Receipt> = {}): Receipt => ({
    domain: "example.com",
    arrivedAt: now.toISOString(),
    path: "forwarded",
    ...(checks ? { forwarded: checks } : {}),
    ...over,
  });

  test("the outbound email verifies when it comes back forwarded with the relay's DKIM signature intact, or under a trusted ARC seal", () => {
    const dkim = judge(pending("Outbound"), forwarded, receipt({ dkimAligned: true, arcTrusted: false }), undefined, 600_000, now);
    assert.deepEqual([dkim.result, dkim.reason], ["Succeeded", "Verified"]);
    assert.match(dkim.message!, /DKIM signature of example\.com intact/);
    assert.equal(dkim.credentialVersion, undefined);
    const arc = judge(
      pending("Outbound"),
      forwarded,
      receipt({ dkimAligned: false, arcTrusted: true, arcSealer: "microsoft.com" }),
      undefined,
      600_000,
      now,
    );
    assert.deepEqual([arc.result, arc.reason], ["Succeeded", "Verified"]);
    assert.match(arc.message!, /trusted ARC sealer microsoft\.com/);
  });

  test("forwarded without either: ArrivedUnverified, naming an untrusted sealer", () => {
    const judged = judge(
      pending("Outbound"),
      forwarded,
      receipt({ dkimAligned: false, arcTrusted: false, arcSealer: "forwarder.example" }),
      undefined,
      600_000,
      now,
    );
    assert.deepEqual([judged.result, judged.reason], ["Failed", "ArrivedUnverified"]);
    assert.match(judged.message!, /forwarder\.example, which is not a trusted sealer/);
    assert.equal(
      judge(pending("Outbound"), forwarded, receipt(undefined), undefined, 600_000, now).reason,
      "ArrivedUnverified",
      "no checks reported: nothing vouched",
    );
  });

  test("the inbound email (from the helpdesk's sender, unsigned for the domain) verifies by arriving forwarded; the message says whether a sealer vouched", () => {
    const plain = judge(pending("Inbound"), forwarded, receipt({ dkimAligned: false, arcTrusted: false }), undefined, 600_000, now);
    assert.deepEqual([plain.result, plain.reason], ["Succeeded", "Verified"]);
    assert.match(plain.message!, /no trusted ARC seal/);
    assert.match(
      judge(
        pending("Inbound"),
        forwarded,
        receipt({ dkimAligned: false, arcTrusted: true, arcSealer: "google.com" }),
        undefined,
        600_000,
        now,
      ).message!,
      /google\.com/,
    );
  });

  test("nothing by the deadline: ForwardingNotSetUp, saying where to forward", () => {
    assert.equal(judge(pending("Inbound"), forwarded, undefined, undefined, 600_000, now).result, "Pending");
    const late = judge(pending("Outbound", ago(600_000)), forwarded, undefined, new Date(now), 600_000, now);
    assert.deepEqual([late.result, late.reason], ["Failed", "ForwardingNotSetUp"]);
    assert.match(late.message!, /port 25/);
    assert.match(late.message!, /greylist/);
  });

  test("arrivals on the wrong path or for another domain fail with their own reason", () => {
    assert.equal(
      judge(
        pending("Outbound"),
        forwarded,
        receipt({ dkimAligned: true, arcTrusted: true }, { domain: "other.example" }),
        undefined,
        600_000,
        now,
      ).reason,
      "ArrivedWrongDomain",
    );
    // An authenticated arrival cannot be right: every version was revoked by the switch.
    assert.equal(
      judge(pending("Outbound"), forwarded, { domain: "example.com", credentialVersion: 1, arrivedAt: "" }, undefined, 600_000, now).reason,
      "ArrivedRevokedCredential",
    );
  });

  test("a forwarded receipt for an Authenticated domain is ArrivedUnauthenticated, however intact", () => {
    const judged = judge(
      pending("Outbound"),
      authenticated,
      receipt({ dkimAligned: true, arcTrusted: true, arcSealer: "google.com" }),
      undefined,
      600_000,
      now,
    );
    assert.deepEqual([judged.result, judged.reason], ["Failed", "ArrivedUnauthenticated"]);
    assert.match(judged.message!, /spec\.inbound\.mode: Forwarded/);
    // An old relay's receipt (no path) is authenticated, as before.
    assert.equal(
      judge(pending("Outbound"), authenticated, { domain: "example.com", credentialVersion: 1, arrivedAt: "" }, undefined, 600_000, now)
        .reason,
      "Verified",
    );
  });

  test("a proof from the other mode does not stand: switching verifies again", () => {
    const address = { metadata: { generation: 1 }, spec: {} } as unknown as SupportAddress;
    const before = basisOf(address, "7", domain({ credentials: [{ version: 1 }] }, { activeVersions: "1" }));
    const after = basisOf(address, "7", domain({ mode: "Forwarded" }, { activeVersions: "" }));
    assert.equal(before, "generation=1;credentials=7;inbound=1", "an Authenticated basis reads as before modes existed");
    const proof: Attempt = { ...pending("Outbound"), basis: before, result: "Succeeded", reason: "Verified", credentialVersion: 1 };
    assert.equal(proofStands(proof, after), false);
    const forwardedProof: Attempt = { ...pending("Outbound"), basis: after, result: "Succeeded", reason: "Verified" };
    assert.equal(
      proofStands(forwardedProof, basisOf(address, "7", domain({ credentials: [{ version: 2 }] }, { activeVersions: "2" }))),
      false,
    );
    assert.equal(proofStands(forwardedProof, after), true);
  });
});

describe("installation flags for forwarded mode", () => {
  test("defaults: the two cloud services' sealers, the pod's resolver", () => {
    const flags = parseFlags([]);
    assert.deepEqual(flags.forwarded, { trustedArcSealers: ["microsoft.com", "google.com"], dnsServers: [] });
    assert.deepEqual(parseFlags(["--trusted-arc-sealers="]).forwarded.trustedArcSealers, [], "empty: no ARC chain counts");
  });

  test("sealers: domains, lowercased, duplicates dropped; anything else is refused naming the flag", () => {
    assert.deepEqual(parseSealers(" Microsoft.com,google.com.,microsoft.com "), ["microsoft.com", "google.com"]);
    assert.throws(
      () => parseSealers("microsoft.com,*.google.com"),
      /--trusted-arc-sealers must be comma-separated domains.*\*\.google\.com/,
    );
    assert.throws(() => parseSealers("localhost"), /--trusted-arc-sealers/);
    assert.throws(() => parseSealers(Array.from({ length: 33 }, (_, i) => `s${i}.example`).join(",")), /at most 32/);
  });

  test("DNS servers: IP addresses with an optional port, at most 4", () => {
    assert.deepEqual(parseDnsServers("10.96.0.10, 127.0.0.1:5353,[2001:db8::53]:53,2001:db8::1"), [
      "10.96.0.10",
      "127.0.0.1:5353",
      "[2001:db8::53]:53",
      "2001:db8::1",
    ]);
    for (const bad of ["dns.example", "10.0.0.1:0", "10.0.0.1:70000", "300.1.1.1", "[10.0.0.1", "10.0.0.1/24"]) {
      assert.throws(() => parseDnsServers(bad), /--forwarded-dns-servers must be comma-separated IP addresses/, bad);
    }
    assert.throws(() => parseDnsServers("1.1.1.1,1.0.0.1,8.8.8.8,8.8.4.4,9.9.9.9"), /at most 4/);
  });
});
