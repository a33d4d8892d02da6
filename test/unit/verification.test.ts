// The verification decisions, on their own: when an attempt starts, and what
// a receipt (or the deadline) means.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { judge, shouldStart, verifiedCondition, type Attempt } from "../../operator/address/verification.js";

const now = new Date("2026-11-25T12:00:00Z");
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
const hour = 3_600_000;
const attempt = (over: Partial<Attempt>): Attempt => ({ direction: "Inbound", startedAt: ago(60_000), result: "Pending", reason: "VerificationPending", basis: "b1", tokenSha256: "0".repeat(64), ...over });
const domain = { metadata: { name: "example-com" }, spec: { domain: "example.com" }, status: { activeVersions: "2,3" } } as unknown as SmtpDomain;

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
    const judged = judge(attempt({}), domain, { domain: "example.com", credentialVersion: 3, arrivedAt: now.toISOString() }, undefined, 600_000, now);
    assert.equal(judged.result, "Succeeded");
    assert.equal(judged.reason, "Verified");
  });

  test("arrivals on the wrong path fail with their own reason", () => {
    assert.equal(judge(attempt({}), domain, { domain: "other.example", credentialVersion: 3, arrivedAt: "" }, undefined, 600_000, now).reason, "ArrivedWrongDomain");
    assert.equal(judge(attempt({}), domain, { domain: "example.com", credentialVersion: 1, arrivedAt: "" }, undefined, 600_000, now).reason, "ArrivedRevokedCredential");
  });

  test("no receipt: pending until the deadline, then timed out — or refused with a revoked credential", () => {
    assert.equal(judge(attempt({}), domain, undefined, undefined, 600_000, now).result, "Pending");
    const late = attempt({ startedAt: ago(600_000) });
    assert.equal(judge(late, domain, undefined, undefined, 600_000, now).reason, "VerificationTimedOut");
    assert.equal(judge(late, domain, undefined, new Date(now.getTime() - 1000), 600_000, now).reason, "ArrivedRevokedCredential");
    assert.equal(judge(late, domain, undefined, new Date(now.getTime() - 700_000), 600_000, now).reason, "VerificationTimedOut", "a refusal before the attempt started says nothing about it");
  });

  test("conditions follow the latest attempt", () => {
    assert.equal(verifiedCondition("InboundVerified", undefined).reason, "VerificationPending");
    assert.equal(verifiedCondition("InboundVerified", attempt({ result: "Succeeded", reason: "Verified" })).status, "True");
    const failed = verifiedCondition("OutboundVerified", attempt({ result: "Failed", reason: "InvalidCredentials", message: "535" }));
    assert.deepEqual([failed.status, failed.reason], ["False", "InvalidCredentials"]);
  });
});
