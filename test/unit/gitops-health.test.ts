// gitops/argocd/health.lua on each state our resources can be in, run by
// gopher-lua (Argo CD's VM) beside kstatus (sigs.k8s.io/cli-utils), so the two
// GitOps views agree: Progressing/InProgress, Degraded/Failed, Healthy/Current.
import assert from "node:assert/strict";
import { test } from "node:test";
import { gitopsVerdicts } from "../support/gitops.js";

const condition = (type: string, status: string, reason: string, message = `${type} ${reason}`) => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: "2026-11-25T12:00:00Z",
  observedGeneration: 2,
});

function object(
  name: string,
  extra: { generation?: number; observedGeneration?: number; conditions?: object[]; deleting?: boolean; noStatus?: boolean },
) {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: {
      name,
      namespace: "acme",
      generation: extra.generation ?? 2,
      ...(extra.deleting ? { deletionTimestamp: "2026-11-25T12:00:00Z", finalizers: ["smtpconnector.dev/disconnect"] } : {}),
    },
    spec: { domain: "example.com" },
    ...(extra.noStatus ? {} : { status: { observedGeneration: extra.observedGeneration ?? 2, conditions: extra.conditions ?? [] } }),
  };
}

test("health.lua and kstatus agree on every state the operator writes", () => {
  const cases: [object, string, string, RegExp][] = [
    // Before the operator wrote any status kstatus cannot tell (it assumes Current); the Argo CD check waits.
    [object("new", { noStatus: true }), "Current", "Progressing", /Waiting for the operator/],
    [object("stale", { generation: 3, conditions: [condition("Ready", "True", "Ready")] }), "InProgress", "Progressing", /latest spec/],
    [
      object("rolling", { conditions: [condition("Ready", "False", "Progressing"), condition("Reconciling", "True", "Progressing")] }),
      "InProgress",
      "Progressing",
      /^Progressing: /,
    ],
    [
      object("pending", {
        conditions: [condition("Ready", "False", "VerificationPending"), condition("Reconciling", "True", "VerificationPending")],
      }),
      "InProgress",
      "Progressing",
      /^VerificationPending: /,
    ],
    [
      object("stalled", {
        conditions: [condition("Ready", "False", "SecretConflict"), condition("Stalled", "True", "SecretConflict", "Secret x exists")],
      }),
      "Failed",
      "Degraded",
      /^SecretConflict: Secret x exists$/,
    ],
    [
      object("ready", { conditions: [condition("Ready", "True", "Ready", "the domain is connected")] }),
      "Current",
      "Healthy",
      /^the domain is connected$/,
    ],
    [
      object("deleting", { deleting: true, conditions: [condition("Ready", "True", "Ready")] }),
      "Terminating",
      "Progressing",
      /Disconnecting/,
    ],
  ];
  const verdicts = gitopsVerdicts(cases.map(([o]) => o));
  cases.forEach(([o, kstatus, health, message], i) => {
    const v = verdicts[i]!;
    const name = (o as { metadata: { name: string } }).metadata.name;
    assert.equal(v.name, name);
    assert.equal(v.kstatus, kstatus, `${name}: kstatus ${v.kstatus} (${v.kstatusMessage})`);
    assert.equal(v.health, health, `${name}: health ${v.health}`);
    assert.match(v.healthMessage, message, name);
  });
});
