// The SmtpDomain reconciler against the real API server: credentials issued
// into versioned Secrets, the relay config (checked with the relay's own
// loader: the contract), the relay objects, status, rotation, drift repair,
// conflicts, zero writes at steady state, and garbage collection. Every
// condition reason is unit-tested from plain objects (test/unit/domain-reconcile-plan.test.ts).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import type { Controller } from "../../operator/controller.js";
import { passwordDigest } from "../../relay/contract/digests.js";
import { e2eClients } from "../support/e2e.js";
import { assertReconcileWritesNothing, startTestController } from "../support/operator-rbac.js";
import {
  applyManifests,
  deleteDomainsAtEnd,
  conditionOf,
  connect,
  eventually,
  freshNamespace,
  kubectl,
  listEvents,
  namespaceWithRelayTls,
  readRelayConfig,
  readSmtpDomain,
  readSupportAddress,
  secretText,
  waitForCondition,
} from "../support/kube.js";
import { loginSecretManifest, smtpDomainManifest, supportAddressManifest } from "../support/manifests.js";

/** example-com with `credentials`, a week's grace period, and two relay replicas serving relay-tls. */
const domainManifest = (namespace: string, credentials: object[] = [{ version: 1 }]) =>
  smtpDomainManifest(namespace, {
    credentials,
    inbound: { gracePeriod: "168h" },
    relay: { replicas: 2, tls: { secretName: "relay-tls" } },
  });

const address = (namespace: string, name: string, mail: string) =>
  supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } }, { name, address: mail });

describe("SmtpDomain reconciler", () => {
  let controller: Controller;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    ({ core, apps, custom } = await e2eClients());
    // The operator runs with the chart's RBAC, not as admin.
    controller = await startTestController();
  });
  after(() => controller.stop());

  const getDomain = (namespace: string) => readSmtpDomain(custom, namespace);
  const condition = conditionOf;
  const relayConfigOf = (namespace: string) => readRelayConfig(core, namespace);
  /** Until status.activeVersions is `versions` (e.g. "1,2"); resolves to the domain then. */
  const activeVersions = (namespace: string, versions: string) =>
    eventually(`status.activeVersions ${versions}`, async () => {
      const d = await getDomain(namespace);
      return d.status?.activeVersions === versions ? d : undefined;
    });

  async function setup(t: { after(fn: () => Promise<void> | void): void }) {
    const namespace = await namespaceWithRelayTls(t, "op");
    deleteDomainsAtEnd(t, namespace);
    return namespace;
  }

  test("issues credentials, renders the relay and reports status", async (t) => {
    const namespace = await setup(t);
    await applyManifests(loginSecretManifest(namespace, "outbound", { username: "support@example.com", password: "x" }));
    await applyManifests(domainManifest(namespace));
    await applyManifests(address(namespace, "support", "support@example.com"));
    await applyManifests(address(namespace, "elsewhere", "support@other.org"));

    const domain = await waitForCondition("the domain's status", () => getDomain(namespace), "AddressesConfigured", { status: "True" });
    assert.equal(condition(domain, "CredentialsIssued")?.status, "True");
    assert.equal(condition(domain, "RelayAvailable")?.reason, "Progressing", "no kubelet runs here, so no replica becomes available");
    assert.equal(condition(domain, "Ready")?.status, "False");
    assert.equal(condition(domain, "Reconciling")?.status, "True");
    assert.equal(condition(domain, "Stalled"), undefined, "Stalled is present only while True");
    assert.equal(domain.status?.observedGeneration, domain.metadata.generation);
    assert.equal(domain.status?.activeVersions, "1");
    assert.equal(domain.status?.addresses, 1);

    const secret = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    const username = secretText(secret, "username");
    const password = secretText(secret, "password");
    assert.ok(password.length >= 40, "a high-entropy password");
    assert.match(secretText(secret, "postfix-main.cf"), new RegExp(`smtp_sasl_password_maps = inline:\\{ \\[.*\\]:587=${username}:`));
    assert.equal(secret.metadata?.ownerReferences?.[0]?.uid, domain.metadata.uid);
    assert.equal(domain.status?.credentials?.[0]?.secretName, "example-com-inbound-v1");

    const config = await relayConfigOf(namespace);
    assert.deepEqual(config.domains[0]!.addresses, ["support@example.com"]);
    assert.deepEqual(config.domains[0]!.credentials, [{ version: 1, username, passwordSha256: passwordDigest(password), state: "Active" }]);
    const configText = secretText(await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }), "relay.yaml");
    assert.equal(configText.includes(password), false, "the relay config holds digests only");

    const deployment = await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" });
    const pod = deployment.spec!.template.spec!;
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(pod.containers[0]!.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(pod.containers[0]!.securityContext?.capabilities?.drop, ["ALL"]);
    assert.deepEqual(pod.containers[0]!.command, ["node", "dist/relay/main.js", "--config", "/etc/smtp-connector/config/relay.yaml"]);
    const service = await core.readNamespacedService({ namespace, name: "example-com-relay" });
    assert.deepEqual(
      service.spec?.ports?.map((p) => p.port),
      [587, 465],
    );
    // Behind 587/465 the relay listens on unprivileged ports only, so it binds with no capabilities on any runtime (ADR 0012).
    assert.deepEqual(
      service.spec?.ports?.map((p) => p.targetPort),
      ["submission", "submissions"],
    );
    assert.deepEqual(Object.fromEntries(pod.containers[0]!.ports!.map((p) => [p.name, p.containerPort])), {
      submission: 8587,
      submissions: 8465,
      health: 8080,
      "internal-smtp": 2587,
      control: 8443,
    });
    // The EndpointSlice controller copies the internal Service's labels onto its slices, so the operator's
    // label-selected informer (where each relay pod's control API is read from) sees them. No pod runs
    // here, so the slice lists none: the operator then asks the Service's URL.
    await eventually("the internal Service's EndpointSlice, with our label", async () => {
      const listed = await kubectl([
        "get",
        "endpointslices",
        "-n",
        namespace,
        "-l",
        "kubernetes.io/service-name=example-com-relay-internal,app.kubernetes.io/managed-by=smtp-connector",
        "-o",
        "name",
      ]);
      return listed.stdout.trim() ? true : undefined;
    });
    const pdb = await kubectl(["get", "pdb", "example-com-relay", "-n", namespace, "-o", "name"]);
    assert.equal(pdb.code, 0, pdb.stderr);
    const netpol = await kubectl(["get", "networkpolicy", "example-com-relay", "-n", namespace, "-o", "json"]);
    assert.equal(netpol.code, 0, netpol.stderr);
    // The health port is open to the cluster only: `from` must survive the apply.
    assert.deepEqual(JSON.parse(netpol.stdout).spec.ingress[1].from, [{ namespaceSelector: {} }]);
    // The customer-facing rule names the pod's ports, where traffic arrives after the Service's mapping.
    assert.deepEqual(JSON.parse(netpol.stdout).spec.ingress[0].ports, [
      { protocol: "TCP", port: 8587 },
      { protocol: "TCP", port: 8465 },
    ]);
    // The control API only from the operator's namespace.
    assert.deepEqual(JSON.parse(netpol.stdout).spec.ingress[2], {
      from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "smtp-connector-system" } } }],
      ports: [{ protocol: "TCP", port: 8443 }],
    });

    // kubectl describe tells the story.
    const described = await eventually("the events in describe", async () => {
      const d = await kubectl(["describe", "smtpdomain", "example-com", "-n", namespace]);
      return /CredentialIssued/.test(d.stdout) && /AddressesServed/.test(d.stdout) ? d.stdout : undefined;
    });
    assert.match(described, /Normal\s+CredentialIssued\s+.*inbound credential version 1 issued into Secret example-com-inbound-v1/);
    const addressEvents = await eventually("the address's events", async () => {
      const reasons = await listEvents(namespace, "involvedObject.name=elsewhere", "reason");
      return reasons.includes("DomainMismatch") ? reasons : undefined;
    });
    assert.match(addressEvents, /DomainMismatch/);

    // Steady state: a resync writes nothing.
    await assertReconcileWritesNothing(controller, `domain/${namespace}/example-com`, "a reconcile of an unchanged world wrote");
  });

  test("relay resources from the spec: written as given, read back canonical, and a resync writes nothing", async (t) => {
    const namespace = await setup(t);
    const manifest = domainManifest(namespace);
    const resources = { requests: { cpu: "0.25", memory: "256Mi" }, limits: { cpu: 1, memory: "1024Mi" } };
    await applyManifests({ ...manifest, spec: { ...manifest.spec, relay: { ...manifest.spec.relay, resources } } });
    const container = await eventually(
      "the relay Deployment",
      async () =>
        (await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }).catch(() => undefined))?.spec?.template.spec
          ?.containers[0],
    );
    assert.deepEqual(JSON.parse(JSON.stringify(container.resources)), {
      requests: { cpu: "250m", memory: "256Mi" },
      limits: { cpu: "1", memory: "1Gi" },
    });

    await assertReconcileWritesNothing(controller, `domain/${namespace}/example-com`, "a reconcile of an unchanged world wrote");

    // Without resources, the defaults again.
    await applyManifests(manifest);
    await eventually("the default resources", async () => {
      const c = (await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" })).spec?.template.spec?.containers[0];
      return JSON.stringify(c?.resources) === JSON.stringify({ limits: { memory: "512Mi" }, requests: { cpu: "100m", memory: "128Mi" } })
        ? true
        : undefined;
    });
  });

  test("relay pod template: pull secret, toleration, spread, placement and metadata reach the Deployment; a resync writes nothing", async (t) => {
    const namespace = await setup(t);
    const manifest = domainManifest(namespace);
    const pod = {
      metadata: { labels: { cost: "customer-a" }, annotations: { "sidecar.istio.io/inject": "false" } },
      imagePullSecrets: [{ name: "registry" }],
      nodeSelector: { "kubernetes.io/os": "linux" },
      tolerations: [{ key: "dedicated", operator: "Equal", value: "mail", effect: "NoSchedule" }],
      affinity: {
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 50, podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: { app: "ingest" } } } },
          ],
        },
      },
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "DoNotSchedule" }],
      priorityClassName: "mail-critical",
    };
    await applyManifests({ ...manifest, spec: { ...manifest.spec, relay: { ...manifest.spec.relay, template: { pod } } } });
    const template = await eventually(
      "the relay Deployment",
      async () => (await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }).catch(() => undefined))?.spec?.template,
    );
    const spec = JSON.parse(JSON.stringify(template.spec)) as Record<string, unknown>;
    assert.deepEqual(spec.imagePullSecrets, pod.imagePullSecrets);
    assert.deepEqual(spec.nodeSelector, pod.nodeSelector);
    assert.deepEqual(spec.tolerations, pod.tolerations);
    assert.deepEqual(spec.affinity, pod.affinity);
    assert.equal(spec.priorityClassName, "mail-critical");
    // The constraint named no pods: it counts this domain's relay pods.
    assert.deepEqual(spec.topologySpreadConstraints, [
      {
        ...pod.topologySpreadConstraints[0],
        labelSelector: { matchLabels: { "app.kubernetes.io/name": "smtp-connector-relay", "app.kubernetes.io/instance": "example-com" } },
      },
    ]);
    assert.equal(template.metadata?.labels?.cost, "customer-a");
    assert.equal(template.metadata?.labels?.["app.kubernetes.io/instance"], "example-com");
    assert.equal(template.metadata?.annotations?.["sidecar.istio.io/inject"], "false");

    await assertReconcileWritesNothing(controller, `domain/${namespace}/example-com`, "a reconcile of an unchanged world wrote");

    // The API server refuses what would take the pods away from their Deployment, or a toleration that means nothing.
    for (const [bad, message] of [
      [{ metadata: { labels: { "app.kubernetes.io/instance": "other" } } }, /must not set the operator's own pod labels/],
      [{ tolerations: [{ operator: "Equal", value: "x" }] }, /without a key must have operator Exists/],
      [{ securityContext: { runAsUser: 0 } }, /runAsUser/],
    ] as const) {
      await assert.rejects(
        applyManifests({ ...manifest, spec: { ...manifest.spec, relay: { ...manifest.spec.relay, template: { pod: bad } } } }),
        message,
      );
    }

    // Without a template, the built-in spread over nodes and zones, and none of the placement.
    await applyManifests(manifest);
    const plain = await eventually("the default template", async () => {
      const s = (await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" })).spec?.template.spec;
      return s?.tolerations === undefined ? s : undefined;
    });
    assert.deepEqual(
      plain.topologySpreadConstraints?.map((c) => [c.topologyKey, c.whenUnsatisfiable]),
      [
        ["kubernetes.io/hostname", "ScheduleAnyway"],
        ["topology.kubernetes.io/zone", "ScheduleAnyway"],
      ],
    );
    assert.equal(plain.imagePullSecrets, undefined);
    assert.equal(plain.priorityClassName, undefined);
  });

  test("PROXY protocol: the trusted ranges reach the relay config and the NetworkPolicy; /0 and non-ranges are refused", async (t) => {
    const namespace = await setup(t);
    const manifest = domainManifest(namespace);
    const spec = { ...manifest.spec, inbound: { ...manifest.spec.inbound, allowedSourceRanges: ["203.0.113.0/24"] } };
    await applyManifests({
      ...manifest,
      spec: { ...spec, relay: { ...spec.relay, proxyProtocol: { trustedRanges: ["10.0.12.0/24", "192.0.2.9"] } } },
    });
    const config = await eventually("the relay config with the trusted ranges", async () => {
      const c = await relayConfigOf(namespace).catch(() => undefined);
      return c?.proxyProtocol ? c : undefined;
    });
    // The relay checks the client each header names against allowedSourceRanges (the NetworkPolicy sees the balancer).
    assert.deepEqual(config.proxyProtocol, { trustedRanges: ["10.0.12.0/24", "192.0.2.9"], allowedClients: ["203.0.113.0/24"] });
    const policy = await kubectl([
      "get",
      "networkpolicy",
      "example-com-relay",
      "-n",
      namespace,
      "-o",
      "jsonpath={.spec.ingress[0].from[*].ipBlock.cidr}",
    ]);
    assert.equal(policy.stdout.trim(), "203.0.113.0/24 10.0.12.0/24 192.0.2.9/32");
    for (const [ranges, message] of [
      [["0.0.0.0/0"], /must not contain 0\.0\.0\.0\/0/],
      [["::/0"], /must not contain 0\.0\.0\.0\/0 or ::\/0/],
      [["lb.internal"], /IP addresses or CIDR ranges/],
    ] as const) {
      await assert.rejects(
        applyManifests({
          ...manifest,
          spec: { ...manifest.spec, relay: { ...manifest.spec.relay, proxyProtocol: { trustedRanges: ranges } } },
        }),
        message,
      );
    }
  });

  test("message limits: the domain's, capped by the installation's maximum, reach the relay config and status; out-of-range values are refused", async (t) => {
    const namespace = await setup(t);
    const manifest = domainManifest(namespace);
    // The test operator runs with the default maximums (25Mi, 50): a domain may lower them, not raise them.
    await applyManifests({
      ...manifest,
      spec: { ...manifest.spec, relay: { ...manifest.spec.relay, limits: { maxMessageSize: "10Mi", maxRecipients: 500 } } },
    });
    const domain = await eventually("status.relay.limits", async () => {
      const d = await getDomain(namespace);
      return d.status?.relay?.limits?.maxMessageBytes === 10 * 1024 * 1024 ? d : undefined;
    });
    assert.deepEqual(domain.status?.relay?.limits, { maxMessageBytes: 10 * 1024 * 1024, maxRecipients: 50 });
    // Asked for 500 recipients, given 50: said in a condition that stays True, and in one Warning Event.
    const told = domain.status?.conditions?.find((c) => c.type === "LimitsApplied");
    assert.deepEqual([told?.status, told?.reason], ["True", "LimitCapped"]);
    assert.match(told!.message, /maxRecipients 500 requested, 50 applied/);
    const cappedEvents = async () => {
      const e = await kubectl([
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.kind=SmtpDomain,reason=LimitCapped",
        "-o",
        "jsonpath={range .items[*]}{.type} {.message}{'\\n'}{end}",
      ]);
      return e.stdout.trim() ? e.stdout.trim().split("\n") : [];
    };
    const capped = await eventually("the LimitCapped Event", async () => ((await cappedEvents()).length > 0 ? cappedEvents() : undefined));
    assert.match(capped[0]!, /^Warning .*maxRecipients 500 requested, 50 applied/);
    const config = await relayConfigOf(namespace);
    assert.equal(config.limits.maxMessageBytes, 10 * 1024 * 1024);
    assert.equal(config.limits.maxRecipients, 50);
    for (const [limits, message] of [
      [{ maxMessageSize: "2Gi" }, /maxMessageSize must be a size from 1Ki to 1Gi/],
      [{ maxMessageSize: "lots" }, /maxMessageSize must be a size/],
      [{ maxRecipients: 0 }, /maxRecipients/],
    ] as const) {
      await assert.rejects(applyManifests({ ...manifest, spec: { ...manifest.spec, relay: { ...manifest.spec.relay, limits } } }), message);
    }
    // The domain has been reconciled again meanwhile (its relay's status changes): still one Event.
    assert.equal((await cappedEvents()).length, 1, "once per change, not on every reconcile");
  });

  test("rotation: a new version beside the old, then revocation", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace));
    await activeVersions(namespace, "1");
    const v1 = secretText(await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }), "password");

    await applyManifests(domainManifest(namespace, [{ version: 1 }, { version: 2 }]));
    const rotated = await activeVersions(namespace, "1,2");
    assert.ok(rotated.status?.credentials?.[0]?.expiresAt, "the older version gets an expiry from the grace period");
    assert.equal(
      secretText(await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }), "password"),
      v1,
      "version 1 is never regenerated",
    );
    assert.deepEqual(
      (await relayConfigOf(namespace)).domains[0]!.credentials.map((c) => `${c.version}:${c.state}`),
      ["1:Active", "2:Active"],
    );

    await applyManifests(domainManifest(namespace, [{ version: 1, state: "Revoked" }, { version: 2 }]));
    await eventually("version 1 revoked in the relay config", async () => {
      const config = await relayConfigOf(namespace);
      return config.domains[0]!.credentials.map((c) => `${c.version}:${c.state}`).join(" ") === "1:Revoked 2:Active" ? true : undefined;
    });
    // Status is written after the config in the same reconcile: wait for it too.
    await activeVersions(namespace, "2");
  });

  test("revocation is for good: a revoked version re-added by a later sync is refused, never reactivated or reissued", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace, [{ version: 1 }, { version: 2 }]));
    await activeVersions(namespace, "1,2");
    const v1 = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    const digest = passwordDigest(secretText(v1, "password"));
    await applyManifests(domainManifest(namespace, [{ version: 1, state: "Revoked" }, { version: 2 }]));
    await eventually("version 1 revoked in the relay config", async () =>
      (await relayConfigOf(namespace)).domains[0]!.credentials.find((c) => c.version === 1)?.state === "Revoked" ? true : undefined,
    );
    // A GitOps repository that still lists version 1 the old way: the entry goes, then comes back Active.
    await applyManifests(domainManifest(namespace, [{ version: 2 }]));
    await eventually("version 1 gone from the relay config", async () =>
      (await relayConfigOf(namespace)).domains[0]!.credentials.some((c) => c.version === 1) ? undefined : true,
    );
    await applyManifests(domainManifest(namespace, [{ version: 1 }, { version: 2 }]));
    const refused = await eventually("the re-added version reconciled", async () => {
      const d = await getDomain(namespace);
      const reconciled = d.metadata.generation === d.status?.observedGeneration && d.status?.credentials?.some((c) => c.version === 1);
      return reconciled && (await relayConfigOf(namespace)).domains[0]!.credentials.some((c) => c.version === 1) ? d : undefined;
    });
    // The relay refuses the old password: version 1 stays Revoked.
    const entries = (await relayConfigOf(namespace)).domains[0]!.credentials;
    assert.deepEqual(
      entries.map((c) => `${c.version}:${c.state}`),
      ["1:Revoked", "2:Active"],
    );
    assert.equal(entries[0]!.passwordSha256, digest);
    assert.equal(refused.status?.activeVersions, "2");
    assert.equal(condition(refused, "CredentialsIssued")?.reason, "VersionRevoked");
    assert.equal(refused.status?.credentials?.find((c) => c.version === 1)?.state, "Revoked");
    assert.equal(condition(refused, "Stalled")?.reason, "VersionRevoked", "GitOps tools show the refused sync");
    assert.match(condition(refused, "CredentialsIssued")!.message, /version 1 was revoked.*add version 3/);
    // Recorded twice: in status, and on the Secret (which a backup keeps with it).
    assert.ok(refused.status?.revokedVersions?.includes(1));
    assert.ok(
      (await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" })).metadata?.annotations?.[
        "smtpconnector.dev/revoked-at"
      ],
    );
    await eventually("a Warning Event", async () =>
      (await listEvents(namespace, "involvedObject.name=example-com,type=Warning", "reason")).includes("VersionRevoked") ? true : undefined,
    );
    const revokedEvents = await listEvents(namespace, "involvedObject.name=example-com,reason=CredentialRevoked");
    assert.equal(
      revokedEvents.match(/inbound credential version 1 is revoked/g)?.length,
      1,
      "the revocation is announced once, not again on the refused re-addition",
    );

    // Its Secret deleted as well: the record in status still refuses it, and no new password is issued for version 1.
    await applyManifests(domainManifest(namespace, [{ version: 2 }]));
    await eventually("version 1 gone again", async () =>
      (await relayConfigOf(namespace)).domains[0]!.credentials.some((c) => c.version === 1) ? undefined : true,
    );
    await core.deleteNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    await applyManifests(domainManifest(namespace, [{ version: 1 }, { version: 2 }]));
    await waitForCondition(
      "refused again",
      () => getDomain(namespace),
      "CredentialsIssued",
      (issued, d) => issued?.reason === "VersionRevoked" && d.metadata.generation === d.status?.observedGeneration,
    );
    await controller.queue.idle();
    assert.equal(
      await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }).catch(() => undefined),
      undefined,
      "version 1 is never reissued",
    );
    assert.deepEqual(
      (await relayConfigOf(namespace)).domains[0]!.credentials.map((c) => `${c.version}:${c.state}`),
      ["2:Active"],
    );
  });

  test("a credential Secret edited by hand is reported, never adopted: the relay keeps accepting only the issued password", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace, [{ version: 1 }, { version: 2 }]));
    await activeVersions(namespace, "1,2");
    const issued = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    const username = secretText(issued, "username");
    const password = secretText(issued, "password");
    const digestOf = async () => (await relayConfigOf(namespace)).domains[0]!.credentials.find((c) => c.version === 1)?.passwordSha256;
    assert.equal(await digestOf(), passwordDigest(password));
    const reportedModified = () =>
      waitForCondition("CredentialsIssued=False SecretModified", () => getDomain(namespace), "CredentialsIssued", {
        reason: "SecretModified",
      });
    const replace = (data: Record<string, string>) =>
      core.patchNamespacedSecret({
        namespace,
        name: "example-com-inbound-v1",
        body: [
          {
            op: "replace",
            path: "/data",
            value: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")])),
          },
        ],
      });
    const snippets = Object.fromEntries(
      Object.keys(issued.data!)
        .filter((k) => k !== "username" && k !== "password")
        .map((k) => [k, secretText(issued, k)]),
    );

    // A changed password: not adopted.
    await replace({ ...snippets, username, password: "chosen-by-hand" });
    const edited = await reportedModified();
    assert.match(
      condition(edited, "CredentialsIssued")!.message,
      /example-com-inbound-v1 \(credentials version 1\) was edited by hand; the relay still accepts only the password issued/,
    );
    assert.equal(condition(edited, "Stalled")?.reason, "SecretModified");
    assert.notEqual(condition(edited, "Ready")?.reason, "SecretModified", "version 2 serves on: Ready is not held back by it");
    await controller.queue.idle();
    assert.equal(await digestOf(), passwordDigest(password), "the relay's digest stays the issued one");
    assert.equal(
      secretText(await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }), "password"),
      "chosen-by-hand",
      "and the operator does not write over it",
    );
    await eventually("a Warning Event", async () =>
      (await listEvents(namespace, "involvedObject.name=example-com,type=Warning", "reason")).includes("SecretModified") ? true : undefined,
    );

    // A removed password: no other password is issued for the version.
    await replace({ ...snippets, username });
    await waitForCondition(
      "the message says what happened",
      () => getDomain(namespace),
      "CredentialsIssued",
      (issued) => /lost its username or password/.test(issued?.message ?? ""),
    );
    await controller.queue.idle();
    const after = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    assert.equal(after.data?.password, undefined, "nothing issued into it");
    assert.equal(await digestOf(), passwordDigest(password));
    const issuedEvents = await listEvents(namespace, "involvedObject.name=example-com,reason=CredentialIssued");
    assert.equal(issuedEvents.match(/version 1 issued/g)?.length, 1, "version 1 was issued once");

    // Put back as issued: reported no more.
    await replace({ ...snippets, username, password });
    await waitForCondition("CredentialsIssued=True again", () => getDomain(namespace), "CredentialsIssued", { status: "True" });

    // A revoked version's Secret may be cleaned up: nothing to report.
    await applyManifests(domainManifest(namespace, [{ version: 1, state: "Revoked" }, { version: 2 }]));
    await activeVersions(namespace, "2");
    await core.deleteNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    // A reconcile reads the Secrets from the API: run one now, after the deletion.
    controller.queue.add(`domain/${namespace}/example-com`);
    await controller.queue.idle();
    assert.equal(condition(await getDomain(namespace), "CredentialsIssued")?.status, "True");
  });

  test("a domain whose every version is revoked is not Ready, with a reason of its own; its addresses follow", async (t) => {
    const namespace = await setup(t);
    await applyManifests(loginSecretManifest(namespace, "outbound", { username: "support@example.com", password: "x" }));
    await applyManifests(domainManifest(namespace, [{ version: 1, state: "Revoked" }]));
    await applyManifests(address(namespace, "support", "support@example.com"));
    const domain = await waitForCondition("Ready=False NoActiveCredential", () => getDomain(namespace), "Ready", {
      reason: "NoActiveCredential",
    });
    assert.equal(condition(domain, "CredentialsIssued")?.status, "False");
    assert.equal(condition(domain, "CredentialsIssued")?.reason, "NoActiveCredential");
    assert.equal(domain.status?.activeVersions, "");
    const support = await waitForCondition("the address's DomainReady=False", () => readSupportAddress(custom, namespace), "DomainReady", {
      status: "False",
    });
    assert.match(condition(support, "DomainReady")!.message, /revoked/);
  });

  test("drift is repaired: a deleted Secret, an edited Deployment, a deleted NetworkPolicy and PodDisruptionBudget come back", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace));
    await eventually("the relay config", () => core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }));
    await eventually("the first reconcile's status", async () => ((await getDomain(namespace)).status?.relay ? true : undefined));
    await controller.queue.idle();
    await core.deleteNamespacedSecret({ namespace, name: "example-com-relay-config" });
    await eventually("the relay config to come back", () => core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }));
    await kubectl(["scale", "deployment/example-com-relay", "-n", namespace, "--replicas=5"]);
    await eventually("replicas restored to 2", async () =>
      (await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" })).spec?.replicas === 2 ? true : undefined,
    );
    // Watched, so repaired at once rather than at the next resync (the test controller's is minutes away).
    for (const kind of ["networkpolicy", "poddisruptionbudget"]) {
      assert.equal((await kubectl(["delete", kind, "example-com-relay", "-n", namespace])).code, 0);
      await eventually(
        `the ${kind} to come back`,
        async () => ((await kubectl(["get", kind, "example-com-relay", "-n", namespace])).code === 0 ? true : undefined),
        15_000,
      );
    }
    // Each repair is said on the domain.
    const repairs = await eventually("DriftRepaired Events", async () => {
      const e = await kubectl([
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=example-com,reason=DriftRepaired",
        "-o",
        'jsonpath={range .items[*]}{.message}{"\\n"}{end}',
      ]);
      return e.stdout.split("\n").filter(Boolean).length >= 4 ? e.stdout : undefined;
    });
    assert.match(repairs, /Secret example-com-relay-config was deleted: restored/);
    assert.match(repairs, /Deployment example-com-relay differed from what the operator renders/);
    assert.match(repairs, /NetworkPolicy example-com-relay was deleted/);
    assert.match(repairs, /PodDisruptionBudget example-com-relay was deleted/);
  });

  test("DKIM: generated keys, their records in status, and the relay signs only with a confirmed key", async (t) => {
    const namespace = await setup(t);
    const withKeys = (keys: object[]) => ({ ...domainManifest(namespace), spec: { ...domainManifest(namespace).spec, dkim: { keys } } });
    await applyManifests(withKeys([{ selector: "rsa1" }, { selector: "ed1", algorithm: "Ed25519" }]));
    const domain = await eventually("two DKIM records in status", async () => {
      const d = await getDomain(namespace);
      return d.status?.dkim?.records?.length === 2 ? d : undefined;
    });
    const [rsa, ed] = domain.status!.dkim!.records!;
    assert.equal(rsa!.name, "rsa1._domainkey.example.com");
    assert.match(rsa!.value, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{300,}$/);
    assert.match(ed!.value, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/=]{44}$/);
    assert.equal(domain.status!.dkim!.pending, "rsa1,ed1");
    assert.ok(domain.status!.dkim!.records!.every((r) => r.signing === false));
    const wide = await kubectl(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "wide"]);
    assert.match(wide.stdout, /DKIM PENDING[\s\S]*rsa1,ed1/);
    // Nothing is signed yet: no key is in the relay's config.
    await eventually("the relay config", () => relayConfigOf(namespace));
    assert.deepEqual((await relayConfigOf(namespace)).domains[0]!.outbound?.dkim ?? [], []);
    const key = secretText(await core.readNamespacedSecret({ namespace, name: "example-com-dkim-rsa1" }), "private.pem");

    // The RSA record is published: the relay signs with it, the Ed25519 one still waits.
    await applyManifests(
      withKeys([
        { selector: "rsa1", recordPublished: true },
        { selector: "ed1", algorithm: "Ed25519" },
      ]),
    );
    await eventually("rsa1 signing", async () =>
      (await relayConfigOf(namespace)).domains[0]!.outbound?.dkim.map((k) => k.selector).join() === "rsa1" ? true : undefined,
    );
    const config = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
    assert.equal(secretText(config, "dkim-rsa1.key"), key, "the key travels next to the config, unchanged");
    assert.equal(config.data?.["dkim-ed1.key"], undefined);
    await eventually("status: rsa1 signing, ed1 pending", async () => {
      const d = await getDomain(namespace);
      return d.status?.dkim?.records?.find((r) => r.selector === "rsa1")?.signing === true && d.status.dkim.pending === "ed1"
        ? true
        : undefined;
    });
    assert.equal(
      secretText(await core.readNamespacedSecret({ namespace, name: "example-com-dkim-rsa1" }), "private.pem"),
      key,
      "a key is never regenerated",
    );
  });

  test("a Secret the operator does not own is never overwritten: the domain reports a conflict", async (t) => {
    const namespace = await setup(t);
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "example-com-inbound-v1" }, stringData: { username: "theirs", password: "theirs" } },
    });
    await applyManifests(domainManifest(namespace));
    const domain = await waitForCondition("CredentialsIssued=False", () => getDomain(namespace), "CredentialsIssued", { status: "False" });
    assert.equal(condition(domain, "CredentialsIssued")?.reason, "SecretConflict");
    assert.equal(condition(domain, "Stalled")?.reason, "SecretConflict");
    const theirs = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    assert.equal(secretText(theirs, "username"), "theirs");
    assert.equal(theirs.metadata?.ownerReferences, undefined);
  });

  test("deleting the domain revokes every credential in the relay first, then everything it owns goes, and nothing else", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace));
    await eventually("the credentials", () => core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }));
    await eventually("the relay", () => apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }));
    assert.deepEqual((await getDomain(namespace)).metadata.finalizers, ["smtpconnector.dev/disconnect"]);

    // Record every version of the relay config while the domain is deleted.
    const seen: string[] = [];
    const { config } = await connect();
    const watch = await new k8s.Watch(config).watch(
      `/api/v1/namespaces/${namespace}/secrets`,
      { fieldSelector: "metadata.name=example-com-relay-config" },
      (_type, object: k8s.V1Secret) => {
        seen.push(secretText(object, "relay.yaml"));
      },
      () => undefined,
    );
    t.after(() => watch.abort());
    // The finalizer's work is visible while it runs.
    const reasons: string[] = [];
    const domainWatch = await new k8s.Watch(config).watch(
      `/apis/smtpconnector.dev/v1alpha1/namespaces/${namespace}/smtpdomains`,
      {},
      (_type, d: SmtpDomain) => {
        const ready = condition(d, "Ready");
        if (ready) reasons.push(ready.reason);
      },
      () => undefined,
    );
    t.after(() => domainWatch.abort());
    await kubectl(["delete", "smtpdomain", "example-com", "-n", namespace, "--wait=false"]);
    await eventually("Ready=False Disconnecting while the finalizer works", () => (reasons.includes("Disconnecting") ? true : undefined));
    const disconnecting = await listEvents(namespace, "involvedObject.name=example-com,reason=Disconnecting");
    assert.match(disconnecting, /being deleted: every credential version is revoked/);
    await eventually("a relay config with every version revoked", () =>
      seen.some((c) => c.includes("state: Revoked") && !c.includes("state: Active")) ? true : undefined,
    );
    await eventually(
      "the owned objects to be garbage-collected",
      async () => {
        const secrets = (await core.listNamespacedSecret({ namespace })).items.map((s) => s.metadata?.name);
        const deployments = (await apps.listNamespacedDeployment({ namespace })).items.length;
        return !secrets.some((s) => s?.startsWith("example-com-")) && deployments === 0 ? secrets : undefined;
      },
      90_000,
    );
    await core.readNamespacedSecret({ namespace, name: "relay-tls" });
  });

  test("a domain deleted while the operator is down waits for it, then is disconnected in order", async (t) => {
    const namespace = await setup(t);
    await applyManifests(domainManifest(namespace));
    await eventually("the relay config", () => core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }));
    await eventually("the finalizer", async () =>
      (await getDomain(namespace)).metadata.finalizers?.includes("smtpconnector.dev/disconnect") ? true : undefined,
    );
    await controller.queue.idle();
    await controller.stop();
    try {
      await kubectl(["delete", "smtpdomain", "example-com", "-n", namespace, "--wait=false"]);
      // Held by the finalizer: nothing is garbage-collected before its credentials are revoked.
      const held = await getDomain(namespace);
      assert.ok(held.metadata.deletionTimestamp);
      const config = secretText(await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }), "relay.yaml");
      assert.match(config, /state: Active/, "the relay config is untouched while nobody can revoke");
    } finally {
      controller = await startTestController();
    }
    await eventually(
      "the domain gone once the operator is back",
      async () => ((await getDomain(namespace).catch(() => undefined)) ? undefined : true),
      30_000,
    );
    await eventually(
      "its objects collected",
      async () =>
        (await core.listNamespacedSecret({ namespace })).items.some((s) => s.metadata?.name?.startsWith("example-com-")) ? undefined : true,
      90_000,
    );
  });

  test("failed API requests are counted by status for the metrics", async (t) => {
    const namespace = await freshNamespace(t, "op");
    const before = controller.cluster.apiErrors.get("422") ?? 0;
    await assert.rejects(
      controller.cluster.apply({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "broken", namespace },
        spec: { replicas: -1 },
      }),
    );
    assert.equal(controller.cluster.apiErrors.get("422"), before + 1);
  });
});
