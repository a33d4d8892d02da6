// DKIM signing checked against an independent verifier (mailauth) fed the
// published record through its resolver hook: RSA, Ed25519, both at once, and
// the canonicalization edge cases that break hand-written signers.
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { describe, test } from "node:test";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { RelaxedBodyHash, headerFields, relaxHeader, signatures, signedFieldNames, type SigningKey } from "../../relay/outbound/dkim.js";
import { dnsRecord } from "../../relay/contract/dkim-record.js";

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
const ed = generateKeyPairSync("ed25519").privateKey;
const keys: SigningKey[] = [
  { domain: "example.com", selector: "rsa1", algorithm: "rsa-sha256", key: rsa },
  { domain: "example.com", selector: "ed1", algorithm: "ed25519-sha256", key: ed },
];

function resolverFor(records: Record<string, KeyObject>) {
  return (name: string, type: string): Promise<string[][]> => {
    const key = records[name];
    if (type !== "TXT" || !key) return Promise.reject(Object.assign(new Error(`no ${type} for ${name}`), { code: "ENOTFOUND" }));
    return Promise.resolve([[dnsRecord(key)]]);
  };
}
const resolver = resolverFor({ "rsa1._domainkey.example.com": rsa, "ed1._domainkey.example.com": ed });

function sign(message: string, signingKeys = keys, chunkSize = 7): string {
  const split = message.indexOf("\r\n\r\n");
  const header = message.slice(0, split + 2);
  const hash = new RelaxedBodyHash();
  const body = Buffer.from(message.slice(split + 4), "latin1");
  // Odd chunk sizes put chunk boundaries inside CRLFs and whitespace runs.
  for (let i = 0; i < body.length; i += chunkSize) hash.update(body.subarray(i, i + chunkSize));
  return signatures(signingKeys, headerFields(header), hash.digest()) + message;
}

async function verify(message: string) {
  const result = await dkimVerify(Buffer.from(message, "latin1"), { resolver });
  return result.results.map((r) => ({
    selector: r.signingDomain + "/" + (r as { selector?: string }).selector,
    status: r.status.result,
    comment: r.status.comment,
  }));
}

const message = [
  "From: Support <support@example.com>",
  "To: customer@elsewhere.test",
  "Subject: Re: your ticket  #42 \t(updated)",
  "Date: Wed, 25 Nov 2026 16:00:00 +0000",
  "Message-ID: <abc.42@helpdesk.test>",
  "References: <a@x.test>",
  "\t<b@x.test>",
  "Auto-Submitted: auto-replied",
  "X-Auto-Response-Suppress: All",
  "X-Mailer: Helpdesk",
  "MIME-Version: 1.0",
  "Content-Type: text/plain; charset=utf-8",
  "",
  "Hello   there,\t ",
  "",
  "a line with trailing space   ",
  " leading space kept",
  "",
  "",
  "",
].join("\r\n");

describe("DKIM signing", () => {
  test("RSA and Ed25519 signatures both verify with the published records, whatever the chunking", async () => {
    for (const chunkSize of [1, 7, 64, 1_000_000]) {
      const results = await verify(sign(message, keys, chunkSize));
      assert.deepEqual(
        results.map((r) => `${r.selector} ${r.status}`),
        ["example.com/rsa1 pass", "example.com/ed1 pass"],
        `chunks of ${chunkSize}: ${JSON.stringify(results)}`,
      );
    }
  });

  test("a changed body or a changed signed header fails verification", async () => {
    const signed = sign(message);
    const body = await verify(signed.replace("Hello", "Jello"));
    assert.ok(body.length === 2 && body.every((r) => r.status !== "pass"), JSON.stringify(body));
    const header = await verify(signed.replace("Subject: Re:", "Subject: Fw:"));
    assert.ok(header.length === 2 && header.every((r) => r.status === "fail"), JSON.stringify(header));
  });

  test("an added From (over-signing) fails verification", async () => {
    const signed = sign(message);
    const results = await verify(signed.replace("To: customer", "From: attacker@evil.test\r\nTo: customer"));
    assert.ok(results.length === 2 && results.every((r) => r.status === "fail"), JSON.stringify(results));
  });

  test("empty bodies, bodies without a final CRLF and whitespace-only lines", async () => {
    for (const [body, chunkSize] of [
      "",
      "\r\n",
      "no final crlf",
      "x\r\n \t \r\n\r\n",
      "\t\r\nline",
      "a\r\n\r\n\r\nb  c\r\nd\r\n\r\n",
      "line one\r\nline two\r\n",
      "x\r\ny",
      "x\r\ny \r\n",
    ].flatMap((b) => [1, 3, 1000].map((n) => [b, n] as const))) {
      const text = `From: a@example.com\r\nSubject: t\r\n\r\n${body}`;
      const results = await verify(sign(text, keys, chunkSize));
      assert.deepEqual(
        results.map((r) => r.status),
        ["pass", "pass"],
        `body ${JSON.stringify(body)} in chunks of ${chunkSize}: ${JSON.stringify(results)}`,
      );
    }
  });

  test("relaxed header canonicalization", () => {
    assert.equal(relaxHeader("SubJect :  a \t b  \r\n\tc  "), "subject:a b c\r\n");
  });

  test("the header list covers the helpdesk's headers and skips trace fields", () => {
    const names = signedFieldNames(
      headerFields("Received: x\r\nFrom: a\r\nX-Mailer: m\r\nAuto-Submitted: auto-replied\r\nReturn-Path: <a>\r\n"),
    );
    assert.ok(names.includes("x-mailer") && names.includes("auto-submitted"));
    assert.ok(!names.includes("received") && !names.includes("return-path"));
    // Over-signed: From is listed once more than it occurs.
    assert.equal(names.filter((n) => n === "from").length, 2);
  });

  test("every line of the signature field stays within 78 characters", () => {
    const fields = signatures(keys, headerFields(message.slice(0, message.indexOf("\r\n\r\n") + 2)), "x");
    for (const line of fields.split("\r\n")) assert.ok(line.length <= 78, line);
  });
});
