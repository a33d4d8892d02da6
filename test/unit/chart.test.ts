// The chart's values, by rendering: helm template needs no cluster, so each
// knob a platform team sets is checked here, fast, against what it renders.
// (test/e2e/chart.test.ts installs the chart and runs its operator.)
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseAllDocuments, stringify } from "yaml";
import { caRules, leaseRulesFor, operatorRules, type PolicyRule } from "../../operator/rbac.js";
import { parseFlags } from "../../operator/flags.js";
import { helmOffline } from "../support/helm.js";
import { tempDir } from "../support/mail.js";

const chart = "charts/smtp-connector";
const namespace = "smtpc-system";

interface Rendered {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  roleRef?: { name: string };
  subjects?: { name: string; namespace: string }[];
}

async function render(values: Record<string, unknown> = {}, release = "smtpc", extra: string[] = []): Promise<Rendered[]> {
  const file = join(tempDir("chart-values"), "values.yaml");
  writeFileSync(file, stringify(values));
  const result = await helmOffline(["template", release, chart, "--namespace", namespace, "-f", file, ...extra]);
  assert.equal(result.code, 0, result.stderr);
  return parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as Rendered)
    .filter((d) => d);
}

async function refused(values: Record<string, unknown>): Promise<string> {
  const file = join(tempDir("chart-values"), "values.yaml");
  writeFileSync(file, stringify(values));
  const result = await helmOffline(["template", "smtpc", chart, "-f", file]);
  assert.notEqual(result.code, 0, `accepted: ${JSON.stringify(values)}`);
  return result.stderr;
}

const one = (docs: Rendered[], kind: string) => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]!;
};
const podSpec = (docs: Rendered[]) => one(docs, "Deployment").spec.template.spec;
const operator = (docs: Rendered[]) => podSpec(docs).containers[0];
const arg = (docs: Rendered[], flag: string) =>
  (operator(docs).args as string[]).find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);

describe("chart values, rendered", () => {
  test("names derive from the release: two releases share no ServiceAccount, RBAC object, Deployment or budget", async () => {
    const names = (docs: Rendered[]) =>
      docs.filter((d) => d.kind !== "CustomResourceDefinition").map((d) => `${d.kind}/${d.metadata.name}`);
    const a = await render({}, "mail-a");
    const b = await render({}, "mail-b");
    assert.deepEqual(
      names(a).filter((n) => names(b).includes(n)),
      [],
    );
    assert.equal(one(a, "ServiceAccount").metadata.name, "mail-a");
    assert.equal(podSpec(a).serviceAccountName, "mail-a");
    for (const binding of [one(a, "ClusterRoleBinding"), one(a, "RoleBinding")])
      assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: "mail-a", namespace }]);
    // The Lease is the operator's fixed name in the release namespace: releases in two namespaces get two.
    assert.equal(arg(a, "--leader-election-namespace"), namespace);

    const overridden = await render({ fullnameOverride: "smtpc-prod" }, "whatever");
    assert.ok(
      names(overridden).every((n) => n.split("/")[1]!.startsWith("smtpc-prod")),
      names(overridden).join(" "),
    );
    assert.equal(one(overridden, "Deployment").metadata.name, "smtpc-prod-operator");
  });

  test("serviceAccount: annotations (Workload Identity), a name, or an existing account", async () => {
    const annotated = await render({
      serviceAccount: { annotations: { "iam.gke.io/gcp-service-account": "smtpc@p.iam.gserviceaccount.com" } },
    });
    assert.deepEqual(one(annotated, "ServiceAccount").metadata.annotations, {
      "iam.gke.io/gcp-service-account": "smtpc@p.iam.gserviceaccount.com",
    });
    const existing = await render({ serviceAccount: { create: false, name: "platform-sa" } });
    assert.equal(
      existing.some((d) => d.kind === "ServiceAccount"),
      false,
    );
    assert.equal(podSpec(existing).serviceAccountName, "platform-sa");
    assert.equal(one(existing, "ClusterRoleBinding").subjects![0]!.name, "platform-sa");
  });

  test("image: a digest pins operator and relays; global.imageRegistry replaces the registry or goes in front", async () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const pinned = await render({ image: { digest } });
    assert.equal(operator(pinned).image, `ghcr.io/smtp-connector/smtp-connector@${digest}`);
    assert.equal(arg(pinned, "--relay-image"), operator(pinned).image);

    const mirrored = await render({ global: { imageRegistry: "registry.internal:5000/mirror" } });
    assert.equal(operator(mirrored).image, "registry.internal:5000/mirror/smtp-connector/smtp-connector:0.1.0");
    assert.equal(arg(mirrored, "--relay-image"), operator(mirrored).image);
    const ownRelay = await render({ global: { imageRegistry: "mirror.internal" }, relay: { image: "quay.io/acme/relay:2" } });
    assert.equal(arg(ownRelay, "--relay-image"), "mirror.internal/acme/relay:2");
    const bare = await render({ global: { imageRegistry: "mirror.internal" }, image: { repository: "acme/smtpc" } });
    assert.equal(operator(bare).image, "mirror.internal/acme/smtpc:0.1.0");
  });

  test("pod placement and metadata: priority class, spread (defaulted to this release's pods), labels, annotations", async () => {
    const docs = await render({
      priorityClassName: "platform-critical",
      topologySpreadConstraints: [
        { maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "ScheduleAnyway" },
        {
          maxSkew: 1,
          topologyKey: "kubernetes.io/hostname",
          whenUnsatisfiable: "DoNotSchedule",
          labelSelector: { matchLabels: { own: "blue" } },
        },
      ],
      podLabels: { "cost-center": "mail", "app.kubernetes.io/component": "hijacked" },
      podAnnotations: { "sidecar.istio.io/inject": "false" },
    });
    const spec = podSpec(docs);
    assert.equal(spec.priorityClassName, "platform-critical");
    assert.deepEqual(spec.topologySpreadConstraints[0].labelSelector, { matchLabels: one(docs, "Deployment").spec.selector.matchLabels });
    assert.deepEqual(spec.topologySpreadConstraints[1].labelSelector, { matchLabels: { own: "blue" } });
    const pod = one(docs, "Deployment").spec.template.metadata;
    assert.equal(pod.labels["cost-center"], "mail");
    assert.equal(pod.labels["app.kubernetes.io/component"], "operator", "the selector's labels are not overridden");
    assert.deepEqual(pod.annotations, { "sidecar.istio.io/inject": "false" });
  });

  test("relay.template.pod: the relays' pod template reaches the operator as one flag it accepts; unset, no flag", async () => {
    assert.equal(arg(await render(), "--relay-pod-template"), undefined);
    const pod = {
      metadata: { labels: { "cost-center": "mail" }, annotations: { "sidecar.istio.io/inject": "false" } },
      imagePullSecrets: [{ name: "registry" }],
      tolerations: [{ key: "dedicated", operator: "Equal", value: 'mail "pool"', effect: "NoSchedule" }],
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "DoNotSchedule" }],
      priorityClassName: "mail-critical",
      securityContext: { runAsUser: 1000650000 },
    };
    const flag = arg(await render({ relay: { template: { pod } } }), "--relay-pod-template");
    assert.deepEqual(parseFlags([`--relay-pod-template=${flag}`]).relayPodTemplate, pod);
    assert.match(await refused({ relay: { template: { pod: { tolerance: [] } } } }), /tolerance/);
    assert.match(await refused({ relay: { template: { pod: { securityContext: { privileged: true } } } } }), /privileged/);
  });

  test("operator.relayMessageLimits: the maximums a domain may set reach the operator's flags", async () => {
    const defaults = await render();
    assert.equal(arg(defaults, "--relay-max-message-size"), "25Mi");
    assert.equal(arg(defaults, "--relay-max-recipients"), "50");
    const raised = await render({ operator: { relayMessageLimits: { maxMessageSize: "100Mi", maxRecipients: 500 } } });
    const flags = parseFlags([
      "--relay-max-message-size",
      arg(raised, "--relay-max-message-size")!,
      "--relay-max-recipients",
      arg(raised, "--relay-max-recipients")!,
    ]);
    assert.deepEqual(flags.relayLimitCaps, { maxMessageBytes: 100 * 1024 * 1024, maxRecipients: 500 });
    assert.match(await refused({ operator: { relayMessageLimits: { maxMessageSize: "lots", maxRecipients: 50 } } }), /maxMessageSize/);
  });

  test("operator.heap: V8's old space is a share of the container's memory limit, with a small young generation", async () => {
    const command = async (values: Record<string, unknown>) => operator(await render(values)).command as string[];
    const defaults = await command({});
    assert.deepEqual(defaults, ["node", "--max-old-space-size-percentage=50", "--max-semi-space-size=2", "dist/operator/main.js"]);
    // The flags as the pinned Node takes them (an older Node refuses the percentage, and would not start).
    const started = spawnSync(process.execPath, [...defaults.slice(1, -1), "-e", "process.exit(0)"], { encoding: "utf8" });
    assert.equal(started.status, 0, started.stderr);
    // With no memory limit a percentage would be of the node's memory: no such flag then.
    assert.deepEqual(await command({ resources: { limits: null } }), ["node", "--max-semi-space-size=2", "dist/operator/main.js"]);
    assert.deepEqual(await command({ operator: { heap: { limitPercent: 0, semiSpaceMiB: 0 } } }), ["node", "dist/operator/main.js"]);
    assert.deepEqual((await command({ operator: { heap: { limitPercent: 40 } } })).slice(1, 2), ["--max-old-space-size-percentage=40"]);
    assert.match(await refused({ operator: { heap: { limitPercent: 150 } } }), /limitPercent/);
    // A fraction renders as 1e-09 (Node then ignores it), and a share this small leaves a heap the operator dies in
    // at startup: 0 or a whole percentage from 20.
    for (const limitPercent of [1e-9, 0.5, 5, 19, 20.5]) {
      assert.match(await refused({ operator: { heap: { limitPercent } } }), /limitPercent/, `limitPercent ${limitPercent}`);
    }
    assert.deepEqual((await command({ operator: { heap: { limitPercent: 20 } } })).slice(1, 2), ["--max-old-space-size-percentage=20"]);
  });

  test("extra env, volumes and mounts; security contexts merge with the restricted defaults", async () => {
    const docs = await render({
      extraEnv: [{ name: "NODE_EXTRA_CA_CERTS", value: "/etc/ca/ca.crt" }],
      extraVolumes: [{ name: "ca", configMap: { name: "corporate-ca" } }],
      extraVolumeMounts: [{ name: "ca", mountPath: "/etc/ca", readOnly: true }],
      podSecurityContext: { fsGroup: 65532 },
      securityContext: { runAsNonRoot: true },
    });
    const container = operator(docs);
    assert.deepEqual(
      container.env.map((e: { name: string }) => e.name),
      ["LOG_LEVEL", "POD_NAMESPACE", "NODE_EXTRA_CA_CERTS"],
    );
    assert.deepEqual(podSpec(docs).volumes, [{ name: "ca", configMap: { name: "corporate-ca" } }]);
    assert.deepEqual(container.volumeMounts, [{ name: "ca", mountPath: "/etc/ca", readOnly: true }]);
    assert.deepEqual(podSpec(docs).securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      fsGroup: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      runAsNonRoot: true,
    });
  });

  test("rollout: strategy, revision history, probe timings", async () => {
    const defaults = await render();
    assert.equal(one(defaults, "Deployment").spec.revisionHistoryLimit, 5);
    assert.equal(one(defaults, "Deployment").spec.strategy, undefined);
    assert.deepEqual(operator(defaults).livenessProbe, {
      httpGet: { path: "/healthz", port: "metrics" },
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 1,
      failureThreshold: 3,
    });
    const docs = await render({
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      revisionHistoryLimit: 2,
      livenessProbe: { timeoutSeconds: 5, failureThreshold: 6 },
      readinessProbe: { periodSeconds: 2 },
    });
    assert.deepEqual(one(docs, "Deployment").spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    assert.equal(one(docs, "Deployment").spec.revisionHistoryLimit, 2);
    assert.deepEqual(operator(docs).livenessProbe, {
      httpGet: { path: "/healthz", port: "metrics" },
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 6,
    });
    assert.equal(operator(docs).readinessProbe.periodSeconds, 2);
  });

  test("PodDisruptionBudget: on by default, never blocking a drain of one replica; minAvailable wins", async () => {
    const budget = one(await render(), "PodDisruptionBudget");
    assert.deepEqual(budget.spec, {
      maxUnavailable: 1,
      selector: {
        matchLabels: {
          "app.kubernetes.io/name": "smtp-connector",
          "app.kubernetes.io/instance": "smtpc",
          "app.kubernetes.io/component": "operator",
        },
      },
    });
    assert.equal(
      one(await render({ replicaCount: 2, podDisruptionBudget: { minAvailable: 1 } }), "PodDisruptionBudget").spec.minAvailable,
      1,
    );
    assert.equal(
      (await render({ podDisruptionBudget: { enabled: false } })).some((d) => d.kind === "PodDisruptionBudget"),
      false,
    );
  });

  test("NetworkPolicy (opt-in): metrics in, DNS, API server, relays' control API and the verification MTA out", async () => {
    assert.equal(
      (await render()).some((d) => d.kind === "NetworkPolicy"),
      false,
    );
    const policy = one(
      await render({
        networkPolicy: {
          enabled: true,
          metricsFrom: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }],
          apiServer: { ports: [6443], cidrs: ["10.0.0.1/32"] },
        },
        operator: { verification: { smtp: "mta.helpdesk.svc:2525" } },
      }),
      "NetworkPolicy",
    );
    assert.deepEqual(policy.spec.podSelector.matchLabels, one(await render(), "Deployment").spec.selector.matchLabels);
    assert.deepEqual(policy.spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(policy.spec.ingress, [
      {
        ports: [{ port: "metrics", protocol: "TCP" }],
        from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }],
      },
    ]);
    const egress = policy.spec.egress as { ports?: { port: number }[]; to?: unknown[] }[];
    const ports = egress.map((rule) => (rule.ports ?? []).map((p) => p.port).join(","));
    assert.deepEqual(ports, ["53,53", "6443", "8443", "2525"]);
    assert.deepEqual(egress[1]!.to, [{ ipBlock: { cidr: "10.0.0.1/32" } }]);
    assert.deepEqual((egress[2]!.to as any[])[0].podSelector.matchLabels, {
      "app.kubernetes.io/name": "smtp-connector-relay",
      "app.kubernetes.io/managed-by": "smtp-connector",
    });
  });

  test("metrics.serviceMonitor.namespace: the monitors live there and select the release namespace", async () => {
    const docs = await render({ metrics: { serviceMonitor: { enabled: true, namespace: "monitoring" } } });
    const monitor = one(docs, "ServiceMonitor");
    assert.equal(monitor.metadata.namespace, "monitoring");
    assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: [namespace] });
    assert.equal(one(docs, "PodMonitor").metadata.namespace, "monitoring");
    assert.equal(one(await render({ metrics: { serviceMonitor: { enabled: true } } }), "ServiceMonitor").metadata.namespace, namespace);
  });

  test("watchNamespaces: a Role per watched namespace and the CA Secret by name, no ClusterRole; the operator told which", async () => {
    const clusterWide = await render();
    assert.equal(one(clusterWide, "ClusterRole").metadata.name, "smtpc-operator");
    assert.equal(arg(clusterWide, "--watch-namespaces"), undefined);

    const scoped = await render({ watchNamespaces: ["team-a", "team-b"], operator: { caSecretName: "my-ca" } });
    assert.deepEqual(
      scoped.filter((d) => d.kind.startsWith("Cluster")),
      [],
      "nothing cluster-wide",
    );
    assert.equal(arg(scoped, "--watch-namespaces"), "team-a,team-b");
    const roles = scoped.filter((d) => d.kind === "Role") as (Rendered & { rules: PolicyRule[] })[];
    for (const watched of ["team-a", "team-b"]) {
      const role = roles.find((r) => r.metadata.namespace === watched);
      assert.deepEqual(role?.rules, operatorRules, `${watched}: the operator's rules`);
      const binding = scoped.find((d) => d.kind === "RoleBinding" && d.metadata.namespace === watched);
      assert.equal(binding?.roleRef?.name, role?.metadata.name);
      assert.deepEqual(binding?.subjects, [{ kind: "ServiceAccount", name: "smtpc", namespace }]);
    }
    const ca = roles.find((r) => r.metadata.namespace === namespace && r.rules.some((rule) => rule.resources.includes("secrets")));
    assert.deepEqual(ca?.rules, caRules("my-ca"), "the CA Secret: read and rotated (patch) by name, created once");
    assert.ok(
      roles.some((r) => r.metadata.namespace === namespace && r.rules.some((rule) => rule.resources.includes("leases"))),
      "the leader Lease's Role stays",
    );
    assert.match(await refused({ watchNamespaces: ["Team_A"] }), /watchNamespaces/);
  });

  test("leaderElection.leaseName: the flag and the Role's one resourceName follow it", async () => {
    const docs = await render({ leaderElection: { enabled: true, leaseName: "mail-b-operator" } });
    assert.equal(arg(docs, "--lease-name"), "mail-b-operator");
    const lease = docs.find(
      (d) => d.kind === "Role" && (d as Rendered & { rules: PolicyRule[] }).rules.some((r) => r.resources.includes("leases")),
    ) as (Rendered & { rules: PolicyRule[] }) | undefined;
    assert.deepEqual(lease?.rules, leaseRulesFor("mail-b-operator"));
    assert.match(await refused({ leaderElection: { leaseName: "Mail_B" } }), /leaseName/);
  });

  test("the schema refuses what would render a broken object, naming the value", async () => {
    for (const [values, field] of [
      [{ image: { digest: "latest" } }, "digest"],
      [{ livenessProbe: { timeoutSeconds: 0 } }, "timeoutSeconds"],
      [{ livenessProbe: { path: "/" } }, "path"],
      [{ strategy: { type: "BlueGreen" } }, "type"],
      [{ podDisruptionBudget: { maxUnavailable: "half" } }, "maxUnavailable"],
      [{ serviceAccount: { name: "Not_A_Name" } }, "name"],
      [{ topologySpreadConstraints: [{ maxSkew: 1 }] }, "topologyKey"],
      [{ global: { imageRegistry: "https://mirror" } }, "imageRegistry"],
    ] as const) {
      assert.match(await refused(values), new RegExp(field));
    }
  });

  test("forwarded mode: trusted ARC sealers (default the two cloud services', [] for none) and DNS servers become the operator's flags", async () => {
    const defaults = await render();
    assert.equal(arg(defaults, "--trusted-arc-sealers"), "microsoft.com,google.com");
    assert.equal(arg(defaults, "--forwarded-dns-servers"), undefined, "the relay pods' own resolver");
    const set = await render({
      operator: { forwarded: { trustedArcSealers: ["microsoft.com"], dnsServers: ["10.96.0.10", "10.96.0.11:53"] } },
    });
    assert.equal(arg(set, "--trusted-arc-sealers"), "microsoft.com");
    assert.equal(arg(set, "--forwarded-dns-servers"), "10.96.0.10,10.96.0.11:53");
    assert.equal(
      arg(await render({ operator: { forwarded: { trustedArcSealers: [] } } }), "--trusted-arc-sealers"),
      "",
      "explicitly none, not the flag's default",
    );
    for (const values of [
      { operator: { forwarded: { trustedArcSealers: ["*.google.com"] } } },
      { operator: { forwarded: { trustedArcSealers: ["Microsoft.com"] } } },
      { operator: { forwarded: { dnsServers: ["dns.example"] } } },
      { operator: { forwarded: { dnsServers: ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9"] } } },
      { operator: { forwarded: { sealers: ["google.com"] } } },
    ]) {
      assert.match(await refused(values), /forwarded/);
    }
  });

  test("relay.allowedHostnameSuffixes becomes --allowed-hostname-suffixes; wildcards and single labels are refused", async () => {
    assert.equal(arg(await render(), "--allowed-hostname-suffixes"), undefined, "none: only the default relay host names");
    assert.equal(
      arg(await render({ relay: { allowedHostnameSuffixes: ["relay.example.com", "mail.example.org"] } }), "--allowed-hostname-suffixes"),
      "relay.example.com,mail.example.org",
    );
    for (const suffix of ["*.example.com", "com", "Relay.Example.com"]) {
      assert.match(await refused({ relay: { allowedHostnameSuffixes: [suffix] } }), /allowedHostnameSuffixes/);
    }
  });

  test("kubeVersion: the CRDs' isIP/isCIDR rules need 1.31, so 1.30 is refused", async () => {
    assert.ok((await render({}, "smtpc", ["--kube-version", "1.31.0"])).length > 0);
    const result = await helmOffline(["template", "smtpc", chart, "--kube-version", "1.30.0"]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /kubeVersion: >=1\.31\.0-0/);
  });
});
