// The receipts the operator's verification reads: a later, weaker arrival of
// the same token (anyone may send to the forwarded listener) never replaces a
// stronger one.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { RelayReports } from "../../relay/ops/reports.js";

const token = "vrf_abcdefghijklmnopqrstuvwxyz012345";
const digest = createHash("sha256").update(token).digest("hex");
const at = new Date();
const unverified = {
  token,
  domain: "customer.example",
  at,
  path: "forwarded",
  forwarded: { dkimAligned: false, arcTrusted: false },
} as const;
const verified = { ...unverified, forwarded: { dkimAligned: true, arcTrusted: false } } as const;
const authenticated = { token, domain: "customer.example", at, path: "authenticated", credentialVersion: 2 } as const;

test("a receipt says its path; a weaker arrival of the same token does not replace a stronger one, a stronger one does", () => {
  const reports = new RelayReports();
  reports.arrived(unverified);
  assert.deepEqual(reports.receipt(digest), {
    domain: "customer.example",
    arrivedAt: at.toISOString(),
    path: "forwarded",
    forwarded: { dkimAligned: false, arcTrusted: false },
  });
  reports.arrived(verified);
  const dkimAligned = () => {
    const answer = reports.receipt(digest);
    return answer?.path === "forwarded" && answer.forwarded.dkimAligned;
  };
  assert.equal(dkimAligned(), true);
  reports.arrived(unverified);
  assert.equal(dkimAligned(), true, "kept the verified arrival");
  reports.arrived(authenticated);
  assert.deepEqual(reports.receipt(digest), {
    domain: "customer.example",
    credentialVersion: 2,
    arrivedAt: at.toISOString(),
    path: "authenticated",
  });
  reports.arrived(verified);
  assert.equal(reports.receipt(digest)?.path, "authenticated", "kept the authenticated arrival");
});

test("an arrival of the token for another domain never replaces the receipt, however strong", () => {
  const reports = new RelayReports();
  reports.arrived(unverified);
  reports.arrived({ ...verified, domain: "other.example" });
  reports.arrived({ ...authenticated, domain: "other.example" });
  assert.deepEqual(reports.receipt(digest), {
    domain: "customer.example",
    arrivedAt: at.toISOString(),
    path: "forwarded",
    forwarded: { dkimAligned: false, arcTrusted: false },
  });
  reports.arrived(verified);
  assert.equal(reports.receipt(digest)?.path === "forwarded" && reports.receipt(digest)?.domain, "customer.example");
});
