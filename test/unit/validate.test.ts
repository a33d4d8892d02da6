// Runtime validation of API objects (crds/validate.ts): the examples are
// valid, and each kind of mismatch is named by its field, as the InvalidObject
// condition then shows it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { objectProblems } from "../../crds/validate.js";

type Doc = Record<string, any>;
const examples = ["examples/10-smtpdomain.yaml", "examples/30-supportaddresses.yaml"].flatMap((file) =>
  parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS() as Doc),
);
const example = (kind: string) => structuredClone(examples.find((d) => d.kind === kind)!);

describe("API objects checked against crds/schema.ts", () => {
  test("every example is valid, as the API server returns it (extra metadata, a status)", () => {
    assert.ok(examples.length >= 3);
    for (const doc of examples)
      assert.deepEqual(objectProblems(doc.kind as "SmtpDomain" | "SupportAddress", doc), [], `${doc.kind} ${doc.metadata.name}`);
    const domain = example("SmtpDomain");
    domain.metadata = { ...domain.metadata, uid: "u", resourceVersion: "7", generation: 2, managedFields: [{ manager: "kubectl" }] };
    domain.status = {
      observedGeneration: 2,
      conditions: [
        { type: "Ready", status: "True", reason: "Ready", message: "", lastTransitionTime: "2026-12-01T10:00:00Z", observedGeneration: 2 },
      ],
    };
    domain.spec.relay.resources = { requests: { cpu: 1, memory: "256Mi" } };
    assert.deepEqual(objectProblems("SmtpDomain", domain), []);
  });

  const cases: { name: string; kind: "SmtpDomain" | "SupportAddress"; change: (d: Doc) => void; problem: RegExp }[] = [
    {
      name: "a port as a string",
      kind: "SmtpDomain",
      change: (d) => (d.spec.inbound.delivery.smtp.port = "25"),
      problem: /^spec\.inbound\.delivery\.smtp\.port: Expected integer$/,
    },
    {
      name: "a required field missing",
      kind: "SmtpDomain",
      change: (d) => delete d.spec.domain,
      problem: /^spec\.domain: Expected required property$/,
    },
    {
      name: "a value outside an enum",
      kind: "SmtpDomain",
      change: (d) => (d.spec.inbound.delivery.smtp.protocol = "SMTPS"),
      problem: /^spec\.inbound\.delivery\.smtp\.protocol: /,
    },
    {
      name: "a quantity that is neither integer nor string",
      kind: "SmtpDomain",
      change: (d) => (d.spec.relay.resources = { requests: { cpu: true } }),
      problem: /^spec\.relay\.resources\.requests\.cpu: /,
    },
    {
      name: "a pattern not met",
      kind: "SmtpDomain",
      change: (d) => (d.spec.inbound.gracePeriod = "a week"),
      problem: /^spec\.inbound\.gracePeriod: Expected string to match/,
    },
    {
      name: "a timestamp that is none",
      kind: "SmtpDomain",
      change: (d) =>
        (d.status = { conditions: [{ type: "Ready", status: "True", reason: "Ready", message: "", lastTransitionTime: "yesterday" }] }),
      problem: /^status\.conditions\.0\.lastTransitionTime: /,
    },
    {
      name: "another API version",
      kind: "SupportAddress",
      change: (d) => (d.apiVersion = "smtpconnector.dev/v1beta1"),
      problem: /^apiVersion: Expected/,
    },
    {
      name: "an object where a string belongs",
      kind: "SupportAddress",
      change: (d) => (d.spec.domainRef = "example-com"),
      problem: /^spec\.domainRef: Expected object$/,
    },
    {
      name: "an address that is a number",
      kind: "SupportAddress",
      change: (d) => (d.spec.address = 42),
      problem: /^spec\.address: Expected string$/,
    },
    { name: "no spec at all", kind: "SupportAddress", change: (d) => delete d.spec, problem: /^spec: Expected required property$/ },
  ];
  for (const c of cases) {
    test(`names the field: ${c.name}`, () => {
      const doc = example(c.kind);
      c.change(doc);
      const problems = objectProblems(c.kind, doc);
      assert.ok(problems.length >= 1, "refused");
      assert.ok(
        problems.some((p) => c.problem.test(p)),
        problems.join("\n"),
      );
    });
  }

  test("names at most five fields, each once", () => {
    const doc = example("SupportAddress");
    doc.spec = { address: 1, domainRef: 2, displayName: 3, outbound: 4, verification: 5, extra: 6 };
    doc.metadata = {};
    const problems = objectProblems("SupportAddress", doc);
    assert.equal(problems.length, 5, problems.join("\n"));
    assert.equal(new Set(problems.map((p) => p.split(":")[0])).size, 5);
  });

  test("is cheap enough for every object of every list and watch event", () => {
    const doc = example("SmtpDomain");
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) objectProblems("SmtpDomain", doc);
    // About a microsecond each on a quiet machine; the bound leaves room for a busy one.
    assert.ok(performance.now() - started < 2_000, `${Math.round(performance.now() - started)} ms for 10,000`);
  });
});
