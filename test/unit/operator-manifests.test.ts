// What `npm run check:manifests` hands the checkers of the operator's objects (hack/manifests/operator-objects.ts):
// every kind the operator creates for a domain, and the full domains' optional fields present in what is rendered,
// so a checker's silence means the fields were checked, not left out.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fullDomains, operatorObjects, renderSettings } from "../../hack/manifests/operator-objects.js";
import { parseFlags } from "../../operator/flags.js";

const installation = parseFlags([
  "--relay-max-message-size=100Mi",
  "--relay-image=registry.internal.example:5000/smtp-connector@sha256:" + "0".repeat(64),
  `--relay-pod-template=${JSON.stringify({ imagePullSecrets: [{ name: "registry-internal" }] })}`,
]);
const { domains, objects } = operatorObjects(renderSettings(installation));
const of = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);

test("every object the operator creates for a domain is rendered for the checkers", () => {
  assert.deepEqual(domains, fullDomains);
  const example = objects
    .filter((o) => o.metadata.labels?.["smtpconnector.dev/domain"] === "example-com")
    .map((o) => `${o.kind}/${o.metadata.name}`)
    .sort();
  assert.deepEqual(example, [
    "Deployment/example-com-relay",
    "NetworkPolicy/example-com-relay",
    "PodDisruptionBudget/example-com-relay",
    "Secret/example-com-dkim-helpdesk1",
    "Secret/example-com-inbound-v1",
    "Secret/example-com-relay-config",
    "Secret/example-com-relay-control",
    "Secret/example-com-relay-tls",
    "Secret/example-com-submission",
    "Service/example-com-relay",
    "Service/example-com-relay-internal",
  ]);
  // Two versions, one replica (no PodDisruptionBudget), the customer's own TLS Secret not rendered.
  assert.ok(of("Secret", "login-example-inbound-v2"));
  assert.equal(of("PodDisruptionBudget", "login-example-relay"), undefined);
  assert.equal(of("Secret", "forwarded-example-relay-tls"), undefined);
});

test("the full Forwarded domain's optional fields reach its Deployment, Service and config", () => {
  const pod = (
    of("Deployment", "forwarded-example-relay")!.spec as {
      template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> };
    }
  ).template;
  for (const field of [
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "securityContext",
  ])
    assert.ok(pod.spec[field], field);
  assert.equal(pod.metadata.labels["cost-center"], "mail");
  // The installation's pull secret under a domain without its own.
  assert.deepEqual(
    (of("Deployment", "example-com-relay")!.spec as { template: { spec: { imagePullSecrets: unknown } } }).template.spec.imagePullSecrets,
    [{ name: "registry-internal" }],
  );
  assert.equal((of("Service", "forwarded-example-relay")!.spec as { type: string }).type, "NodePort");
  const config = (of("Secret", "forwarded-example-relay-config")!.stringData as Record<string, string>)["relay.yaml"]!;
  for (const part of [/proxyProtocol:/, /mode: Forwarded/, /maxMessageBytes: 52428800/, /webhook:/]) assert.match(config, part);
});
