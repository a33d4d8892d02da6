// Forwarded mode (spec.inbound.mode, issue 25) against the real API server: a
// Forwarded domain gets no inbound credential Secret and a Service with port 25
// only; switching an Authenticated domain to Forwarded revokes every issued
// version for good in the same reconcile, and says so until the relay has
// rolled out; switching back issues a version never used before.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { revokedAtAnnotation } from "../../operator/domain/credentials.js";
import { e2eClients } from "../support/e2e.js";
import { startTestController } from "../support/operator-rbac.js";
import {
  applyManifests,
  deleteDomainsAtEnd,
  conditionOf,
  connect,
  eventually,
  kubectl,
  listEvents,
  namespaceWithRelayTls,
  readRelayConfig,
  readSmtpDomain,
  secretText,
} from "../support/kube.js";
import { markDeploymentAvailable } from "../support/deployment-runner.js";
import { smtpDomainManifest } from "../support/manifests.js";

/** example-com with `inbound` (its mode, credentials), sources from 203.0.113.0/24 only, two relay replicas serving relay-tls. */
const domainManifest = (namespace: string, inbound: Record<string, unknown>) =>
  smtpDomainManifest(namespace, {
    inbound: { ...inbound, allowedSourceRanges: ["203.0.113.0/24"] },
    relay: { replicas: 2, tls: { secretName: "relay-tls" } },
  });

describe("SmtpDomain in Forwarded mode", () => {
  let controller: Controller;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let custom: k8s.CustomObjectsApi;
  let networking: k8s.NetworkingV1Api;

  before(async () => {
    ({ core, apps, custom } = await e2eClients());
    networking = (await connect()).config.makeApiClient(k8s.NetworkingV1Api);
    controller = await startTestController({
      settingsOverride: { forwarded: { trustedArcSealers: ["microsoft.com"], dnsServers: ["127.0.0.1:5353"] } },
    });
  });
  after(() => controller.stop());

  const getDomain = (namespace: string) => readSmtpDomain(custom, namespace);
  const condition = conditionOf;
  const relayConfigOf = (namespace: string) => readRelayConfig(core, namespace);
  const credentialSecrets = async (namespace: string) =>
    (await core.listNamespacedSecret({ namespace, labelSelector: "smtpconnector.dev/credential-version" })).items
      .map((s) => s.metadata!.name!)
      .sort();
  const servicePorts = async (namespace: string) =>
    (await core.readNamespacedService({ namespace, name: "example-com-relay" })).spec!.ports!.map(
      (p) => `${p.port}->${String(p.targetPort)}`,
    );
  const containerPorts = async (namespace: string) =>
    (await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }))
      .spec!.template.spec!.containers[0]!.ports!.map((p) => `${p.name}:${p.containerPort}`)
      .sort();
  const policyPorts = async (namespace: string) =>
    (await networking.readNamespacedNetworkPolicy({ namespace, name: "example-com-relay" })).spec!.ingress![0]!.ports!.map((p) => p.port);
  /** What the Deployment controller would write once every replica runs the latest template (no kubelet here). */
  const rollOut = async (namespace: string) => {
    const deployment = await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" });
    await markDeploymentAvailable(namespace, "example-com-relay", 2, deployment.metadata!.generation);
    return deployment.metadata!.generation!;
  };

  async function setup(t: { after(fn: () => Promise<void> | void): void }) {
    const namespace = await namespaceWithRelayTls(t, "fwd");
    deleteDomainsAtEnd(t, namespace);
    return namespace;
  }

  test("a Forwarded domain: no credential Secret, the Service offers port 25 only, the config is the forwarded one", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace, { mode: "Forwarded" }));
    const domain = await eventually("the domain's status", async () => {
      const d = await getDomain(namespace);
      return d.status?.relay ? d : undefined;
    });
    const issued = condition(domain, "CredentialsIssued");
    assert.deepEqual([issued?.status, issued?.reason], ["True", "NotRequired"]);
    assert.match(issued!.message, /no inbound credentials are issued/);
    assert.equal(domain.status?.activeVersions, "");
    assert.equal(domain.status?.inboundMode, "Forwarded");
    assert.deepEqual(domain.status?.credentials, []);
    assert.equal(domain.status?.relay?.endpoint, `example-com.${namespace}.relay.test:25`);
    assert.equal(condition(domain, "Reconciling")?.reason, "Progressing", "a new domain rolls out; nothing to switch from");
    assert.equal(condition(domain, "Stalled"), undefined);

    assert.deepEqual(await credentialSecrets(namespace), []);
    assert.deepEqual(await servicePorts(namespace), ["25->smtp"]);
    assert.deepEqual(await containerPorts(namespace), ["control:8443", "health:8080", "internal-smtp:2587", "smtp:8025"]);
    assert.deepEqual(await policyPorts(namespace), [8025]);
    const config = await relayConfigOf(namespace);
    assert.deepEqual(config.listeners.forwarded, { port: 8025 });
    assert.equal(config.listeners.starttls, undefined);
    assert.equal(config.listeners.implicitTls, undefined);
    assert.deepEqual(config.forwarded, { trustedArcSealers: ["microsoft.com"], dnsServers: ["127.0.0.1:5353"] });
    assert.equal(config.domains[0]!.mode, "Forwarded");
    assert.deepEqual(config.domains[0]!.credentials, []);
    // The outbound half is there as for any domain.
    assert.ok(config.listeners.submission && config.domains[0]!.outbound);
    await core.readNamespacedSecret({ namespace, name: "example-com-submission" });
  });

  test("Authenticated → Forwarded: every issued version revoked for good at once, ModeChanging until the relay rolled out", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace, { credentials: [{ version: 1 }, { version: 2 }] }));
    await eventually("versions 1 and 2 active", async () =>
      (await getDomain(namespace)).status?.activeVersions === "1,2" ? true : undefined,
    );
    await rollOut(namespace);
    await eventually("rolled out in Authenticated mode", async () => {
      const d = await getDomain(namespace);
      return d.status?.inboundMode === "Authenticated" && condition(d, "Reconciling") === undefined ? true : undefined;
    });
    assert.deepEqual(await servicePorts(namespace), ["587->submission", "465->submissions"]);

    // The same field manager applies the manifest without credentials: server-side apply removes them.
    await applyManifests(domainManifest(namespace, { mode: "Forwarded" }));
    const switching = await eventually("the switch applied", async () => {
      const d = await getDomain(namespace);
      return d.status?.revokedVersions?.length === 2 && condition(d, "Reconciling")?.reason === "ModeChanging" ? d : undefined;
    });
    assert.deepEqual(switching.status?.revokedVersions, [1, 2]);
    assert.equal(switching.status?.inboundMode, "Authenticated", "the pods still serve the old listeners");
    assert.match(
      condition(switching, "Reconciling")!.message,
      /from Authenticated to Forwarded: every credential version is revoked for good/,
    );
    assert.deepEqual(
      switching.status?.credentials?.map((c) => `${c.version}:${c.state}`),
      ["1:Revoked", "2:Revoked"],
      "kept on record with their digests",
    );
    assert.ok(switching.status?.credentials?.every((c) => c.passwordSha256));
    assert.equal(condition(switching, "CredentialsIssued")?.reason, "NotRequired");
    assert.match(condition(switching, "CredentialsIssued")!.message, /version\(s\) 1,2 revoked for good/);
    for (const name of ["example-com-inbound-v1", "example-com-inbound-v2"]) {
      assert.ok(
        (await core.readNamespacedSecret({ namespace, name })).metadata?.annotations?.[revokedAtAnnotation],
        `${name} carries its revocation`,
      );
    }
    // Nothing half-applied: by the time status says so, config, Service and NetworkPolicy are the forwarded ones.
    const config = await relayConfigOf(namespace);
    assert.deepEqual([config.domains[0]!.mode, config.domains[0]!.credentials, config.listeners.starttls], ["Forwarded", [], undefined]);
    assert.deepEqual(await servicePorts(namespace), ["25->smtp"]);
    assert.deepEqual(await policyPorts(namespace), [8025]);
    const events = await listEvents(namespace, "reason=CredentialRevoked");
    assert.match(events, /version 1 is revoked by the switch to inbound mode Forwarded/);

    await rollOut(namespace);
    const done = await eventually("the switch done", async () => {
      const d = await getDomain(namespace);
      return d.status?.inboundMode === "Forwarded" && condition(d, "Reconciling") === undefined ? d : undefined;
    });
    assert.equal(done.status?.relay?.endpoint, `example-com.${namespace}.relay.test:25`);

    // Forwarded → Authenticated: a revoked version listed again is refused; none listed issues the next one.
    await applyManifests(domainManifest(namespace, { mode: "Authenticated", credentials: [{ version: 1 }] }));
    const refused = await eventually("version 1 refused", async () => {
      const d = await getDomain(namespace);
      return condition(d, "Stalled")?.reason === "NoActiveCredential" ? d : undefined;
    });
    assert.equal(condition(refused, "Ready")?.status, "False", "nothing can arrive authenticated");
    assert.deepEqual(
      (await relayConfigOf(namespace)).domains[0]!.credentials.map((c) => `${c.version}:${c.state}`),
      ["1:Revoked"],
    );

    await applyManifests(domainManifest(namespace, { mode: "Authenticated" }));
    const back = await eventually("version 3 issued", async () => {
      const d = await getDomain(namespace);
      return d.status?.activeVersions === "3" ? d : undefined;
    });
    assert.equal(condition(back, "Reconciling")?.reason, "ModeChanging");
    assert.match(condition(back, "Reconciling")!.message, /from Forwarded to Authenticated: credentials are issued/);
    assert.deepEqual(back.status?.revokedVersions, [1, 2]);
    const v3 = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v3" });
    assert.ok(secretText(v3, "password").length >= 40);
    assert.deepEqual(
      (await relayConfigOf(namespace)).domains[0]!.credentials.map((c) => `${c.version}:${c.state}`),
      ["3:Active"],
      "1 and 2 are never accepted again",
    );
    assert.deepEqual(await servicePorts(namespace), ["587->submission", "465->submissions"]);
    assert.equal((await relayConfigOf(namespace)).domains[0]!.mode, undefined);
  });

  test("the API server refuses credentials in Forwarded mode with what to do", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace, { credentials: [{ version: 1 }] }));
    await eventually("version 1 issued", async () => ((await getDomain(namespace)).status?.activeVersions === "1" ? true : undefined));
    const result = await kubectl(["apply", "--server-side", "--field-manager=other-team", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        metadata: { name: "example-com", namespace },
        spec: { inbound: { mode: "Forwarded" } },
      }),
    });
    assert.notEqual(result.code, 0, "a manager that does not own the credentials cannot leave them behind in Forwarded mode");
    assert.match(result.stderr, /spec.inbound.credentials is not allowed with mode: Forwarded/);
    // The one-step switch the ADR documents: remove the list and set the mode in one request.
    const patched = await kubectl([
      "patch",
      "smtpdomain",
      "example-com",
      "-n",
      namespace,
      "--type=json",
      "-p",
      JSON.stringify([
        { op: "remove", path: "/spec/inbound/credentials" },
        { op: "add", path: "/spec/inbound/mode", value: "Forwarded" },
      ]),
    ]);
    assert.equal(patched.code, 0, patched.stderr);
    await eventually("version 1 revoked by the switch", async () =>
      (await getDomain(namespace)).status?.revokedVersions?.includes(1) ? true : undefined,
    );
  });
});
