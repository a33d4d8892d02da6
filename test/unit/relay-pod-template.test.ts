// The relay pods' template: the domain's over the installation's over the operator's own,
// as relayDeployment renders it, and the installation default checked at the flag.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { RelayPodTemplate, SmtpDomain } from "../../crds/schema.js";
import { parseFlags } from "../../operator/flags.js";
import { parseRelayPodTemplate } from "../../operator/domain/pod-template.js";
import { relayDeployment, type OperatorSettings } from "../../operator/domain/render.js";

const domain = (pod?: RelayPodTemplate): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "ns", uid: "u" },
  spec: {
    domain: "example.com",
    inbound: { delivery: { smtp: { host: "ingest.svc" } } },
    ...(pod ? { relay: { template: { pod } } } : {}),
  },
});

interface Pod {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: Record<string, unknown> & { securityContext: Record<string, unknown>; containers: { securityContext: Record<string, unknown> }[] };
}
const podOf = (d: SmtpDomain, installation?: RelayPodTemplate): Pod => {
  const settings: OperatorSettings = { relayImage: "i", relayHostSuffix: "s", ...(installation ? { relayPodTemplate: installation } : {}) };
  return (relayDeployment(d, settings).spec as { template: Pod }).template;
};
const selector = { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": "example-com" };

describe("relay pod template", () => {
  test("by default the replicas spread over nodes and zones, as a preference, counting this domain's relay pods", () => {
    const pod = podOf(domain());
    assert.deepEqual(pod.spec.topologySpreadConstraints, [
      { maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: selector } },
      {
        maxSkew: 1,
        topologyKey: "topology.kubernetes.io/zone",
        whenUnsatisfiable: "ScheduleAnyway",
        labelSelector: { matchLabels: selector },
      },
    ]);
    for (const key of ["imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"])
      assert.equal(pod.spec[key], undefined, key);
    assert.equal(pod.metadata.annotations, undefined);
  });

  test("the domain's fields reach the pod spec as given", () => {
    const template: RelayPodTemplate = {
      imagePullSecrets: [{ name: "registry" }],
      nodeSelector: { "kubernetes.io/os": "linux" },
      tolerations: [{ key: "dedicated", operator: "Equal", value: "mail", effect: "NoSchedule" }],
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["mail"] }] }],
          },
        },
      },
      priorityClassName: "mail-critical",
      metadata: { labels: { cost: "mail" }, annotations: { "sidecar.istio.io/inject": "false" } },
    };
    const pod = podOf(domain(template));
    assert.deepEqual(pod.spec.imagePullSecrets, template.imagePullSecrets);
    assert.deepEqual(pod.spec.nodeSelector, template.nodeSelector);
    assert.deepEqual(pod.spec.tolerations, template.tolerations);
    assert.deepEqual(pod.spec.affinity, template.affinity);
    assert.equal(pod.spec.priorityClassName, "mail-critical");
    assert.equal(pod.metadata.labels.cost, "mail");
    assert.deepEqual(pod.metadata.annotations, { "sidecar.istio.io/inject": "false" });
  });

  test("precedence: a field the domain sets replaces the installation's whole; labels and annotations merge key by key", () => {
    const installation: RelayPodTemplate = {
      metadata: { labels: { team: "platform", cost: "shared" }, annotations: { a: "installation", b: "installation" } },
      tolerations: [
        { key: "a", operator: "Exists" },
        { key: "b", operator: "Exists" },
      ],
      nodeSelector: { pool: "general", "kubernetes.io/os": "linux" },
      priorityClassName: "default-mail",
      imagePullSecrets: [{ name: "mirror" }],
    };
    const pod = podOf(
      domain({
        metadata: { labels: { cost: "customer-a" }, annotations: { b: "domain" } },
        tolerations: [{ key: "c", operator: "Exists" }],
        nodeSelector: { pool: "mail" },
      }),
      installation,
    );
    assert.deepEqual(
      pod.spec.tolerations,
      [{ key: "c", operator: "Exists" }],
      "the domain's list replaces the installation's, never appended",
    );
    assert.deepEqual(pod.spec.nodeSelector, { pool: "mail" }, "a map field is replaced too (only labels and annotations merge)");
    assert.equal(pod.spec.priorityClassName, "default-mail", "what the domain leaves out comes from the installation");
    assert.deepEqual(pod.spec.imagePullSecrets, [{ name: "mirror" }]);
    assert.equal(pod.metadata.labels.team, "platform");
    assert.equal(pod.metadata.labels.cost, "customer-a");
    assert.deepEqual(pod.metadata.annotations, { a: "installation", b: "domain" });
  });

  test("the operator's own labels win over any template, so the Deployment's selector always matches its pods", () => {
    const forged = {
      "app.kubernetes.io/instance": "other",
      "app.kubernetes.io/name": "x",
      "app.kubernetes.io/managed-by": "me",
      "smtpconnector.dev/domain": "other",
    };
    // The CRD and the flag refuse these; the merge holds even if one got through.
    const pod = podOf(domain({ metadata: { labels: forged } }), { metadata: { labels: forged } });
    for (const [key, value] of Object.entries({
      ...selector,
      "app.kubernetes.io/managed-by": "smtp-connector",
      "smtpconnector.dev/domain": "example-com",
    }))
      assert.equal(pod.metadata.labels[key], value, key);
  });

  test("spread: an installation-wide constraint without a labelSelector counts each domain's own pods; an empty list turns spreading off", () => {
    const zoneHard: RelayPodTemplate = {
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "DoNotSchedule" }],
    };
    assert.deepEqual(podOf(domain(), zoneHard).spec.topologySpreadConstraints, [
      {
        maxSkew: 1,
        topologyKey: "topology.kubernetes.io/zone",
        whenUnsatisfiable: "DoNotSchedule",
        labelSelector: { matchLabels: selector },
      },
    ]);
    const own = {
      maxSkew: 2,
      topologyKey: "rack",
      whenUnsatisfiable: "ScheduleAnyway" as const,
      labelSelector: { matchLabels: { app: "mail" } },
    };
    assert.deepEqual(
      podOf(domain({ topologySpreadConstraints: [own] }), zoneHard).spec.topologySpreadConstraints,
      [own],
      "a labelSelector given is kept",
    );
    assert.equal(podOf(domain({ topologySpreadConstraints: [] }), zoneHard).spec.topologySpreadConstraints, undefined);
  });

  test("securityContext: ids only; the restricted profile stays whatever the template says", () => {
    const pod = podOf(domain({ securityContext: { runAsUser: 1000650000, runAsGroup: 1000650000, fsGroup: 1000650000 } }));
    assert.deepEqual(pod.spec.securityContext, {
      runAsNonRoot: true,
      runAsUser: 1000650000,
      runAsGroup: 1000650000,
      fsGroup: 1000650000,
      seccompProfile: { type: "RuntimeDefault" },
    });
    // Fields outside the schema (a template object built by hand) cannot switch the profile off either.
    const sneaky = { securityContext: { runAsNonRoot: false, seccompProfile: { type: "Unconfined" } } } as unknown as RelayPodTemplate;
    const hardened = podOf(domain(sneaky)).spec;
    assert.equal(hardened.securityContext.runAsNonRoot, true);
    assert.deepEqual(hardened.securityContext.seccompProfile, { type: "RuntimeDefault" });
    assert.deepEqual(hardened.containers[0]!.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
  });
});

describe("--relay-pod-template", () => {
  test("JSON or YAML in the shape of spec.relay.template.pod", () => {
    const parsed = parseFlags([
      "--relay-pod-template",
      '{"tolerations":[{"key":"dedicated","operator":"Exists"}],"metadata":{"labels":{"team":"mail"}}}',
    ]).relayPodTemplate;
    assert.deepEqual(parsed, { tolerations: [{ key: "dedicated", operator: "Exists" }], metadata: { labels: { team: "mail" } } });
    assert.deepEqual(parseRelayPodTemplate("priorityClassName: mail\n"), { priorityClassName: "mail" });
    assert.equal(parseFlags([]).relayPodTemplate, undefined);
  });

  test("refused at start with the field named: a typo, a wrong type, the operator's own labels, a malformed toleration", () => {
    const cases: [string, RegExp][] = [
      ['{"tolerations":[{"key":"a","opertor":"Exists"}]}', /\/tolerations\/0\/opertor: unknown field/],
      ['{"nodeSelector":"linux"}', /\/nodeSelector/],
      [
        '{"metadata":{"labels":{"app.kubernetes.io/instance":"x"}}}',
        /app\.kubernetes\.io\/instance: the operator's own pod label cannot be set/,
      ],
      ['{"tolerations":[{"key":"a","operator":"Exists","value":"v"}]}', /operator Exists takes no value/],
      ['{"securityContext":{"runAsUser":0}}', /\/securityContext\/runAsUser/],
      ["[1", /must be a JSON or YAML object/],
    ];
    for (const [text, problem] of cases)
      assert.throws(
        () => parseFlags(["--relay-pod-template", text]),
        (e: Error) => problem.test(e.message) && /--relay-pod-template/.test(e.message),
        text,
      );
  });
});
