// The one-command demo, on an embedded local default: a private control plane,
// the Helm chart installed (CRDs, RBAC, the operator Deployment, whose command
// runs here under the chart's ServiceAccount), a real Postfix as the
// customer's mail server, an example domain and support address, the relay run
// from the very Deployment the operator created, verification both ways, one
// email each way, and what kubectl shows. Everything stops at the end.
import { readFileSync } from "node:fs";
import * as k8s from "@kubernetes/client-node";
import { startControlPlane } from "../test/support/controlplane.js";
import { relayReady } from "../test/support/e2e.js";
import { runDeployment } from "../test/support/deployment-runner.js";
import { applyManifests, eventually, kubectl, serviceAccountKubeconfig } from "../test/support/kube.js";
import { freePort, startSmtpSink, swaksAuth, tempDir } from "../test/support/mail.js";
import { secretForwarding, startSubmissionServer } from "../test/support/postfix.js";
import { relayPorts } from "../relay/contract/pod.js";
import { addressTable, applyExamples, customerEmail, headerLines, installChart, patch, runDemo, show, step } from "./lib/demo.js";

const namespace = "acme-helpdesk";
const apply = async (manifest: object) => {
  process.stdout.write(await applyManifests(manifest));
};

await runDemo("relay, Postfix, sinks, operator, control plane", async (cleanups) => {
  step("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)");
  const started = Date.now();
  const plane = await startControlPlane();
  cleanups.push(() => plane.stop());
  process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
  console.log(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s; kubeconfig: ${plane.kubeconfig}`);

  step("the helpdesk's ingestion endpoint, and the outside world (Postfix's smtp-sink on 127.0.0.1)");
  // The helpdesk's ingestion speaks LMTP, as in examples/10-smtpdomain.yaml.
  const helpdesk = await startSmtpSink([], { lmtp: true });
  cleanups.push(() => helpdesk.stop());
  const world = await startSmtpSink();
  cleanups.push(() => world.stop());
  console.log(`helpdesk ingestion on 127.0.0.1:${helpdesk.port}; recipients' mail servers on 127.0.0.1:${world.port}`);

  const customerPort = await freePort();
  const metricsPort = await freePort();
  step("installing the chart: helm install smtp-connector charts/smtp-connector -n smtp-connector-system");
  const values = [
    "operator.systemDomains={helpdesk.demo}",
    "operator.verification.sender=verify@helpdesk.demo",
    `operator.verification.smtp=127.0.0.1:${customerPort}`,
    "operator.relayHostSuffix=relay.demo",
    "relay.allowedHostnameSuffixes={helpdesk.example.net}",
    `metrics.port=${metricsPort}`,
    // No cluster DNS here: the relay's control API is reached on loopback.
    "operator.extraArgs={--relay-control-url=https://127.0.0.1:8443}",
  ];
  const installed = await installChart("smtp-connector-system", values);
  console.log(
    installed
      .split("\n")
      .filter((l) => /^(NAME|STATUS|REVISION):/.test(l))
      .join("\n"),
  );
  await show(["get", "crds"]);
  await show([
    "get",
    "deployments,services,serviceaccounts",
    "-n",
    "smtp-connector-system",
    "-l",
    "app.kubernetes.io/instance=smtp-connector",
  ]);
  const config = new k8s.KubeConfig();
  config.loadFromFile(plane.kubeconfig);
  const core = config.makeApiClient(k8s.CoreV1Api);
  const apps = config.makeApiClient(k8s.AppsV1Api);

  step("running the operator from the chart's Deployment (no container runtime: same command, same arguments, the chart's ServiceAccount)");
  const operatorDeployment = await apps.readNamespacedDeployment({ namespace: "smtp-connector-system", name: "smtp-connector-operator" });
  const saKubeconfig = await serviceAccountKubeconfig("smtp-connector-system", "smtp-connector", `${tempDir("demo-sa")}/kubeconfig`);
  const operator = await runDeployment(core, operatorDeployment, apps, ["--kubeconfig", saKubeconfig]);
  cleanups.push(() => operator.stop());
  await eventually(
    "the operator to be ready",
    async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
    30_000,
  );
  console.log(
    `$ ${[...(operatorDeployment.spec!.template.spec!.containers[0]!.command ?? []), ...(operatorDeployment.spec!.template.spec!.containers[0]!.args ?? [])].join(" ")}`,
  );

  step("a platform team applies the examples as shipped: kubectl apply -f examples/");
  await applyExamples();
  const credentials = await eventually(
    "the inbound credentials",
    () => core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }),
    60_000,
  );
  await show(["get", "smtpconnector", "-n", namespace]);

  step("and sets the site's values: where the helpdesk ingests (LMTP), the customer's servers, a short verification timeout");
  await patch(namespace, "smtpdomain", "example-com", {
    spec: { inbound: { allowedSourceRanges: ["127.0.0.0/8"], delivery: { smtp: { host: "127.0.0.1", port: helpdesk.port } } } },
  });

  step("the customer's IT team sets up their Postfix from the issued Secret (relay verified against its ca.crt)");
  const text = (secret: k8s.V1Secret, key: string) => Buffer.from(secret.data?.[key] ?? "", "base64").toString();
  const customer = await startSubmissionServer({
    relayTo: world.port,
    // The two accounts of examples/20-outbound-credentials.yaml.
    users: ["support", "billing"].map((u) => ({ username: `${u}@example.com`, password: "change-me", senders: [`${u}@example.com`] })),
    // The snippet from the Secret as it is (only the relay's address is 127.0.0.1 here).
    forward: secretForwarding(credentials, relayPorts.starttls),
    port: customerPort,
  });
  cleanups.push(() => customer.stop());
  console.log(
    `Postfix (the customer's server) on 127.0.0.1:${customer.port}: MX for example.com -> the relay with SASL over TLS; submission for support@ and billing@`,
  );
  console.log(
    text(credentials, "postfix-main.cf")
      .replace(/:[A-Za-z0-9]{43} }/, ":**** }")
      .trimEnd(),
  );
  const showDomain = (jsonpath: string) => show(["get", "smtpdomain", "example-com", "-n", namespace, "-o", `jsonpath=${jsonpath}`]);
  await showDomain('relay certificate: {.status.tls.dnsNames[0]}, issued by {.status.tls.issuer}, expires {.status.tls.notAfter}{"\\n"}');
  await apply({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "customer-ca", namespace },
    stringData: { "ca.crt": readFileSync(customer.certFile, "utf8") },
  });
  for (const name of ["support", "billing"]) {
    await patch(namespace, "supportaddress", name, {
      spec: {
        outbound: { host: "127.0.0.1", port: customer.port, tls: "StartTLS", caSecretRef: { name: "customer-ca" } },
        verification: { timeout: "30s" },
      },
    });
  }
  await eventually("the relay config with the site's values", async () =>
    text(await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }), "relay.yaml").includes(`port: ${customer.port}`)
      ? true
      : undefined,
  );
  await show(["get", "secrets,deployments,services,networkpolicies", "-n", namespace]);

  step("running the relay from its Deployment (no container runtime here: same command, same mounted Secrets)");
  const deployment = await eventually("the relay Deployment", () =>
    apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }),
  );
  const relay = await runDeployment(core, deployment, apps);
  cleanups.push(() => relay.stop());
  await relayReady();
  await relay.markAvailable();
  console.log(`$ ${[...(deployment.spec!.template.spec!.containers[0]!.command ?? [])].join(" ")}   (mounts under ${relay.root})`);

  step("verification: one email each way per address, with a one-time token, through the customer's Postfix");
  const requested = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  await kubectl([
    "annotate",
    "supportaddress",
    "--all",
    "-n",
    namespace,
    `smtpconnector.dev/verify-requested-at=${requested}`,
    "--overwrite",
  ]);
  const addresses = addressTable(namespace);
  await eventually(
    "both addresses to be Ready",
    async () => {
      const lines = await addresses();
      if (lines.length !== 2 || !lines.every((l) => / True True True /.test(`${l} `))) return undefined;
      // Ready from the attempts this request started, not from an earlier one.
      const handled = await kubectl([
        "get",
        "supportaddresses",
        "-n",
        namespace,
        "-o",
        "jsonpath={.items[*].status.lastHandledVerifyRequest}",
      ]);
      const results = await kubectl([
        "get",
        "supportaddresses",
        "-n",
        namespace,
        "-o",
        "jsonpath={.items[*].status.verifications[*].result}",
      ]);
      return handled.stdout.trim() === `${requested} ${requested}` && results.stdout.trim() === "Succeeded Succeeded Succeeded Succeeded"
        ? true
        : undefined;
    },
    90_000,
  );

  step("inbound: the customer's server relays a customer's email (STARTTLS, AUTH PLAIN with version 1)");
  await customerEmail(`127.0.0.1:${customer.port}`);
  await eventually(
    "the email at the helpdesk",
    () => (helpdesk.messages().some((m) => m.content.includes("My printer is on fire")) ? true : undefined),
    30_000,
  );
  const received = helpdesk.messages().find((m) => m.content.includes("My printer is on fire"))!;
  console.log(headerLines(received.content, /^(Authentication-Results|X-SmtpConnector-Auth|Subject|From|To):/));

  step("outbound: the helpdesk replies as support@example.com through the relay's submission port");
  const submission = await core.readNamespacedSecret({ namespace, name: "example-com-submission" });
  const reply = () =>
    swaksAuth(
      "127.0.0.1:2587",
      { user: text(submission, "username"), password: text(submission, "password") },
      ["--header", "Subject: Re: My printer is on fire", "--header", "Auto-Submitted: auto-replied"],
      { from: "support@example.com", to: "jane@users.example.org" },
    );
  // Ready reaches the relay with its next config (the kubelet's Secret sync, then the relay's reload): seconds.
  const outbound = await eventually(
    "the relay to let the helpdesk send as the Ready address",
    async () => {
      const attempt = await reply();
      return attempt.code === 0 ? attempt : undefined;
    },
    30_000,
  );
  console.log(
    outbound.output
      .split("\n")
      .filter((l) => l.includes("Accepted by the customer's server"))
      .join("\n"),
  );
  await eventually(
    "the reply at the recipient's server",
    () => (world.messages().some((m) => m.content.includes("Re: My printer is on fire")) ? true : undefined),
    30_000,
  );
  const delivered = world.messages().find((m) => m.content.includes("Re: My printer is on fire"))!;
  console.log(headerLines(delivered.content, /Authenticated sender|^(Subject|From|Auto-Submitted):/));

  step("what kubectl shows");
  await show(["get", "smtpconnector", "-n", namespace]);
  await showDomain('{range .status.conditions[*]}{.type}={.status} ({.reason}){"\\n"}{end}');

  step("where to look");
  console.log(`the email the helpdesk received, with its tags: ${received.file}`);
  console.log(`the reply the recipient's server received:      ${delivered.file}`);
  console.log(`the control plane:  KUBECONFIG=${plane.kubeconfig} kubectl get smtpconnector -A`);
  console.log(`the plugin:         KUBECONFIG=${plane.kubeconfig} PATH=$PWD/bin:$PATH kubectl smtpconnector status -n ${namespace}`);
  if (process.stdout.isTTY && !process.argv.includes("--exit")) {
    console.log("\neverything keeps running; press Ctrl-C to stop and clean up");
    await new Promise<never>(() => setInterval(() => undefined, 60_000));
  }
});
