// The verification decisions, on their own: when an attempt starts, and what
// a receipt (or the deadline) means.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import {
  judge,
  previouslyVerifiedAt,
  shouldStart,
  verifiedCondition,
  verify,
  type Attempt,
  type VerificationIO,
} from "../../operator/address/verification.js";
import type { SupportAddress } from "../../crds/schema.js";

const now = new Date("2026-11-25T12:00:00Z");
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
const hour = 3_600_000;
const attempt = (over: Partial<Attempt>): Attempt => ({
  direction: "Inbound",
  startedAt: ago(60_000),
  result: "Pending",
  reason: "VerificationPending",
  basis: "b1",
  tokenSha256: "0".repeat(64),
  ...over,
});
const domain = {
  metadata: { name: "example-com" },
  spec: { domain: "example.com" },
  status: { activeVersions: "2,3" },
} as unknown as SmtpDomain;

describe("verification decisions", () => {
  test("an attempt starts when there is none, on request, or when what it verified changed", () => {
    assert.ok(shouldStart(undefined, "b1", false, 24 * hour, 5 * 60_000, now));
    assert.ok(shouldStart(attempt({}), "b1", true, 24 * hour, 5 * 60_000, now));
    assert.ok(shouldStart(attempt({}), "b2", false, 24 * hour, 5 * 60_000, now));
    assert.ok(!shouldStart(attempt({}), "b1", false, 24 * hour, 5 * 60_000, now), "a pending attempt is waited for");
  });

  test("success is repeated after the interval, failure after the shorter retry", () => {
    const succeeded = attempt({ result: "Succeeded", completedAt: ago(23 * hour) });
    assert.ok(!shouldStart(succeeded, "b1", false, 24 * hour, 5 * 60_000, now));
    assert.ok(shouldStart({ ...succeeded, completedAt: ago(24 * hour) }, "b1", false, 24 * hour, 5 * 60_000, now));
    const failed = attempt({ result: "Failed", reason: "InvalidCredentials", completedAt: ago(4 * 60_000) });
    assert.ok(!shouldStart(failed, "b1", false, 24 * hour, 5 * 60_000, now));
    assert.ok(shouldStart({ ...failed, completedAt: ago(5 * 60_000) }, "b1", false, 24 * hour, 5 * 60_000, now));
  });

  test("a receipt from the domain with an active version verifies", () => {
    const judged = judge(
      attempt({}),
      domain,
      { domain: "example.com", credentialVersion: 3, arrivedAt: now.toISOString() },
      undefined,
      600_000,
      now,
    );
    assert.equal(judged.result, "Succeeded");
    assert.equal(judged.reason, "Verified");
  });

  test("arrivals on the wrong path fail with their own reason", () => {
    assert.equal(
      judge(attempt({}), domain, { domain: "other.example", credentialVersion: 3, arrivedAt: "" }, undefined, 600_000, now).reason,
      "ArrivedWrongDomain",
    );
    assert.equal(
      judge(attempt({}), domain, { domain: "example.com", credentialVersion: 1, arrivedAt: "" }, undefined, 600_000, now).reason,
      "ArrivedRevokedCredential",
    );
  });

  test("no receipt: pending until the deadline, then timed out — or refused with a revoked credential", () => {
    assert.equal(judge(attempt({}), domain, undefined, undefined, 600_000, now).result, "Pending");
    const late = attempt({ startedAt: ago(600_000) });
    assert.equal(judge(late, domain, undefined, undefined, 600_000, now).reason, "VerificationTimedOut");
    assert.equal(judge(late, domain, undefined, new Date(now.getTime() - 1000), 600_000, now).reason, "ArrivedRevokedCredential");
    assert.equal(
      judge(late, domain, undefined, new Date(now.getTime() - 700_000), 600_000, now).reason,
      "VerificationTimedOut",
      "a refusal before the attempt started says nothing about it",
    );
  });

  test("conditions follow the latest attempt", () => {
    assert.equal(verifiedCondition("InboundVerified", undefined).reason, "VerificationPending");
    assert.equal(verifiedCondition("InboundVerified", attempt({ result: "Succeeded", reason: "Verified" })).status, "True");
    const failed = verifiedCondition("OutboundVerified", attempt({ result: "Failed", reason: "InvalidCredentials", message: "535" }));
    assert.deepEqual([failed.status, failed.reason], ["False", "InvalidCredentials"]);
  });

  test("a repeat of an unchanged basis keeps the direction verified until it fails", () => {
    const succeeded = attempt({ result: "Succeeded", reason: "Verified", completedAt: ago(24 * hour) });
    assert.equal(previouslyVerifiedAt(succeeded, "b1"), succeeded.completedAt);
    assert.equal(previouslyVerifiedAt(succeeded, "b2"), undefined, "a changed basis (new credentials, new spec) must be proven again");
    assert.equal(
      previouslyVerifiedAt(attempt({ result: "Failed", reason: "InvalidCredentials", completedAt: ago(1000) }), "b1"),
      undefined,
    );
    assert.equal(
      previouslyVerifiedAt(attempt({ previouslyVerifiedAt: ago(hour) }), "b1"),
      ago(hour),
      "a repeat requested while one is pending carries it on",
    );

    const repeat = attempt({ previouslyVerifiedAt: ago(24 * hour) });
    assert.deepEqual(
      [verifiedCondition("InboundVerified", repeat).status, verifiedCondition("InboundVerified", repeat).reason],
      ["True", "Verified"],
    );
    const timedOut = judge({ ...repeat, startedAt: ago(600_000) }, domain, undefined, undefined, 600_000, now);
    assert.equal(timedOut.previouslyVerifiedAt, undefined, "a completed attempt stands on its own result");
    assert.equal(verifiedCondition("InboundVerified", timedOut).status, "False");
  });

  test("a rotation that adds a version keeps the proof; revoking the version it came back with does not", () => {
    const proof = attempt({
      result: "Succeeded",
      reason: "Verified",
      completedAt: ago(hour),
      basis: "generation=1;credentials=7;inbound=1",
      credentialVersion: 1,
    });
    assert.equal(previouslyVerifiedAt(proof, "generation=1;credentials=7;inbound=1,2"), ago(hour), "version 2 added beside 1");
    assert.equal(previouslyVerifiedAt(proof, "generation=1;credentials=7;inbound=2"), undefined, "version 1 revoked: prove it again");
    assert.equal(previouslyVerifiedAt(proof, "generation=2;credentials=7;inbound=1,2"), undefined, "an edited spec proves nothing old");
    assert.equal(previouslyVerifiedAt(proof, "generation=1;credentials=8;inbound=1,2"), undefined, "new outbound credentials neither");
    // Carried through a repeat that is itself still pending.
    const repeat = attempt({ basis: "generation=1;credentials=7;inbound=1,2", previouslyVerifiedAt: ago(hour), credentialVersion: 1 });
    assert.equal(previouslyVerifiedAt(repeat, "generation=1;credentials=7;inbound=1,2,3"), ago(hour));
    assert.equal(previouslyVerifiedAt(repeat, "generation=1;credentials=7;inbound=2,3"), undefined);
    // Recorded before the version was: every version then Active must still be.
    const legacy = attempt({
      result: "Succeeded",
      reason: "Verified",
      completedAt: ago(hour),
      basis: "generation=1;credentials=7;inbound=1",
    });
    assert.equal(previouslyVerifiedAt(legacy, "generation=1;credentials=7;inbound=1,2"), ago(hour));
    assert.equal(
      previouslyVerifiedAt({ ...legacy, basis: "generation=1;credentials=7;inbound=1,2" }, "generation=1;credentials=7;inbound=2"),
      undefined,
    );
    // A success records the version it came back with.
    const judged = judge(
      attempt({ basis: "generation=1;credentials=7;inbound=1,2" }),
      domain,
      { domain: "example.com", credentialVersion: 3, arrivedAt: now.toISOString() },
      undefined,
      600_000,
      now,
    );
    assert.equal(judged.credentialVersion, 3);
  });

  test("verify() starts the periodic repeat with the previous success carried", async () => {
    const sent: string[] = [];
    const io: VerificationIO = {
      sendInbound: (address) => (sent.push(`inbound ${address}`), Promise.resolve(undefined)),
      sendOutbound: (_domain, address) => (sent.push(`outbound ${address}`), Promise.resolve(undefined)),
      receipt: () => Promise.resolve(undefined),
      lastRevokedRefusal: () => Promise.resolve(undefined),
      credentialUse: () => Promise.resolve(new Map()),
    };
    const address = {
      metadata: { name: "support", namespace: "n", generation: 1 },
      spec: {
        address: "support@example.com",
        domainRef: { name: "example-com" },
        outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "support-smtp" } },
      },
      status: {},
    } as unknown as SupportAddress;
    const basis = "generation=1;credentials=7;inbound=2,3";
    address.status = {
      verifications: (["Inbound", "Outbound"] as const).map((direction) =>
        attempt({ direction, basis, result: "Succeeded", reason: "Verified", completedAt: ago(25 * hour) }),
      ),
    };
    const outcome = await verify({ address, domain, credentialsResourceVersion: "7", credentialSha256: undefined, io, now });
    assert.deepEqual(sent.sort(), ["inbound support@example.com", "outbound support@example.com"]);
    for (const a of outcome.attempts) {
      assert.equal(a.result, "Pending");
      assert.equal(a.previouslyVerifiedAt, ago(25 * hour));
      assert.equal(verifiedCondition("InboundVerified", a).status, "True");
    }
  });
});
