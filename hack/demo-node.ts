// `npm run demo -- --node`: the demo on real pods. A control plane with a real
// node (hack/node/up.ts, root), the chart installed from the image built from
// the Dockerfile in this run, the operator and the relays running as pods,
// `kubectl apply -f examples/` with the site's values, a real Postfix as the
// customer's server on the node's address, both support addresses going Ready,
// one email each way through the relay pods, and what kubectl shows.
// Everything stops at the end (or on Ctrl-C) and leaves nothing on the host.
import { readFileSync } from "node:fs";
import { nodeIp } from "./node/node.js";
import { eventually, kubectl } from "../test/support/kube.js";
import { freePort, startSmtpSink, swaksAuth } from "../test/support/mail.js";
import { startCluster } from "../test/support/node.js";
import { secretForwarding, startSubmissionServer } from "../test/support/postfix.js";
import {
  addressTable,
  applyExamples,
  builtImageValues,
  customerEmail,
  headerLines,
  installChart,
  patch,
  runDemo,
  show,
  step,
} from "./lib/demo.js";

const namespace = "acme-helpdesk";
const system = "smtp-connector-system";
interface Secret {
  data?: Record<string, string>;
}
const text = (secret: Secret, key: string) => Buffer.from(secret.data?.[key] ?? "", "base64").toString();

async function json<T>(args: string[]): Promise<T> {
  const result = await kubectl([...args, "-o", "json"]);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}
interface Pod {
  status: { phase?: string; containerStatuses?: { ready: boolean }[] };
}
const podsRunning = async (ns: string, selector: string) => {
  const pods = (await json<{ items: Pod[] }>(["get", "pods", "-n", ns, "-l", selector])).items;
  return pods.length > 0 && pods.every((p) => p.status.phase === "Running" && p.status.containerStatuses?.every((c) => c.ready))
    ? true
    : undefined;
};

await runDemo("Postfix, sinks, the pods, the node and the control plane", async (cleanups) => {
  step("a control plane with a real node: kubelet, containerd, kube-proxy, kube-router; the image built from the Dockerfile");
  const started = Date.now();
  const cluster = await startCluster();
  cleanups.push(() => cluster.stop());
  process.env.SMTPC_KUBECONFIG = cluster.kubeconfig;
  process.env.SMTPC_TESTENV_BIN = cluster.testenv;
  console.log(
    `ready in ${((Date.now() - started) / 1000).toFixed(0)} s; node ${cluster.node}; image ${cluster.image}; kubeconfig ${cluster.kubeconfig}`,
  );
  await show(["get", "nodes", "-o", "wide"]);

  step("the helpdesk's ingestion endpoint (LMTP, on the node's address: pods reach it) and the outside world");
  const helpdesk = await startSmtpSink([], { lmtp: true, host: nodeIp });
  cleanups.push(() => helpdesk.stop());
  const world = await startSmtpSink();
  cleanups.push(() => world.stop());
  console.log(`helpdesk ingestion on ${nodeIp}:${helpdesk.port}; recipients' mail servers on 127.0.0.1:${world.port}`);

  const customerPort = await freePort();
  step("helm install smtp-connector charts/smtp-connector with the built image");
  const values = [
    ...builtImageValues(cluster.image),
    "operator.relayHostSuffix=relay.demo",
    "relay.allowedHostnameSuffixes={helpdesk.example.net}",
    `operator.verification.smtp=${nodeIp}:${customerPort}`,
  ];
  console.log(
    `$ helm install smtp-connector charts/smtp-connector -n ${system} --create-namespace ${values.map((v) => `--set ${v}`).join(" ")}`,
  );
  await installChart(system, values);
  await eventually("the operator pod Running and ready", () => podsRunning(system, "app.kubernetes.io/name=smtp-connector"), 180_000);
  await show(["get", "pods", "-n", system, "-o", "wide"]);

  step("a platform team applies the examples as shipped, then sets the site's values");
  await applyExamples();
  // The customer's server reaches the relay from the node's bridge address; the helpdesk ingests on the node's address.
  await patch(namespace, "smtpdomain", "example-com", {
    spec: { inbound: { allowedSourceRanges: ["10.244.0.1/32"], delivery: { smtp: { host: nodeIp, port: helpdesk.port } } } },
  });
  const relaySelector = "app.kubernetes.io/name=smtp-connector-relay,app.kubernetes.io/instance=example-com";
  await eventually("the relay pods Running and ready", () => podsRunning(namespace, relaySelector), 240_000);
  await show(["get", "pods", "-n", namespace, "-o", "wide"]);

  step("the customer's IT team sets up their Postfix from the issued Secret: MX for example.com -> the relay Service's 587");
  const credentials = await json<Secret>(["get", "secret", "example-com-inbound-v1", "-n", namespace]);
  const service = await json<{ spec: { clusterIP: string } }>(["get", "service", "example-com-relay", "-n", namespace]);
  const customer = await startSubmissionServer({
    relayTo: world.port,
    listenAddress: nodeIp,
    port: customerPort,
    users: ["support", "billing"].map((u) => ({ username: `${u}@example.com`, password: "change-me", senders: [`${u}@example.com`] })),
    forward: secretForwarding(credentials, 587, service.spec.clusterIP),
  });
  cleanups.push(() => customer.stop());
  console.log(
    `Postfix (the customer's server) on ${nodeIp}:${customer.port}; relays example.com to ${service.spec.clusterIP}:587 (kube-proxy -> a relay pod's 8587)`,
  );
  const ca = await kubectl([
    "create",
    "secret",
    "generic",
    "customer-ca",
    "-n",
    namespace,
    "--from-literal",
    `ca.crt=${readFileSync(customer.certFile, "utf8")}`,
  ]);
  if (ca.code !== 0) throw new Error(`kubectl create secret failed: ${ca.stderr}`);
  for (const name of ["support", "billing"])
    await patch(namespace, "supportaddress", name, {
      spec: { outbound: { host: nodeIp, port: customer.port, tls: "StartTLS", caSecretRef: { name: "customer-ca" } } },
    });

  step("verification: one email each way per address, through the relay pods and the customer's Postfix");
  // Without the AGE column, which changes every second.
  const addresses = addressTable(namespace, (row) => row.replace(/ \S+$/, ""));
  await eventually(
    "both addresses Ready",
    async () => {
      const lines = await addresses();
      return lines.length === 2 && lines.every((l) => / True True True$/.test(l)) ? true : undefined;
    },
    420_000,
  );

  step("inbound: a customer's email through the customer's Postfix and a relay pod to the helpdesk");
  await customerEmail(`${nodeIp}:${customer.port}`);
  const received = await eventually(
    "the email at the helpdesk",
    () => helpdesk.messages().find((m) => m.content.includes("My printer is on fire")),
    60_000,
  );
  console.log(headerLines(received.content, /^(X-SmtpConnector-Auth|Subject|From|To):/));

  step("outbound: the helpdesk replies as support@example.com on the relay's internal Service");
  const submission = await json<Secret>(["get", "secret", "example-com-submission", "-n", namespace]);
  const internal = await json<{ spec: { clusterIP: string } }>(["get", "service", "example-com-relay-internal", "-n", namespace]);
  // Until the kubelet refreshes the relay pods' mounted config they answer 451 (try again later), as a helpdesk's queue would.
  await eventually(
    "the reply accepted by a relay pod",
    async () => {
      const reply = await swaksAuth(
        `${internal.spec.clusterIP}:${text(submission, "port")}`,
        { user: text(submission, "username"), password: text(submission, "password") },
        ["--header", "From: Example Support <support@example.com>", "--header", "Subject: Re: My printer is on fire"],
        { from: "support@example.com", to: "jane@users.example.org" },
      );
      return reply.code === 0 ? true : undefined;
    },
    180_000,
  );
  const delivered = await eventually(
    "the reply at the recipient's server",
    () => world.messages().find((m) => m.content.includes("Re: My printer is on fire")),
    60_000,
  );
  console.log(headerLines(delivered.content, /Authenticated sender|^(Subject|From):/));

  step("what kubectl shows");
  await show(["get", "pods", "-A", "-o", "wide"]);
  await show(["get", "smtpconnector", "-n", namespace]);
  if (process.stdout.isTTY && !process.argv.includes("--exit")) {
    console.log(`\nthe cluster:  KUBECONFIG=${cluster.kubeconfig} ${cluster.testenv} kubectl get pods -A`);
    console.log("everything keeps running; press Ctrl-C to stop and clean up");
    await new Promise<never>(() => setInterval(() => undefined, 60_000));
  }
});
