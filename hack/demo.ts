// The one-command demo, on an embedded local default: a private control plane,
// the API, the operator (the command a cluster runs), an example domain and
// support address, the relay run from the very Deployment the operator
// created, a test email through it, and what kubectl shows. Everything stops
// at the end.
import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import * as k8s from "@kubernetes/client-node";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { runDeployment } from "../test/support/deployment-runner.js";
import { applyManifests, eventually, kubectl } from "../test/support/kube.js";
import { startSmtpSink, stopChild, swaks, tlsSecretManifest } from "../test/support/mail.js";

const namespace = "acme-helpdesk";
const step = (text: string) => console.log(`\n== ${text}`);
const apply = async (manifest: object) => {
  process.stdout.write(await applyManifests(manifest));
};

async function show(args: string[]): Promise<void> {
  console.log(`$ kubectl ${args.join(" ")}`);
  const result = await kubectl(args);
  process.stdout.write(result.stdout + result.stderr);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed`);
}

const cleanups: (() => Promise<unknown>)[] = [];
try {
  step("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)");
  const started = Date.now();
  const plane = await startControlPlane();
  cleanups.push(() => plane.stop());
  process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
  console.log(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s; kubeconfig: ${plane.kubeconfig}`);
  await installCRDs();
  await show(["get", "crds"]);

  step("starting the operator: npm run operator -- --kubeconfig ...");
  const operator = spawn(process.execPath, ["--import", "tsx", "operator/main.ts", "--kubeconfig", plane.kubeconfig, "--metrics-port", "0", "--relay-host-suffix", "relay.demo"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, LOG_LEVEL: "warn" },
  });
  operator.stderr.pipe(new PassThrough()).on("data", (c: Buffer) => process.stderr.write(`[operator] ${c.toString()}`));
  cleanups.push(() => stopChild(operator));

  step("the helpdesk's ingestion endpoint (Postfix's smtp-sink on 127.0.0.1)");
  const sink = await startSmtpSink();
  cleanups.push(() => sink.stop());
  console.log(`listening on 127.0.0.1:${sink.port}`);

  step("a platform team connects example.com");
  await apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } });
  await apply(await tlsSecretManifest(namespace));
  await apply({
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "example-com", namespace },
    spec: {
      domain: "example.com",
      inbound: { credentials: [{ version: 1 }], delivery: { smtp: { host: "127.0.0.1", port: sink.port, tls: "None" } } },
      relay: { replicas: 1, tls: { secretName: "relay-tls" } },
    },
  });
  await apply({ apiVersion: "v1", kind: "Secret", metadata: { name: "support-smtp", namespace }, stringData: { username: "support@example.com", password: "demo" } });
  await apply({
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SupportAddress",
    metadata: { name: "support", namespace },
    spec: { address: "support@example.com", domainRef: { name: "example-com" }, outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "support-smtp" } } },
  });

  step("the operator issues credentials and renders the relay");
  const config = new k8s.KubeConfig();
  config.loadFromFile(plane.kubeconfig);
  const core = config.makeApiClient(k8s.CoreV1Api);
  const apps = config.makeApiClient(k8s.AppsV1Api);
  const credentials = await eventually("the inbound credentials", () => core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }), 60_000);
  await eventually("the relay config with the support address, and the Deployment", async () => {
    await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" });
    const secret = await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
    return Buffer.from(secret.data?.["relay.yaml"] ?? "", "base64").toString().includes("support@example.com") ? true : undefined;
  });
  await show(["get", "secrets,deployments,services,networkpolicies", "-n", namespace]);

  step("running the relay from its Deployment (no container runtime here: same command, same mounted Secrets)");
  const deployment = await eventually("the relay Deployment", () => apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }));
  const relay = await runDeployment(core, deployment);
  cleanups.push(() => relay.stop());
  await eventually("the relay to be ready", async () => ((await fetch("http://127.0.0.1:8080/readyz").catch(() => undefined))?.status === 200 ? true : undefined), 30_000);
  console.log(`$ ${[...(deployment.spec!.template.spec!.containers[0]!.command ?? [])].join(" ")}   (mounts under ${relay.root})`);

  step("the customer's mail server sends a test email: STARTTLS, AUTH PLAIN with credentials version 1");
  const text = (key: string) => Buffer.from(credentials.data?.[key] ?? "", "base64").toString();
  const sent = await swaks([
    "--server", "127.0.0.1:587", "--tls", "--auth", "PLAIN", "--auth-user", text("username"), "--auth-password", text("password"),
    "--from", "jane@users.example.org", "--to", "support@example.com", "--header", "Subject: My printer is on fire",
  ]);
  console.log(sent.output.split("\n").filter((l) => /^ *(<~|~>) *(250|235|354|AUTH|MAIL|RCPT)/.test(l) || l.includes("Accepted")).join("\n").replace(/AUTH PLAIN \S+/, "AUTH PLAIN ****"));
  if (sent.code !== 0) throw new Error(`the test email failed:\n${sent.output}`);

  step("what the helpdesk received (the trust tag it turns into a ticket tag)");
  const received = sink.messages().at(-1);
  if (!received) throw new Error("the helpdesk received nothing");
  console.log(received.content.split("\n\n")[0]);

  step("what kubectl shows");
  await show(["get", "smtpconnector", "-n", namespace]);
  console.log("(RelayAvailable stays False here: no kubelet runs pods on this control plane; the relay ran as a local process above.)");
  await show(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} ({.reason}){\"\\n\"}{end}"]);
} catch (error) {
  console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  console.log("\nstopped: relay, sink, operator, control plane");
}
