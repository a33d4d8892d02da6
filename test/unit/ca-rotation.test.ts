// The CA rotation's phase planner, with an injected clock: a trigger publishes
// the next CA beside the signing one, which goes on signing for the notice;
// then the next CA signs and the old one stays trusted until none of its
// certificates can be valid. Each state survives the CA Secret (a restart
// resumes), and OpenSSL says which leaves the bundle and the old ca.crt trust.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { caNameConstraints } from "../../operator/domain/certificate.js";
import { parseFlags } from "../../operator/flags.js";
import {
  advanceCa,
  caSecretContents,
  nextCaChange,
  readCaState,
  retiredTrustedUntil,
  rotatedAtAnnotation,
  signerFor,
  splitPem,
  trustBundle,
  type CaState,
  type RotationSettings,
} from "../../operator/tls/ca-rotation.js";
import {
  defaultCertificatePolicy,
  issueServerCertificate,
  newCertificateAuthority,
  type KeyPair,
} from "../../operator/tls/certificates.js";
import { tempDir } from "../support/mail.js";

const day = 86_400_000;
const t0 = new Date("2026-12-01T12:00:00Z");
const at = (ms: number) => new Date(t0.getTime() + ms);
const settings = { relayImage: "x", relayHostSuffix: "relay.test", allowedHostnameSuffixes: ["relay.example.com"] };
const constraints = caNameConstraints(settings);
const rotation: RotationSettings = { constraints, noticeMs: 30 * day, certificateLifetimeMs: 90 * day };
const current = newCertificateAuthority("smtp-connector-system", t0, constraints);
const fresh: CaState = { signing: current, retired: [] };
const relayNames = ["acme.relay.example.com", "acme-relay.team-a.svc"];

/** A CA factory that counts its calls, so a test can say "no new CA was made". */
function factory(forConstraints = constraints): { make: () => KeyPair; made: KeyPair[] } {
  const made: KeyPair[] = [];
  return { make: () => (made.push(newCertificateAuthority("smtp-connector-system", t0, forConstraints)), made.at(-1)!), made };
}

/** `openssl verify` of a leaf against a CA file: did it verify. */
function verifies(caFile: string, leafPem: string, hostname: string): boolean {
  const dir = tempDir("rotation");
  writeFileSync(join(dir, "ca.crt"), caFile);
  writeFileSync(join(dir, "leaf.crt"), leafPem);
  try {
    execFileSync("openssl", ["verify", "-CAfile", join(dir, "ca.crt"), "-verify_hostname", hostname, join(dir, "leaf.crt")], {
      stdio: "pipe",
    });
    return true;
  } catch {
    return false;
  }
}

describe("CA rotation phases", () => {
  test("phase 1: the rotate annotation publishes the next CA beside the signing one, which goes on signing until the notice ends", () => {
    const ca = factory();
    const { state, steps } = advanceCa(fresh, t0, rotation, "2026-12-01", ca.make);
    assert.equal(ca.made.length, 1);
    assert.deepEqual(steps, [
      { step: "published", reason: "rotation was asked for (annotation smtpconnector.dev/rotate=2026-12-01)", signsFrom: at(30 * day) },
    ]);
    assert.equal(state.signing, current, "the current CA still signs");
    assert.equal(state.next?.pair, ca.made[0]);
    assert.equal(state.rotatedFor, "2026-12-01");
    assert.deepEqual(splitPem(trustBundle(state)), [current.certPem, ca.made[0]!.certPem], "ca.crt: the signing CA, then the next");
    assert.equal(signerFor(state, relayNames), current);
    assert.deepEqual(nextCaChange(state, rotation.certificateLifetimeMs), at(30 * day), "looked at again when phase 2 is due");

    // Until the notice ends nothing moves, and the same annotation value starts nothing new.
    const later = advanceCa(state, at(30 * day - 1), rotation, "2026-12-01", ca.make);
    assert.deepEqual(later, { state, steps: [] });
    assert.equal(ca.made.length, 1);
  });

  test("phase 2: at the end of the notice the next CA signs; the old one is trusted until no certificate it issued can be valid", () => {
    const ca = factory();
    const { state: announced } = advanceCa(fresh, t0, rotation, "once", ca.make);
    const next = ca.made[0]!;
    const { state, steps } = advanceCa(announced, at(30 * day), rotation, "once", ca.make);
    assert.deepEqual(steps, [{ step: "promoted" }]);
    assert.equal(state.signing, next);
    assert.equal(state.next, undefined);
    assert.deepEqual(state.retired, [current.certPem]);
    assert.deepEqual(state.rotatedAt, at(30 * day));
    assert.deepEqual(splitPem(trustBundle(state)), [next.certPem, current.certPem]);
    assert.equal(signerFor(state, relayNames), next, "leaves are reissued by the new CA");

    // The last leaf of the old CA was issued at the promotion and lives 90 days; a margin of an hour after that.
    const until = retiredTrustedUntil(at(30 * day), rotation.certificateLifetimeMs);
    assert.deepEqual(until, at(120 * day + 3_600_000));
    assert.deepEqual(nextCaChange(state, rotation.certificateLifetimeMs), until);
    assert.deepEqual(advanceCa(state, new Date(until.getTime() - 1), rotation, "once", ca.make).steps, []);
    const done = advanceCa(state, until, rotation, "once", ca.make);
    assert.deepEqual(done.steps, [{ step: "retired-dropped", count: 1 }]);
    assert.deepEqual(done.state, { signing: next, retired: [], rotatedFor: "once" });
    assert.equal(nextCaChange(done.state, rotation.certificateLifetimeMs), undefined);
    assert.equal(ca.made.length, 1, "one rotation, one new CA");
  });

  test("every state survives the CA Secret: read back and advanced at the same moment, nothing changes (a restart mid-phase resumes)", () => {
    const ca = factory();
    const phase1 = advanceCa(fresh, t0, rotation, "r1", ca.make).state;
    const phase2 = advanceCa(phase1, at(30 * day), rotation, "r1", ca.make).state;
    for (const [state, moment] of [
      [fresh, t0],
      [phase1, at(day)],
      [phase2, at(31 * day)],
    ] as const) {
      const { data, annotations } = caSecretContents(state);
      const read = readCaState(data, annotations);
      assert.deepEqual(caSecretContents(read), { data, annotations });
      const again = advanceCa(read, moment, rotation, state.rotatedFor, ca.make);
      assert.deepEqual(again.steps, []);
      assert.deepEqual(caSecretContents(again.state), { data, annotations });
    }
    assert.equal(ca.made.length, 1);
    assert.deepEqual(Object.keys(caSecretContents(phase1).data).sort(), ["ca.crt", "next.crt", "next.key", "tls.crt", "tls.key"]);
    assert.deepEqual(caSecretContents(phase1).annotations, {
      "smtpconnector.dev/rotated-for": "r1",
      "smtpconnector.dev/next-ca-signs-from": "2026-12-31T12:00:00Z",
      "smtpconnector.dev/next-ca-reason": "rotation was asked for (annotation smtpconnector.dev/rotate=r1)",
    });

    // A Secret a session-8 operator rotated (new CA signing, the old one after it in ca.crt) reads as phase 2.
    const older = newCertificateAuthority("smtp-connector-system", t0, constraints);
    const legacy = readCaState(
      { "tls.crt": current.certPem, "tls.key": current.keyPem, "ca.crt": `${current.certPem}${older.certPem}` },
      { [rotatedAtAnnotation]: "2026-12-01T12:00:00Z" },
    );
    assert.deepEqual(legacy, { signing: current, retired: [older.certPem], rotatedAt: t0 });
  });

  test("every trigger is two-phase: constraints the installation no longer has and a CA near its expiry too", () => {
    // An unconstrained CA from before constraints existed: an upgrade announces the constrained one, and the old one signs meanwhile.
    const unconstrained = newCertificateAuthority("smtp-connector-system", t0);
    const upgrade = advanceCa({ signing: unconstrained, retired: [] }, t0, rotation, undefined, factory().make);
    assert.match(
      upgrade.steps[0]?.step === "published" ? upgrade.steps[0].reason : "",
      /name constraints \(none\) are not the installation's/,
    );
    assert.equal(upgrade.state.signing, unconstrained);
    assert.equal(signerFor(upgrade.state, relayNames), unconstrained, "it permits every name, so it signs until phase 2");

    const nearExpiry = advanceCa(fresh, new Date(t0.getTime() + 9.2 * 365 * day), rotation, undefined, factory().make);
    assert.equal(nearExpiry.steps[0]?.step, "published");
    assert.equal(nearExpiry.state.signing, current);
  });

  test("a suffix added: a name only the next CA permits is signed by the next CA at once; the others by the current CA until phase 2", () => {
    const widened = caNameConstraints({ ...settings, allowedHostnameSuffixes: ["relay.example.com", "relay.example.net"] });
    const ca = factory(widened);
    const { state } = advanceCa(fresh, t0, { ...rotation, constraints: widened }, undefined, ca.make);
    const next = ca.made[0]!;
    assert.equal(signerFor(state, relayNames), current);
    const newNames = ["acme.relay.example.net", "acme-relay.team-a.svc"];
    assert.equal(signerFor(state, newNames), next);
    // OpenSSL agrees: the current CA's constraints refuse the new name; the bundle trusts the next CA's leaf.
    const byCurrent = issueServerCertificate(current, newNames, t0, defaultCertificatePolicy).certPem;
    const byNext = issueServerCertificate(next, newNames, t0, defaultCertificatePolicy).certPem;
    assert.equal(verifies(trustBundle(state), byCurrent, "acme.relay.example.net"), false);
    assert.equal(verifies(trustBundle(state), byNext, "acme.relay.example.net"), true);
  });

  test("the bundle in phase 1 trusts leaves of both CAs, and a server holding only the old ca.crt trusts no leaf of the new CA", () => {
    const ca = factory();
    const { state } = advanceCa(fresh, t0, rotation, "x", ca.make);
    const leafOf = (signer: KeyPair) => issueServerCertificate(signer, relayNames, t0, defaultCertificatePolicy).certPem;
    const fromCurrent = leafOf(current);
    const fromNext = leafOf(ca.made[0]!);
    assert.ok(new X509Certificate(fromCurrent).checkIssued(new X509Certificate(current.certPem)));
    assert.equal(verifies(trustBundle(state), fromCurrent, relayNames[0]!), true);
    assert.equal(verifies(trustBundle(state), fromNext, relayNames[0]!), true);
    assert.equal(verifies(current.certPem, fromCurrent, relayNames[0]!), true, "phase 1 serves what the old ca.crt trusts");
    assert.equal(verifies(current.certPem, fromNext, relayNames[0]!), false, "why the new CA must not sign before the notice ends");
  });

  test("a notice of 0: published and signing in one step (no overlap before, the old CA still trusted after)", () => {
    const ca = factory();
    const { state, steps } = advanceCa(fresh, t0, { ...rotation, noticeMs: 0 }, "now", ca.make);
    assert.deepEqual(
      steps.map((s) => s.step),
      ["published", "promoted"],
    );
    assert.equal(state.signing, ca.made[0]);
    assert.deepEqual(splitPem(trustBundle(state)), [ca.made[0]!.certPem, current.certPem]);
  });

  test("in phase 1: another rotate value is answered by the rotation under way; changed constraints replace the next CA with a new notice", () => {
    const ca = factory();
    const { state } = advanceCa(fresh, t0, rotation, "first", ca.make);
    const asked = advanceCa(state, at(day), rotation, "second", ca.make);
    assert.deepEqual(asked.steps, []);
    assert.equal(asked.state.next, state.next, "no second next CA");
    assert.equal(asked.state.rotatedFor, "second");

    const widened = caNameConstraints({ ...settings, allowedHostnameSuffixes: ["relay.example.com", "relay.example.net"] });
    const changed = advanceCa(asked.state, at(2 * day), { ...rotation, constraints: widened }, "second", () =>
      newCertificateAuthority("smtp-connector-system", t0, widened),
    );
    assert.equal(changed.steps[0]?.step, "next-replaced");
    assert.deepEqual(changed.state.next?.signsFrom, at(32 * day), "a new notice: customers were told of the other CA");
    assert.equal(changed.state.signing, current);
    // The replaced next CA may have signed names only it permitted: it stays trusted like any retired CA.
    assert.deepEqual(changed.state.retired, [state.next!.pair.certPem]);
    assert.deepEqual(changed.state.rotatedAt, at(2 * day));
  });

  test("--ca-rotation-notice: 720h by default, 0s allowed, and with --certificate-duration shorter than the CA's year of renewal", () => {
    assert.equal(parseFlags([]).certificates.caRotationNoticeMs, 30 * day);
    assert.equal(parseFlags(["--ca-rotation-notice=0s"]).certificates.caRotationNoticeMs, 0);
    assert.throws(() => parseFlags(["--ca-rotation-notice=30d"]), /--ca-rotation-notice must be a duration such as 2160h/);
    assert.throws(
      () => parseFlags(["--ca-rotation-notice=6600h", "--certificate-duration=2160h"]),
      /--ca-rotation-notice \(6600h\) and --certificate-duration \(2160h\) together must be shorter than 8760h/,
    );
  });
});
