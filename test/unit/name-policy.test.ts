// What the installation's CA may vouch for: the host names a domain may claim
// (allowed suffixes, label boundaries, no wildcards, the default name), the
// flag that sets them, and the CA's critical name constraints — checked by
// OpenSSL against a leaf for a foreign name signed by the same CA with the
// builder directly (the constraint itself refuses it, not our policy), and by
// a real Node TLS handshake.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import tls from "node:tls";
import { caNameConstraints } from "../../operator/domain/certificate.js";
import { rotateAnnotation, rotatedForAnnotation, rotationReason } from "../../operator/tls/ca-rotation.js";
import { parseFlags } from "../../operator/flags.js";
import { defaultCertificatePolicy, issueServerCertificate, newCertificateAuthority } from "../../operator/tls/certificates.js";
import {
  hostnameNotAllowedMessage,
  isUnder,
  parseHostnameSuffixes,
  permittedDnsNames,
  refusedHostnames,
} from "../../operator/tls/name-policy.js";
import { issueCertificate, readNameConstraints } from "../../operator/tls/x509.js";
import { tempDir } from "../support/mail.js";

const now = new Date();
const settings = {
  relayImage: "x",
  relayHostSuffix: "relay.smtp-connector.local",
  allowedHostnameSuffixes: ["relay.example.com", "mail.example.org"],
};
const constraints = caNameConstraints(settings);
const ca = newCertificateAuthority("smtp-connector-system", now, constraints);

/** A leaf for `names` signed by the CA's key with the builder itself: no policy of ours in the way. */
function leafFor(names: string[]): string {
  const key = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
  const caSubject = { organization: "smtp-connector", commonName: "smtp-connector relay CA smtp-connector-system" };
  return issueCertificate(
    {
      subject: { commonName: names[0]! },
      publicKey: key,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 86_400_000),
      subjectAltNames: names,
    },
    { subject: caSubject, privateKey: createPrivateKey(ca.keyPem) },
  );
}

/** `openssl verify` of a leaf against the CA alone: [ok, output]. */
function opensslVerify(leafPem: string, hostname?: string): [boolean, string] {
  const dir = tempDir("nc");
  writeFileSync(join(dir, "ca.crt"), ca.certPem);
  writeFileSync(join(dir, "leaf.crt"), leafPem);
  try {
    const out = execFileSync(
      "openssl",
      [
        "verify",
        "-CAfile",
        join(dir, "ca.crt"),
        "-purpose",
        "sslserver",
        ...(hostname ? ["-verify_hostname", hostname] : []),
        join(dir, "leaf.crt"),
      ],
      { encoding: "utf8", stdio: "pipe" },
    );
    return [true, out];
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return [false, `${e.stdout ?? ""}${e.stderr ?? ""}`];
  }
}

describe("host names a domain may claim", () => {
  const policy = {
    allowedSuffixes: ["relay.example.com", "mail.example.org"],
    defaultHostname: "example-com.acme.relay.smtp-connector.local",
  };

  test("a name equal to an allowed suffix or under it, on a label boundary", () => {
    assert.equal(isUnder("relay.example.com", "relay.example.com"), true);
    assert.equal(isUnder("acme.relay.example.com", "relay.example.com"), true);
    assert.equal(isUnder("a.b.relay.example.com", "relay.example.com"), true);
    assert.equal(isUnder("ACME.Relay.Example.com.", "relay.example.com"), true);
    assert.equal(isUnder("evilrelay.example.com", "relay.example.com"), false, "not on a label boundary");
    assert.equal(isUnder("example.com", "relay.example.com"), false, "a parent is not under its child");
    assert.equal(isUnder("relay.example.com.evil.example", "relay.example.com"), false);
  });

  test("refused: foreign names, wildcards, other domains' default names; allowed: the domain's own default name", () => {
    assert.deepEqual(refusedHostnames(["acme.relay.example.com", "smtp.mail.example.org"], policy), []);
    assert.deepEqual(refusedHostnames(["example-com.acme.relay.smtp-connector.local"], policy), [], "the default relay host name, always");
    assert.deepEqual(
      refusedHostnames(["example-com.acme.relay.smtp-connector.local"], { ...policy, allowedSuffixes: [] }),
      [],
      "even with no suffix configured",
    );
    assert.deepEqual(
      refusedHostnames(
        [
          "acme.relay.example.com",
          "mail.google.com",
          "*.relay.example.com",
          "evilrelay.example.com",
          "other.tenant-b.relay.smtp-connector.local",
        ],
        policy,
      ),
      ["mail.google.com", "*.relay.example.com", "evilrelay.example.com", "other.tenant-b.relay.smtp-connector.local"],
    );
    assert.deepEqual(
      refusedHostnames(["relay.helpdesk.example.net"], { ...policy, allowedSuffixes: [] }),
      ["relay.helpdesk.example.net"],
      "no suffix configured: only the default name",
    );
    const message = hostnameNotAllowedMessage(["mail.google.com"], policy, true);
    assert.match(message, /mail\.google\.com is not under the allowed suffixes relay\.example\.com, mail\.example\.org/);
    assert.match(message, /--allowed-hostname-suffixes/);
    assert.match(message, /no certificate is issued/);
    assert.match(message, /default relay host name example-com\.acme\.relay\.smtp-connector\.local/);
  });

  test("--allowed-hostname-suffixes: lowercased, trimmed, de-duplicated; wildcards, single labels and bad names refused by name", () => {
    assert.deepEqual(parseFlags([]).allowedHostnameSuffixes, []);
    assert.deepEqual(
      parseFlags(["--allowed-hostname-suffixes", " Relay.Example.com, mail.example.org.,relay.example.com"]).allowedHostnameSuffixes,
      ["relay.example.com", "mail.example.org"],
    );
    assert.throws(
      () => parseHostnameSuffixes("*.relay.example.com"),
      /--allowed-hostname-suffixes .*no "\*\." .*"\*\.relay\.example\.com"/,
    );
    assert.throws(() => parseHostnameSuffixes(".relay.example.com"), /--allowed-hostname-suffixes/);
    assert.throws(() => parseHostnameSuffixes("com"), /--allowed-hostname-suffixes must be .* at least two labels.*"com"/);
    assert.throws(() => parseHostnameSuffixes("relay_example.com"), /"relay_example\.com"/);
    assert.throws(
      () => parseFlags(["--allowed-hostname-suffixes", "example.com,bad..name"]),
      /--allowed-hostname-suffixes .*"bad\.\.name"/,
    );
    assert.throws(() => parseFlags(["--relay-host-suffix", "relay example"]), /--relay-host-suffix must be a DNS name/);
  });
});

describe("the CA's name constraints", () => {
  test("permitted: the allowed suffixes, the default relay suffix and the Services' cluster names; no IP address", () => {
    assert.deepEqual(constraints.permittedDnsNames, [
      "mail.example.org",
      "relay.example.com",
      "relay.smtp-connector.local",
      "svc",
      "svc.cluster.local",
    ]);
    assert.equal(constraints.excludeAllIpAddresses, true);
    assert.deepEqual(
      permittedDnsNames(["a.example.com", "example.com", "example.com"], "relay.example.com"),
      ["example.com", "svc", "svc.cluster.local"],
      "a suffix under another adds nothing",
    );
    // Read back from the certificate itself, as the operator does to see whether its CA still fits.
    assert.deepEqual(readNameConstraints(new X509Certificate(ca.certPem).raw), constraints);
    assert.equal(
      readNameConstraints(new X509Certificate(newCertificateAuthority("old", now).certPem).raw),
      undefined,
      "a CA without constraints",
    );
  });

  test("OpenSSL sees them critical, with every permitted subtree and both IP families excluded", () => {
    const dir = tempDir("nc");
    writeFileSync(join(dir, "ca.crt"), ca.certPem);
    const text = execFileSync("openssl", ["x509", "-in", join(dir, "ca.crt"), "-noout", "-text"], { encoding: "utf8" });
    assert.match(text, /X509v3 Name Constraints: critical/);
    for (const name of constraints.permittedDnsNames) assert.match(text, new RegExp(`DNS:${name.replace(/\./g, "\\.")}\\n`));
    assert.match(text, /Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:(0:){7}0\/(0:){7}0\n/);
  });

  test("openssl verify accepts the operator's relay certificate and a leaf under a permitted name; refuses a foreign name, a near miss and an IP", () => {
    const names = [
      "acme.relay.example.com",
      "example-com.acme.relay.smtp-connector.local",
      "example-com-relay.acme.svc",
      "example-com-relay.acme.svc.cluster.local",
    ];
    const issued = issueServerCertificate(ca, names, now, defaultCertificatePolicy);
    for (const name of names) assert.deepEqual(opensslVerify(issued.certPem, name)[0], true, `the relay certificate verifies for ${name}`);
    assert.equal(opensslVerify(leafFor(["smtp.mail.example.org"]))[0], true);

    for (const foreign of [["mail.google.com"], ["evilrelay.example.com"], ["acme.relay.example.com", "mail.google.com"], ["10.0.0.7"]]) {
      const [ok, out] = opensslVerify(leafFor(foreign));
      assert.equal(ok, false, `a leaf for ${foreign.join(", ")} must not verify`);
      assert.match(out, /(permitted|excluded) subtree violation/, out);
    }
  });

  test(
    "a Node TLS client that trusts only the CA completes a handshake with the relay certificate, and refuses a foreign leaf",
    { timeout: 20_000 },
    async () => {
      const issued = issueServerCertificate(ca, ["acme.relay.example.com"], new Date(), defaultCertificatePolicy);
      const foreignKey = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
      const foreign = issueCertificate(
        {
          subject: { commonName: "mail.google.com" },
          publicKey: foreignKey,
          notBefore: new Date(now.getTime() - 60_000),
          notAfter: new Date(now.getTime() + 86_400_000),
          subjectAltNames: ["mail.google.com"],
        },
        {
          subject: { organization: "smtp-connector", commonName: "smtp-connector relay CA smtp-connector-system" },
          privateKey: createPrivateKey(ca.keyPem),
        },
      );
      for (const [cert, key, servername, expected] of [
        [issued.certPem, issued.keyPem, "acme.relay.example.com", true],
        [foreign, foreignKey.export({ format: "pem", type: "pkcs8" }).toString(), "mail.google.com", false],
      ] as const) {
        const server = tls.createServer({ cert, key }, (socket) => socket.end("hello\n"));
        server.listen(0, "127.0.0.1");
        await once(server, "listening");
        try {
          const socket = tls.connect({ host: "127.0.0.1", port: (server.address() as AddressInfo).port, ca: ca.certPem, servername });
          // Either outcome ends the wait: an unconstrained CA would let the foreign leaf connect.
          // (events.once rejects with the socket's error, which is the outcome looked for.)
          const outcome = await once(socket, "secureConnect").then(
            () => undefined,
            (error: unknown) => error as Error,
          );
          socket.destroy();
          if (expected) {
            assert.equal(outcome, undefined);
            assert.equal(socket.authorized, true);
          } else {
            // Node has no code of its own for it (UNSPECIFIED); the message is OpenSSL's.
            assert.match(outcome?.message ?? "the handshake succeeded", /permitted subtree violation/);
          }
        } finally {
          server.close();
        }
      }
    },
  );
});

describe("CA rotation rules", () => {
  const day = 86_400_000;
  test("a CA is replaced when its constraints are not the installation's, when it nears expiry, or once per rotate annotation value", () => {
    assert.equal(rotationReason(ca.certPem, constraints, now, {}), undefined);
    assert.match(
      rotationReason(newCertificateAuthority("old", now).certPem, constraints, now, {}) ?? "",
      /name constraints \(none\) are not the installation's \(mail\.example\.org, relay\.example\.com/,
    );
    const widened = caNameConstraints({ ...settings, allowedHostnameSuffixes: [...settings.allowedHostnameSuffixes, "relay.example.net"] });
    assert.match(rotationReason(ca.certPem, widened, now, {}) ?? "", /not the installation's/);
    assert.match(rotationReason(ca.certPem, constraints, new Date(now.getTime() + 9.1 * 365 * day), {}) ?? "", /it expires at/);
    assert.equal(rotationReason(ca.certPem, constraints, new Date(now.getTime() + 8.9 * 365 * day), {}), undefined);
    assert.match(rotationReason(ca.certPem, constraints, now, { [rotateAnnotation]: "2026-12-01" }) ?? "", /asked for/);
    assert.equal(
      rotationReason(ca.certPem, constraints, now, { [rotateAnnotation]: "2026-12-01", [rotatedForAnnotation]: "2026-12-01" }),
      undefined,
      "handled once",
    );
  });
});
