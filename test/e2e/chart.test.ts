// The Helm chart: lint, what it renders for each choice, and an install onto
// the local control plane with the operator run from the chart's own
// Deployment (its command and arguments, its ServiceAccount's RBAC) connecting
// a domain end to end. Uninstalling keeps the CRDs and the domains; installing
// again disconnects a domain deleted in between.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { operatorRules } from "../../operator/rbac.js";
import { e2eClients, relayReady, inboundOnlyAddress } from "../support/e2e.js";
import { runDeployment, type RunningDeployment } from "../support/deployment-runner.js";
import { applyManifests, eventually, freshNamespace, kubectl, serviceAccountKubeconfig } from "../support/kube.js";
import { helm } from "../support/helm.js";
import { smtpDomainManifest } from "../support/manifests.js";
import { freePort, startSmtpSink, swaksAuth, tempDir, type SmtpSink } from "../support/mail.js";
import { relayPorts } from "../../relay/contract/pod.js";

const chart = "charts/smtp-connector";

interface Rendered {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  rules?: unknown;
}

async function template(...sets: string[]): Promise<Rendered[]> {
  const result = await helm(["template", "smtpc", chart, "--namespace", "smtpc-system", ...sets.flatMap((s) => ["--set", s])]);
  assert.equal(result.code, 0, result.stderr);
  return parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as Rendered)
    .filter((d) => d);
}

type Container = { command: string[]; args: string[]; image: string; securityContext: Record<string, unknown> };
const operatorContainer = (docs: Rendered[]) => {
  const deployment = docs.find((d) => d.kind === "Deployment")!;
  return (deployment.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]!;
};

describe("Helm chart", () => {
  test("helm lint --strict passes", async () => {
    const result = await helm(["lint", "--strict", chart]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  test("renders secure defaults, the operator's exact RBAC, CRDs kept on uninstall; each value does what it says", async () => {
    const docs = await template();
    const container = operatorContainer(docs);
    assert.deepEqual(container.command, ["node", "--max-old-space-size-percentage=50", "--max-semi-space-size=2", "dist/operator/main.js"]);
    assert.equal(container.image, `ghcr.io/smtp-connector/smtp-connector:${JSON.parse(readFileSync("package.json", "utf8")).version}`);
    assert.ok(container.args.includes(`--relay-image=${container.image}`), "one image, the relay's entrypoint in the same image");
    assert.ok(container.args.includes("--ca-secret=smtpc-system/smtp-connector-ca"));
    assert.ok(!container.args.includes("--leader-elect"));
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    const pod = (docs.find((d) => d.kind === "Deployment")!.spec as { template: { spec: { securityContext: Record<string, unknown> } } })
      .template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.deepEqual(docs.find((d) => d.kind === "ClusterRole")?.rules, operatorRules);
    const crds = docs.filter((d) => d.kind === "CustomResourceDefinition");
    assert.deepEqual(crds.map((c) => c.metadata.name).sort(), ["smtpdomains.smtpconnector.dev", "supportaddresses.smtpconnector.dev"]);
    assert.ok(crds.every((c) => c.metadata.annotations?.["helm.sh/resource-policy"] === "keep"));
    assert.equal(
      docs.some((d) => d.kind === "PrometheusRule" || d.kind === "ServiceMonitor"),
      false,
      "monitoring is opt-in",
    );

    assert.ok(operatorContainer(await template("replicaCount=2")).args.includes("--leader-elect"), "two replicas: leader election");
    assert.equal(
      (await template("crds.install=false")).some((d) => d.kind === "CustomResourceDefinition"),
      false,
    );
    const discarded = (await template("crds.keep=false")).filter((d) => d.kind === "CustomResourceDefinition");
    assert.ok(discarded.every((c) => c.metadata.annotations?.["helm.sh/resource-policy"] === undefined));
    const args = operatorContainer(
      await template(
        "operator.systemDomains={helpdesk.example,mail.helpdesk.example}",
        "operator.verification.smtp=mta.helpdesk.svc:25",
        "operator.dnsResolver=10.96.0.10",
      ),
    ).args;
    for (const arg of [
      "--system-domains=helpdesk.example,mail.helpdesk.example",
      "--verification-smtp=mta.helpdesk.svc:25",
      "--dns-resolver=10.96.0.10",
    ])
      assert.ok(args.includes(arg), arg);
    // The account limits: the seed's figures by default, configurable per installation.
    for (const arg of ["--max-domains-per-namespace=4", "--max-addresses-per-domain=50", "--max-addresses-per-namespace=200"])
      assert.ok(container.args.includes(arg), arg);
    const limited = operatorContainer(
      await template(
        "operator.limits.domainsPerNamespace=10",
        "operator.limits.addressesPerDomain=500",
        "operator.limits.addressesPerNamespace=2000",
      ),
    ).args;
    for (const arg of ["--max-domains-per-namespace=10", "--max-addresses-per-domain=500", "--max-addresses-per-namespace=2000"])
      assert.ok(limited.includes(arg), arg);
    assert.notEqual(
      (await helm(["template", "smtpc", chart, "--set", "operator.limits.addressesPerDomain=0"])).code,
      0,
      "the values schema refuses a limit below 1",
    );

    // Monitoring: every metric an alert uses is one the operator or the relay exports.
    const monitored = await template("metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true");
    assert.deepEqual(
      monitored
        .filter((d) => /Monitor|PrometheusRule/.test(d.kind))
        .map((d) => d.kind)
        .sort(),
      ["PodMonitor", "PrometheusRule", "ServiceMonitor"],
    );
    const rules = (monitored.find((d) => d.kind === "PrometheusRule")!.spec as { groups: { rules: { alert: string; expr: string }[] }[] })
      .groups[0]!.rules;
    assert.deepEqual(
      rules.map((r) => r.alert),
      [
        "SmtpConnectorAuthFailureSpike",
        "SmtpConnectorVerificationFailing",
        "SmtpConnectorRelayUnavailable",
        "SmtpConnectorCertificateNotReady",
        "SmtpConnectorRotationLeftHalfDone",
      ],
    );
    const sources = ["relay/ops/metrics.ts", "operator/main.ts"].map((f) => readFileSync(f, "utf8")).join("\n");
    for (const metric of new Set(rules.flatMap((r) => r.expr.match(/smtpc_[a-z_]+/g) ?? [])))
      assert.ok(sources.includes(`"${metric}"`), `${metric} is exported`);

    // The dashboard: a ConfigMap for Grafana's sidecar; every query names an exported metric.
    const dashboardMap = (await template("metrics.grafanaDashboard.enabled=true")).find((d) => d.kind === "ConfigMap") as unknown as {
      metadata: { labels: Record<string, string> };
      data: Record<string, string>;
    };
    assert.equal(dashboardMap.metadata.labels.grafana_dashboard, "1");
    const dashboard = JSON.parse(dashboardMap.data["smtp-connector.json"]!) as { panels: { targets?: { expr: string }[] }[] };
    const queries = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    assert.ok(queries.length >= 10);
    for (const metric of new Set(queries.flatMap((q) => q.match(/smtpc_[a-z_]+?(?=_bucket\b|\{|\)|\s|\[|$)/g) ?? [])))
      assert.ok(sources.includes(`"${metric}"`), `dashboard: ${metric} is exported`);
  });

  test("values are checked by values.schema.json, with a message that names the value", async () => {
    for (const [set, field] of [
      ["replicaCount=0", "replicaCount"],
      ["operator.verification.smtp=no-port", "smtp"],
      ["operator.logLevel=loud", "logLevel"],
      ["unknownValue=1", "unknownValue"],
    ] as const) {
      const result = await helm(["template", "smtpc", chart, "--set", set]);
      assert.notEqual(result.code, 0, set);
      assert.match(result.stderr, new RegExp(field), result.stderr);
    }
  });
});

describe("Helm install, end to end", () => {
  const release = "smtpc";
  const namespace = "smtpc-chart";
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let operator: RunningDeployment | undefined;
  let relay: RunningDeployment | undefined;
  let sink: SmtpSink;

  before(async () => {
    ({ core, apps } = await e2eClients());
    sink = await startSmtpSink();
  });
  after(async () => {
    await relay?.stop();
    await operator?.stop();
    await sink.stop();
    await helm(["uninstall", release, "--namespace", namespace]);
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  });

  test("the operator from the chart's Deployment, under the chart's RBAC, connects a domain; uninstall keeps the CRDs", async (t) => {
    const metricsPort = await freePort();
    // The CRDs may exist from earlier tests: the chart takes them over, as an upgrade from a manual install would.
    const install = (...extra: string[]) =>
      helm([
        "install",
        release,
        chart,
        "--namespace",
        namespace,
        ...extra,
        "--take-ownership",
        "--set",
        `metrics.port=${metricsPort}`,
        "--set",
        "operator.relayHostSuffix=relay.test",
      ]);
    const installed = await install("--create-namespace");
    assert.equal(installed.code, 0, installed.stderr);
    const deployment = await apps.readNamespacedDeployment({ namespace, name: `${release}-operator` });
    // The chart's next steps name the Deployment and the CA's Secret.
    assert.match(installed.stdout, new RegExp(`deployment/${release}-operator[\\s\\S]*the Secret ${namespace}/smtp-connector-ca`));
    // The ServiceAccount is the release's own (two releases never share one).
    assert.equal(deployment.spec?.template.spec?.serviceAccountName, release);
    const kubeconfig = await serviceAccountKubeconfig(namespace, release, `${tempDir("chart-sa")}/kubeconfig`);
    operator = await runDeployment(core, deployment, apps, ["--kubeconfig", kubeconfig]);
    await eventually(
      "the operator ready",
      async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
      30_000,
    );

    const domainNamespace = await freshNamespace(t, "chart");
    await applyManifests(
      smtpDomainManifest(domainNamespace, { delivery: { host: "127.0.0.1", port: sink.port } }),
      ...inboundOnlyAddress(domainNamespace),
    );
    const text = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
    const credentials = await eventually(
      "the credentials",
      () => core.readNamespacedSecret({ namespace: domainNamespace, name: "example-com-inbound-v1" }),
      30_000,
    );
    const sendIn = (subject: string) =>
      swaksAuth(
        relayPorts.starttls,
        { user: text(credentials, "username"), password: text(credentials, "password") },
        ["--header", `Subject: ${subject}`],
        { from: "jane@users.example.org" },
      );
    // The installation's CA lives in the release namespace.
    const ca = await eventually("the CA in the release namespace", () =>
      core.readNamespacedSecret({ namespace, name: "smtp-connector-ca" }),
    );
    assert.equal(text(credentials, "ca.crt"), text(ca, "tls.crt"));
    await eventually("the address in the relay config", async () =>
      text(await core.readNamespacedSecret({ namespace: domainNamespace, name: "example-com-relay-config" }), "relay.yaml").includes(
        "support@example.com",
      )
        ? true
        : undefined,
    );
    relay = await runDeployment(core, await apps.readNamespacedDeployment({ namespace: domainNamespace, name: "example-com-relay" }));
    await relayReady();
    const sent = await sendIn("through the chart");
    assert.equal(sent.code, 0, sent.output);
    await eventually(
      "the message at the helpdesk, tagged",
      () =>
        sink
          .messages()
          .some(
            (m) =>
              m.content.includes("Subject: through the chart") && m.content.includes("X-SmtpConnector-Auth: domain=example.com; version=1"),
          )
          ? true
          : undefined,
      10_000,
    );

    // The operator's metrics carry the conditions the chart's alerts watch.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(
        `smtpc_operator_condition\\{kind="SmtpDomain",namespace="${domainNamespace}",name="example-com",type="CertificateReady",status="True",reason="Issued"\\} 1`,
      ),
    );

    await relay.stop();
    relay = undefined;
    const uninstalled = await helm(["uninstall", release, "--namespace", namespace]);
    assert.equal(uninstalled.code, 0, uninstalled.stderr);
    await eventually("the operator stopped with its Deployment", () => (operator!.child.exitCode !== null ? true : undefined), 15_000);
    for (const crd of ["smtpdomains.smtpconnector.dev", "supportaddresses.smtpconnector.dev"]) {
      assert.equal((await kubectl(["get", "crd", crd])).code, 0, `${crd} kept after uninstall`);
    }

    // Uninstalled with a domain left: the domain, its relay and its credentials are the domain's, not the
    // release's, so they stay, and mail goes on flowing with no operator running.
    const domainField = (jsonpath: string) =>
      kubectl(["get", "smtpdomain", "example-com", "--namespace", domainNamespace, "-o", `jsonpath=${jsonpath}`]);
    const left = await domainField("{.metadata.finalizers}");
    assert.equal(left.code, 0, "the SmtpDomain outlives the release");
    assert.match(left.stdout, /smtpconnector\.dev/, "still held by the operator's finalizer");
    relay = await runDeployment(core, await apps.readNamespacedDeployment({ namespace: domainNamespace, name: "example-com-relay" }), apps);
    await relayReady();
    const whileUninstalled = await sendIn("with no operator installed");
    assert.equal(whileUninstalled.code, 0, whileUninstalled.output);
    await eventually(
      "the message at the helpdesk",
      () => (sink.messages().some((m) => m.content.includes("Subject: with no operator installed")) ? true : undefined),
      10_000,
    );

    // Deleted while no operator runs, the domain waits for one; installing the chart again disconnects it in
    // the usual order, and then the relay refuses the credential it accepted a moment ago.
    await kubectl(["delete", "smtpdomain", "example-com", "--namespace", domainNamespace, "--wait=false"]);
    const waiting = await domainField("{.metadata.deletionTimestamp}");
    assert.ok(waiting.code === 0 && waiting.stdout !== "", "the deleted domain waits for an operator");
    const reinstalled = await install();
    assert.equal(reinstalled.code, 0, reinstalled.stderr);
    const kubeconfigAgain = await serviceAccountKubeconfig(namespace, release, `${tempDir("chart-sa")}/kubeconfig`);
    operator = await runDeployment(core, await apps.readNamespacedDeployment({ namespace, name: `${release}-operator` }), apps, [
      "--kubeconfig",
      kubeconfigAgain,
    ]);
    await eventually(
      "the domain disconnected and gone",
      async () => ((await kubectl(["get", "smtpdomain", "example-com", "--namespace", domainNamespace])).code !== 0 ? true : undefined),
      60_000,
    );
    await eventually(
      "the relay stopped with its Deployment",
      () => (relay!.child.exitCode !== null || relay!.child.signalCode !== null ? true : undefined),
      30_000,
    );
    await eventually(
      "the credentials Secret collected",
      () =>
        core.readNamespacedSecret({ namespace: domainNamespace, name: "example-com-inbound-v1" }).then(
          () => undefined,
          () => true,
        ),
      90_000,
    );
    const afterDisconnect = await sendIn("after the disconnect");
    assert.notEqual(afterDisconnect.code, 0, "nothing accepts the credential once the domain is disconnected");
  });
});
