// The operator's certificates: the DER builder checked by OpenSSL and by a
// real TLS handshake, and the rules that renew and judge a certificate.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import tls from "node:tls";
import {
  covers,
  defaultCertificatePolicy,
  inspectCertificate,
  issueServerCertificate,
  judgeCertificate,
  newCertificateAuthority,
  nextVerdictChange,
  renewalReason,
  renewalTime,
  type CertificateFacts,
} from "../../operator/tls/certificates.js";
import { tempDir } from "../support/mail.js";

const day = 86_400_000;
const now = new Date("2026-11-25T12:00:00Z");
const ca = newCertificateAuthority("smtp-connector-system", now);
const names = ["relay.helpdesk.example.net", "example-com-relay.acme.svc", "example-com-relay.acme.svc.cluster.local"];

test("an issued certificate verifies with OpenSSL as a TLS server certificate for its names, and the CA is a CA", () => {
  const leaf = issueServerCertificate(ca, names, now, defaultCertificatePolicy);
  const dir = tempDir("x509");
  writeFileSync(join(dir, "ca.crt"), ca.certPem);
  writeFileSync(join(dir, "leaf.crt"), leaf.certPem);
  // -attime: the check runs at the issuing instant, not today.
  const at = String(Math.floor(now.getTime() / 1000) + 60);
  for (const name of names) {
    const out = execFileSync(
      "openssl",
      ["verify", "-attime", at, "-CAfile", join(dir, "ca.crt"), "-purpose", "sslserver", "-verify_hostname", name, join(dir, "leaf.crt")],
      { encoding: "utf8" },
    );
    assert.match(out, /leaf\.crt: OK/);
  }
  assert.throws(() =>
    execFileSync(
      "openssl",
      ["verify", "-attime", at, "-CAfile", join(dir, "ca.crt"), "-verify_hostname", "other.example", join(dir, "leaf.crt")],
      { stdio: "pipe" },
    ),
  );
  const text = execFileSync("openssl", ["x509", "-in", join(dir, "ca.crt"), "-noout", "-text"], { encoding: "utf8" });
  assert.match(text, /CA:TRUE, pathlen:0/);
  assert.match(text, /Certificate Sign, CRL Sign/);
  const facts = inspectCertificate(leaf.certPem, leaf.keyPem, ca.certPem);
  assert.deepEqual(facts.dnsNames, names);
  assert.equal(facts.keyMatches, true);
  assert.equal(facts.issuedBy, true);
  assert.equal(facts.notAfter.getTime() - now.getTime(), Math.floor(defaultCertificatePolicy.durationMs / 1000) * 1000);
  assert.equal(new X509Certificate(leaf.certPem).ca, false);
});

test("a TLS client that trusts only the CA completes a handshake with the issued certificate", async () => {
  const leaf = issueServerCertificate(ca, ["relay.test", "127.0.0.1"], new Date(), defaultCertificatePolicy);
  const server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => socket.end("hello\n"));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  try {
    for (const servername of ["relay.test", undefined]) {
      const socket = tls.connect({ host: "127.0.0.1", port, ca: ca.certPem, ...(servername ? { servername } : {}) });
      await once(socket, "secureConnect");
      assert.equal(socket.authorized, true);
      socket.destroy();
    }
    const wrong = tls.connect({ host: "127.0.0.1", port, ca: ca.certPem, servername: "other.test" });
    const [error] = (await once(wrong, "error")) as [Error & { code?: string }];
    assert.equal(error.code, "ERR_TLS_CERT_ALTNAME_INVALID");
  } finally {
    server.close();
  }
});

test("long name lists, IPv4 names and expiry after 2049 encode correctly", () => {
  const many = Array.from({ length: 40 }, (_, i) => `relay-${i}.${"x".repeat(50)}.example.net`);
  const leaf = issueServerCertificate(ca, [...many, "10.0.0.7"], now, { durationMs: 30 * 365 * day, renewBeforeMs: day });
  const cert = new X509Certificate(leaf.certPem);
  assert.equal(cert.checkHost(many[39]!), many[39]);
  assert.equal(cert.checkIP("10.0.0.7"), "10.0.0.7");
  assert.equal(new Date(cert.validTo).getUTCFullYear(), 2056);
  assert.equal(cert.subject, "CN=smtp-connector relay", "no DNS name short enough for a common name (IPs are never one)");
  assert.ok(cert.verify(new X509Certificate(ca.certPem).publicKey));
});

test("wildcards cover exactly one leftmost label", () => {
  assert.equal(covers(["*.acme.relay.test"], "example-com.acme.relay.test"), true);
  assert.equal(covers(["*.acme.relay.test"], "a.b.acme.relay.test"), false);
  assert.equal(covers(["*.acme.relay.test"], "acme.relay.test"), false);
  assert.equal(covers(["Relay.Example.NET"], "relay.example.net"), true);
  assert.equal(covers([], "relay.example.net"), false);
});

test("an operator-issued certificate is renewed ahead of expiry, for new names, another CA, or a mismatched key", () => {
  const policy = { durationMs: 90 * day, renewBeforeMs: 30 * day };
  const leaf = issueServerCertificate(ca, names, now, policy);
  const facts = inspectCertificate(leaf.certPem, leaf.keyPem, ca.certPem);
  assert.equal(renewalReason(facts, names, new Date(now.getTime() + 59 * day), policy), undefined);
  assert.match(renewalReason(facts, names, new Date(now.getTime() + 61 * day), policy) ?? "", /expires at/);
  assert.equal(renewalTime(facts, policy).getTime(), facts.notAfter.getTime() - 30 * day);
  assert.match(
    renewalReason(facts, [...names, "relay2.helpdesk.example.net"], now, policy) ?? "",
    /does not cover relay2\.helpdesk\.example\.net/,
  );
  const otherCa = newCertificateAuthority("other", now);
  assert.match(renewalReason(inspectCertificate(leaf.certPem, leaf.keyPem, otherCa.certPem), names, now, policy) ?? "", /another CA/);
  const strangerKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" })
    .privateKey.export({ format: "pem", type: "pkcs8" })
    .toString();
  assert.match(renewalReason(inspectCertificate(leaf.certPem, strangerKey, ca.certPem), names, now, policy) ?? "", /key does not match/);
  // A renew-before longer than the life itself falls back to two thirds of it.
  const short = { durationMs: 30_000, renewBeforeMs: 3_600_000 };
  const brief = inspectCertificate(issueServerCertificate(ca, names, now, short).certPem, leaf.keyPem);
  assert.equal(renewalTime(brief, short).getTime(), brief.notAfter.getTime() - (brief.notAfter.getTime() - brief.notBefore.getTime()) / 3);
});

test("a certificate's verdict: valid, expiring soon, expired, not yet valid, names not covered, key mismatch", () => {
  const facts: CertificateFacts = {
    dnsNames: ["relay.helpdesk.example.net"],
    notBefore: new Date(now.getTime() - day),
    notAfter: new Date(now.getTime() + 89 * day),
    issuer: "CN=R3",
    keyMatches: true,
    serialNumber: "01",
  };
  const judge = (f: Partial<CertificateFacts>, at = now, hosts = ["relay.helpdesk.example.net"], operatorIssued = false) =>
    judgeCertificate({ ...facts, ...f }, "relay-tls", hosts, at, operatorIssued);
  assert.deepEqual([judge({}).status, judge({}).reason], ["True", "Valid"]);
  assert.equal(judge({}, now, ["relay.helpdesk.example.net"], true).reason, "Issued");
  const soon = judge({}, new Date(facts.notAfter.getTime() - 13 * day));
  assert.deepEqual([soon.status, soon.reason], ["True", "ExpiringSoon"]);
  assert.match(soon.message, /renew it before then/);
  const expired = judge({}, new Date(facts.notAfter.getTime() + 1));
  assert.deepEqual([expired.status, expired.reason], ["False", "Expired"]);
  assert.equal(judge({ notBefore: new Date(now.getTime() + 60_000) }).reason, "NotYetValid");
  const uncovered = judge({}, now, ["relay.helpdesk.example.net", "mx-relay.example.net"]);
  assert.deepEqual([uncovered.status, uncovered.reason], ["False", "HostnamesNotCovered"]);
  assert.match(uncovered.message, /does not cover mx-relay\.example\.net/);
  assert.equal(judge({ keyMatches: false }).reason, "KeyMismatch");
  // The next change of verdict: at the warning threshold, then at expiry.
  assert.equal(nextVerdictChange(facts, now)?.getTime(), facts.notAfter.getTime() - 14 * day);
  assert.equal(nextVerdictChange(facts, new Date(facts.notAfter.getTime() - day))?.getTime(), facts.notAfter.getTime());
  assert.equal(nextVerdictChange(facts, new Date(facts.notAfter.getTime() + 1)), undefined);
});

test("malformed certificates and keys are named in the error", () => {
  assert.throws(
    () => inspectCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ca.keyPem),
    /tls\.crt is not a PEM certificate/,
  );
  assert.throws(() => inspectCertificate(ca.certPem, "not a key"), /tls\.key is not a PEM private key/);
});
