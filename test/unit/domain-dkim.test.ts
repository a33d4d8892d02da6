// A domain's DKIM decisions (operator/domain/dkim.ts) from plain values: the
// records for status, which key signs, and DKIMRecordPublished's every reason.
import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { planDkim, type DkimKeyRead, type Lookup } from "../../operator/domain/dkim.js";
import type { OperatorSettings } from "../../operator/domain/render.js";
import { dnsRecord } from "../../relay/contract/dkim-record.js";

const pem = (kind: "rsa" | "ed25519") =>
  (kind === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519")).privateKey
    .export({ format: "pem", type: "pkcs8" })
    .toString();
const rsa = pem("rsa");
const rsaOther = pem("rsa");
const ed = pem("ed25519");
const recordOf = (key: string) => dnsRecord(createPrivateKey(key));

type Key = DkimKeyRead["key"];
const domain = (keys: Key[]): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "acme", uid: "uid-1" },
  spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "ingest", port: 25 } } }, dkim: { keys } },
});
const plain: OperatorSettings = { relayImage: "img", relayHostSuffix: "relay.example.net" };
const withDns: OperatorSettings = { ...plain, dnsResolver: "127.0.0.1" };

function plan(keys: DkimKeyRead[], settings = plain, answers: Record<string, Lookup> = {}) {
  return planDkim(domain(keys.map((k) => k.key)), settings, keys, (name) => answers[name]);
}

describe("DKIM decisions", () => {
  test("a key declared published signs; its record is in status", () => {
    const { state, problems } = plan([{ key: { selector: "s1", recordPublished: true }, pem: rsa }]);
    assert.deepEqual(problems, []);
    assert.deepEqual(
      state.signing.map((k) => `${k.selector} ${k.algorithm}`),
      ["s1 rsa-sha256"],
    );
    assert.deepEqual(state.records, [
      { selector: "s1", name: "s1._domainkey.example.com", value: recordOf(rsa), published: true, signing: true },
    ]);
    assert.equal(state.condition?.reason, "RecordPublished");
  });

  test("without a resolver an undeclared record is not confirmed: RecordNotConfirmed, the key pending, not used", () => {
    const { state } = plan([{ key: { selector: "s1" }, pem: rsa }]);
    assert.deepEqual(state.signing, []);
    assert.deepEqual(state.pending, ["s1"]);
    assert.equal(state.condition?.reason, "RecordNotConfirmed");
    assert.match(state.condition?.message ?? "", /publish TXT s1\._domainkey\.example\.com .* then set recordPublished: true/);
  });

  test("the DNS check: found with this key signs; another key, none, or a failed lookup each say so", () => {
    const name = "s1._domainkey.example.com";
    const key = { key: { selector: "s1" }, pem: rsa };
    assert.deepEqual(
      plan([key], withDns, { [name]: { found: [recordOf(rsa)] } }).state.signing.map((k) => k.selector),
      ["s1"],
    );
    assert.equal(plan([key], withDns, { [name]: { found: [recordOf(rsaOther)] } }).state.condition?.reason, "RecordMismatch");
    assert.equal(plan([key], withDns, { [name]: { found: [] } }).state.condition?.reason, "RecordMissing");
    assert.equal(plan([key], withDns, { [name]: { found: ["v=spf1 -all"] } }).state.condition?.reason, "RecordMissing");
    const failed = plan([key], withDns, { [name]: { error: "ETIMEOUT" } }).state.condition!;
    assert.equal(failed.reason, "DNSCheckFailed");
    assert.match(failed.message, /looking up s1\._domainkey\.example\.com failed: ETIMEOUT/);
  });

  test("per algorithm the last published key signs; an RSA and an Ed25519 key sign side by side", () => {
    const { state } = plan([
      { key: { selector: "old", recordPublished: true }, pem: rsaOther },
      { key: { selector: "new", recordPublished: true }, pem: rsa },
      { key: { selector: "ed", algorithm: "Ed25519", recordPublished: true }, pem: ed },
    ]);
    assert.deepEqual(state.signing.map((k) => k.selector).sort(), ["ed", "new"]);
    assert.deepEqual(
      state.records.map((r) => `${r.selector} ${r.signing}`),
      ["old false", "new true", "ed true"],
    );
  });

  test("an unusable key: SecretInvalid (not a key, or the wrong algorithm); a missing one: its problem, in the keys' order", () => {
    const missing = {
      condition: "RelayAvailable" as const,
      reason: "SecretNotFound" as const,
      message: "DKIM key a: Secret k has no key tls.key",
    };
    const { state, problems } = plan([
      { key: { selector: "a", privateKeySecretRef: { name: "k" } }, problem: missing },
      { key: { selector: "b", recordPublished: true }, pem: "not a key" },
      { key: { selector: "c", algorithm: "Ed25519", recordPublished: true }, pem: rsa },
      { key: { selector: "d" } },
    ]);
    assert.deepEqual(
      problems.map((p) => `${p.reason} ${p.message.split(":")[0]}`),
      ["SecretNotFound DKIM key a", "SecretInvalid DKIM key b", "SecretInvalid DKIM key c"],
    );
    assert.match(problems[2]!.message, /it holds a rsa key, not Ed25519/);
    assert.deepEqual(state.records, []);
    assert.equal(state.condition?.reason, "RecordPublished", "no record blocks: nothing is published or pending");
  });
});
