// The relay's ports, as the operator renders them (ADR 0012): the container
// listens only on unprivileged ports, so it binds as uid 65532 with every
// capability dropped on any runtime (containerd 1.x keeps ports below 1024
// privileged), while customers keep connecting to 587 and 465 through the
// Service's port mapping. The NetworkPolicy names the pod's ports, the ones
// traffic arrives on after that mapping.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { relayConfig, relayDeployment, relayInternalService, relayNetworkPolicy, relayService } from "../../operator/domain/render.js";

const domain = {
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "d", namespace: "n", uid: "u" },
  spec: { domain: "example.com", inbound: { allowedSourceRanges: ["203.0.113.0/24"], delivery: { smtp: { host: "h", port: 25 } } } },
} as SmtpDomain;
const settings = { relayImage: "img", relayHostSuffix: "relay.example.net" };
const outbound = { submission: { username: "u", password: "p" }, controlToken: "t", senders: [], dkim: [] };

interface ContainerPort {
  name: string;
  containerPort: number;
}
interface ServicePort {
  name: string;
  port: number;
  targetPort: string | number;
}
const container = (
  relayDeployment(domain, settings) as unknown as {
    spec: {
      template: {
        spec: {
          securityContext: Record<string, unknown>;
          containers: { ports: ContainerPort[]; securityContext: { capabilities: { drop: string[] } } }[];
        };
      };
    };
  }
).spec.template.spec.containers[0]!;
const portNamed = (name: string | number) => container.ports.find((p) => p.name === name)?.containerPort;
const servicePorts = (service: unknown) => (service as { spec: { ports: ServicePort[] } }).spec.ports;

test("the relay container listens only on unprivileged ports, with every capability dropped", () => {
  assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"]);
  for (const port of container.ports)
    assert.ok(
      port.containerPort >= 1024,
      `${port.name} is container port ${port.containerPort}, which needs a privilege the relay does not have`,
    );
  // Nothing else lets the bind through: no sysctl that some admission policies refuse.
  const pod = (
    relayDeployment(domain, settings) as unknown as { spec: { template: { spec: { securityContext: Record<string, unknown> } } } }
  ).spec.template.spec;
  assert.equal(pod.securityContext.sysctls, undefined);
});

test("the relay config's listeners are the Deployment's container ports", () => {
  const listeners = relayConfig(domain, [], new Map(), [], settings, undefined, outbound).listeners;
  assert.equal(listeners.starttls?.port, portNamed("submission"));
  assert.equal(listeners.implicitTls?.port, portNamed("submissions"));
  assert.equal(listeners.health.port, portNamed("health"));
  assert.equal(listeners.submission?.port, portNamed("internal-smtp"));
  assert.equal(listeners.control?.port, portNamed("control"));
});

test("customers still connect to 587 and 465: the Service maps them onto the listeners", () => {
  const ports = servicePorts(relayService(domain));
  assert.deepEqual(
    ports.map((p) => p.port),
    [587, 465],
  );
  assert.deepEqual(
    ports.map((p) => portNamed(p.targetPort)),
    [portNamed("submission"), portNamed("submissions")],
  );
  for (const p of servicePorts(relayInternalService(domain)))
    assert.ok(portNamed(p.targetPort), `the internal Service's ${p.name} reaches a container port`);
});

test("the NetworkPolicy opens the pod's ports (after the Service's mapping), each rule to its own sources", () => {
  const rules = (
    relayNetworkPolicy(domain, settings) as unknown as { spec: { ingress: { from?: unknown[]; ports: { port: number }[] }[] } }
  ).spec.ingress;
  const opened = (i: number) => rules[i]!.ports.map((p) => p.port);
  assert.deepEqual(opened(0), [portNamed("submission"), portNamed("submissions")]);
  assert.deepEqual(rules[0]!.from, [{ ipBlock: { cidr: "203.0.113.0/24" } }]);
  assert.deepEqual(opened(1), [portNamed("health"), portNamed("internal-smtp")]);
  assert.deepEqual(opened(2), [portNamed("control")]);
});

const forwardedDomain = { ...domain, spec: { ...domain.spec, inbound: { ...domain.spec.inbound, mode: "Forwarded" } } } as SmtpDomain;
const forwardedContainer = (
  relayDeployment(forwardedDomain, settings) as unknown as { spec: { template: { spec: { containers: { ports: ContainerPort[] }[] } } } }
).spec.template.spec.containers[0]!;

test("Forwarded mode: the Service offers port 25 only, onto the unprivileged forwarded listener", () => {
  const listeners = relayConfig(forwardedDomain, [], new Map(), [], settings, undefined, outbound).listeners;
  const forwardedPort = forwardedContainer.ports.find((p) => p.name === "smtp")?.containerPort;
  assert.equal(listeners.forwarded?.port, forwardedPort);
  assert.ok(forwardedPort !== undefined && forwardedPort >= 1024);
  assert.equal(listeners.starttls, undefined, "no AUTH listener");
  assert.equal(listeners.implicitTls, undefined);
  assert.deepEqual(forwardedContainer.ports.map((p) => p.name).sort(), ["control", "health", "internal-smtp", "smtp"]);
  assert.deepEqual(
    servicePorts(relayService(forwardedDomain)).map((p) => [p.port, p.targetPort]),
    [[25, "smtp"]],
  );
  const rules = (
    relayNetworkPolicy(forwardedDomain, settings) as unknown as { spec: { ingress: { from?: unknown[]; ports: { port: number }[] }[] } }
  ).spec.ingress;
  assert.deepEqual(
    rules[0]!.ports.map((p) => p.port),
    [forwardedPort],
  );
  assert.deepEqual(rules[0]!.from, [{ ipBlock: { cidr: "203.0.113.0/24" } }], "allowedSourceRanges apply to the forwarder");
});

test("the image exposes the ports the relay listens on, in either mode", () => {
  const exposed = /^EXPOSE (.+)$/m.exec(readFileSync("Dockerfile", "utf8"))![1]!.split(" ").map(Number).sort();
  assert.deepEqual(exposed, [...new Set([...container.ports, ...forwardedContainer.ports].map((p) => p.containerPort))].sort());
});
