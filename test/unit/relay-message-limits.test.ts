// A domain's message limits (spec.relay.limits) within the installation's maximums (operator flags),
// as the relay config gets them (checked with the relay's own loader).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { stringify } from "yaml";
import type { SmtpDomain } from "../../crds/schema.js";
import { parseFlags } from "../../operator/flags.js";
import { messageLimits, relayConfig, relayDeployment, type OperatorSettings } from "../../operator/domain/render.js";
import { parseConfig } from "../../relay/contract/config-parser.js";

const domain = (limits?: NonNullable<SmtpDomain["spec"]["relay"]>["limits"]): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "ns", uid: "u" },
  spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "ingest.svc" } } }, ...(limits ? { relay: { limits } } : {}) },
});
const settings = (caps?: OperatorSettings["relayLimitCaps"]): OperatorSettings => ({ relayImage: "i", relayHostSuffix: "s", ...(caps ? { relayLimitCaps: caps } : {}) });
const mib = 1024 * 1024;

describe("message limits per domain", () => {
  test("unset: 25Mi and 50 recipients, the relay's recommended limits", () => {
    assert.deepEqual(messageLimits(domain(), settings()), { maxMessageBytes: 25 * mib, maxRecipients: 50 });
  });
  test("a domain lowers them, or raises them up to the installation's maximum and no further", () => {
    const caps = { maxMessageBytes: 100 * mib, maxRecipients: 200 };
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "10Mi", maxRecipients: 5 }), settings(caps)), { maxMessageBytes: 10 * mib, maxRecipients: 5 });
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "50M", maxRecipients: 150 }), settings(caps)), { maxMessageBytes: 50_000_000, maxRecipients: 150 });
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "1Gi", maxRecipients: 1000 }), settings(caps)), { maxMessageBytes: 100 * mib, maxRecipients: 200 });
    // Default caps are the recommended limits: raising needs the installation's consent.
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "1Gi", maxRecipients: 1000 }), settings()), { maxMessageBytes: 25 * mib, maxRecipients: 50 });
    // An installation below the defaults caps the defaults too.
    assert.deepEqual(messageLimits(domain(), settings({ maxMessageBytes: 10 * mib, maxRecipients: 10 })), { maxMessageBytes: 10 * mib, maxRecipients: 10 });
  });
  test("the relay config carries them, and the relay loads it", () => {
    const config = relayConfig(domain({ maxMessageSize: "1.5Mi", maxRecipients: 3 }), [], new Map(), [], settings());
    const loaded = parseConfig(stringify(config));
    assert.equal(loaded.limits.maxMessageBytes, 1_572_864);
    assert.equal(loaded.limits.maxRecipients, 3);
  });
  test("the pod's /tmp follows the message size (the DKIM spool budget is twice it, at least 64 MiB)", () => {
    const tmp = (d: SmtpDomain, caps?: OperatorSettings["relayLimitCaps"]) =>
      ((relayDeployment(d, settings(caps)).spec as { template: { spec: { volumes: { name: string; emptyDir?: { sizeLimit: string } }[] } } }).template.spec.volumes.find((v) => v.name === "tmp")!.emptyDir!.sizeLimit);
    assert.equal(tmp(domain()), "80Mi");
    assert.equal(tmp(domain({ maxMessageSize: "100Mi" }), { maxMessageBytes: 100 * mib, maxRecipients: 50 }), "216Mi");
    assert.equal(tmp(domain({ maxMessageSize: "100Mi" })), "80Mi", "capped first");
  });
  test("the operator's flags: sizes and counts checked at start", () => {
    assert.deepEqual(parseFlags([]).relayLimitCaps, { maxMessageBytes: 25 * mib, maxRecipients: 50 });
    assert.deepEqual(parseFlags(["--relay-max-message-size=100Mi", "--relay-max-recipients=500"]).relayLimitCaps, { maxMessageBytes: 100 * mib, maxRecipients: 500 });
    assert.throws(() => parseFlags(["--relay-max-message-size=2Gi"]), /--relay-max-message-size must be a size from 1Ki to 1Gi/);
    assert.throws(() => parseFlags(["--relay-max-message-size=big"]), /--relay-max-message-size/);
    assert.throws(() => parseFlags(["--relay-max-recipients=0"]), /--relay-max-recipients must be a whole number from 1 to 1000/);
  });
});
