// A domain's message limits (spec.relay.limits) within the installation's maximums (operator flags),
// as the relay config gets them (checked with the relay's own loader), and what the domain is told when
// it asks for more than the installation allows.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { stringify } from "yaml";
import type { SmtpDomain } from "../../crds/schema.js";
import { conditionEvents } from "../../operator/events.js";
import { parseFlags } from "../../operator/flags.js";
import type { Cluster } from "../../operator/kube/cluster.js";
import { limitEvents, limitsCondition } from "../../operator/domain/plan.js";
import { messageLimits, relayConfig, relayDeployment, type OperatorSettings } from "../../operator/domain/render.js";
import { parseConfig } from "../../relay/contract/config-parser.js";

const domain = (limits?: NonNullable<SmtpDomain["spec"]["relay"]>["limits"]): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "ns", uid: "u" },
  spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "ingest.svc" } } }, ...(limits ? { relay: { limits } } : {}) },
});
const settings = (caps?: OperatorSettings["relayLimitCaps"]): OperatorSettings => ({
  relayImage: "i",
  relayHostSuffix: "s",
  ...(caps ? { relayLimitCaps: caps } : {}),
});
const mib = 1024 * 1024;

describe("message limits per domain", () => {
  test("unset: 25Mi and 50 recipients, the relay's recommended limits", () => {
    assert.deepEqual(messageLimits(domain(), settings()), { maxMessageBytes: 25 * mib, maxRecipients: 50 });
  });
  test("a domain lowers them, or raises them up to the installation's maximum and no further", () => {
    const caps = { maxMessageBytes: 100 * mib, maxRecipients: 200 };
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "10Mi", maxRecipients: 5 }), settings(caps)), {
      maxMessageBytes: 10 * mib,
      maxRecipients: 5,
    });
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "50M", maxRecipients: 150 }), settings(caps)), {
      maxMessageBytes: 50_000_000,
      maxRecipients: 150,
    });
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "1Gi", maxRecipients: 1000 }), settings(caps)), {
      maxMessageBytes: 100 * mib,
      maxRecipients: 200,
    });
    // Default caps are the recommended limits: raising needs the installation's consent.
    assert.deepEqual(messageLimits(domain({ maxMessageSize: "1Gi", maxRecipients: 1000 }), settings()), {
      maxMessageBytes: 25 * mib,
      maxRecipients: 50,
    });
    // An installation below the defaults caps the defaults too.
    assert.deepEqual(messageLimits(domain(), settings({ maxMessageBytes: 10 * mib, maxRecipients: 10 })), {
      maxMessageBytes: 10 * mib,
      maxRecipients: 10,
    });
  });
  test("the relay config carries them, and the relay loads it", () => {
    const config = relayConfig(domain({ maxMessageSize: "1.5Mi", maxRecipients: 3 }), [], new Map(), [], settings());
    const loaded = parseConfig(stringify(config));
    assert.equal(loaded.limits.maxMessageBytes, 1_572_864);
    assert.equal(loaded.limits.maxRecipients, 3);
  });
  test("the pod's /tmp follows the message size (the DKIM spool budget is twice it, at least 64 MiB)", () => {
    const tmp = (d: SmtpDomain, caps?: OperatorSettings["relayLimitCaps"]) =>
      (
        relayDeployment(d, settings(caps)).spec as { template: { spec: { volumes: { name: string; emptyDir?: { sizeLimit: string } }[] } } }
      ).template.spec.volumes.find((v) => v.name === "tmp")!.emptyDir!.sizeLimit;
    assert.equal(tmp(domain()), "80Mi");
    assert.equal(tmp(domain({ maxMessageSize: "100Mi" }), { maxMessageBytes: 100 * mib, maxRecipients: 50 }), "216Mi");
    assert.equal(tmp(domain({ maxMessageSize: "100Mi" })), "80Mi", "capped first");
  });
  test("the operator's flags: sizes and counts checked at start", () => {
    assert.deepEqual(parseFlags([]).relayLimitCaps, { maxMessageBytes: 25 * mib, maxRecipients: 50 });
    assert.deepEqual(parseFlags(["--relay-max-message-size=100Mi", "--relay-max-recipients=500"]).relayLimitCaps, {
      maxMessageBytes: 100 * mib,
      maxRecipients: 500,
    });
    assert.throws(() => parseFlags(["--relay-max-message-size=2Gi"]), /--relay-max-message-size must be a size from 1Ki to 1Gi/);
    assert.throws(() => parseFlags(["--relay-max-message-size=big"]), /--relay-max-message-size/);
    assert.throws(() => parseFlags(["--relay-max-recipients=0"]), /--relay-max-recipients must be a whole number from 1 to 1000/);
  });
  test("a request above the installation's maximum: LimitsApplied stays True with LimitCapped, naming what was requested and what applies", () => {
    const caps = { maxMessageBytes: 100 * mib, maxRecipients: 200 };
    const capped = limitsCondition(domain({ maxMessageSize: "1Gi", maxRecipients: 150 }), settings(caps));
    assert.equal(capped?.type, "LimitsApplied");
    assert.equal(capped?.status, "True", "the relay serves, at the maximum: a warning, not a failure");
    assert.equal(capped?.reason, "LimitCapped");
    assert.match(capped.message, /maxMessageSize 1Gi requested, 100Mi applied \(--relay-max-message-size\)/);
    assert.doesNotMatch(capped.message, /maxRecipients/, "only what was capped is named");
    const both = limitsCondition(domain({ maxMessageSize: "30000000", maxRecipients: 1000 }), settings());
    assert.match(
      both!.message,
      /maxMessageSize 30000000 requested, 25Mi applied.*maxRecipients 1000 requested, 50 applied \(--relay-max-recipients\)/,
    );
    // Within the maximum: as requested; nothing asked: no condition at all.
    assert.deepEqual(
      [
        limitsCondition(domain({ maxMessageSize: "10Mi" }), settings())?.reason,
        limitsCondition(domain({ maxRecipients: 50 }), settings())?.reason,
        limitsCondition(domain(), settings()),
      ],
      ["AsRequested", "AsRequested", undefined],
    );
  });
  test("a LimitCapped Warning Event once per change, not on every reconcile", async () => {
    const asked = domain({ maxRecipients: 500 });
    // The condition's first appearance changes its status: the apply step's condition Events tell it, as a Warning.
    assert.deepEqual(limitEvents(asked, settings()), []);
    const condition = { ...limitsCondition(asked, settings())!, lastTransitionTime: "2026-01-01T00:00:00Z" };
    const recorded: { type: string; reason: string; message: string }[] = [];
    const cluster = {
      postEvent: (_namespace: string, body: unknown) => Promise.resolve(void recorded.push(body as (typeof recorded)[number])),
    } as unknown as Cluster;
    await conditionEvents(cluster, { apiVersion: "v", kind: "SmtpDomain", name: "n", namespace: "ns", uid: "u" }, [], [condition]);
    assert.deepEqual(
      recorded.map((e) => `${e.type} ${e.reason}`),
      ["Warning LimitCapped"],
    );
    assert.match(recorded[0]!.message, /maxRecipients 500 requested, 50 applied/);
    // Status now says so: the next reconcile records nothing.
    const told: SmtpDomain = { ...asked, status: { conditions: [condition] } };
    assert.deepEqual(limitEvents(told, settings()), []);
    // Within the maximum before, capped now (the same condition status): the planner tells it.
    const asRequested = { ...limitsCondition(domain({ maxRecipients: 20 }), settings())!, lastTransitionTime: "2026-01-01T00:00:00Z" };
    const raised = limitEvents({ ...asked, status: { conditions: [asRequested] } }, settings());
    assert.deepEqual(
      raised.map((e) => `${e.type} ${e.reason}`),
      ["Warning LimitCapped"],
    );
    assert.match(raised[0]!.message, /maxRecipients 500 requested, 50 applied/);
    // Another maximum (the operator restarted with other flags) or another request is a change.
    assert.equal(limitEvents(told, settings({ maxMessageBytes: 25 * mib, maxRecipients: 100 })).length, 1);
    assert.equal(limitEvents({ ...told, spec: { ...told.spec, relay: { limits: { maxRecipients: 60 } } } }, settings()).length, 1);
    // Within the maximum: no Event.
    assert.deepEqual(limitEvents(domain({ maxRecipients: 20 }), settings()), []);
  });
});
