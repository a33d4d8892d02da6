// What a platform engineer sees when the operator cannot do its work: a
// reconcile that fails says so on the resource it blocks (condition and
// Warning Event, with what to do), the command line explains itself, and a
// busy metrics port is one line, not a stack trace.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { flags } from "../../operator/flags.js";
import { e2eClients } from "../support/e2e.js";
import { assertReconcileWritesNothing, startTestController } from "../support/operator-rbac.js";
import { applyManifests, conditionOf, connect, freshNamespace, readSmtpDomain, waitForCondition, waitForEvents } from "../support/kube.js";

function run(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "operator/main.ts", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`operator ${args.join(" ")} did not exit within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("the operator's command line", () => {
  test("--help prints every flag, and every flag the chart passes exists", async () => {
    const help = await run(["--help"]);
    assert.equal(help.code, 0, help.stderr);
    for (const name of Object.keys(flags)) assert.match(help.stdout, new RegExp(`^  --${name}\\b`, "m"), `--${name} in --help`);
    const template = readFileSync("charts/smtp-connector/templates/deployment.yaml", "utf8");
    // The operator's own flags are its args; the command's flags before the script are node's (operator.heap).
    const args = template.slice(template.indexOf("dist/operator/main.js"));
    assert.ok(template.includes("dist/operator/main.js"), "the chart runs dist/operator/main.js");
    for (const [, name] of args.matchAll(/- --([a-z-]+)/g))
      assert.ok(name! in flags, `the chart passes --${name}, which the operator does not know`);
  });

  test("a busy metrics port is one line and exit code 2, not a stack trace", async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, resolve));
    try {
      const { port } = busy.address() as AddressInfo;
      const result = await run(["--kubeconfig", (await connect()).kubeconfigPath, "--metrics-port", String(port)]);
      assert.equal(result.code, 2);
      assert.equal(
        result.stderr.trim(),
        `operator: cannot listen on --metrics-port ${port}: it is in use by another process; choose another port with --metrics-port`,
      );
    } finally {
      busy.close();
    }
  });
});

describe("a reconcile that cannot run", () => {
  let controller: Controller;
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;
  // The CA's namespace does not exist yet: as on a fresh cluster with the operator started by hand.
  const caNamespace = `ca-${randomBytes(4).toString("hex")}`;

  before(async () => {
    ({ core, custom } = await e2eClients());
    controller = await startTestController({ settingsOverride: { caSecret: { namespace: caNamespace, name: "smtp-connector-ca" } } });
  });
  after(async () => {
    await controller.stop();
    await core.deleteNamespace({ name: caNamespace }).catch(() => undefined);
  });

  test("is visible on the resource it blocks, with what to do, and clears once fixed", async (t) => {
    const namespace = await freshNamespace(t, "fail");
    await applyManifests({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { name: "example-com", namespace },
      spec: { domain: "example.com", inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } } },
    });
    const get = async () => await readSmtpDomain(custom, namespace, "example-com");
    const condition = conditionOf;
    const failed = await waitForCondition("Ready=False ReconcileFailed", get, "Ready", { reason: "ReconcileFailed" });
    assert.match(
      condition(failed, "Ready")!.message,
      new RegExp(
        `namespace ${caNamespace} \\(--ca-secret ${caNamespace}/smtp-connector-ca\\) does not exist; create it \\(kubectl create namespace ${caNamespace}\\)`,
      ),
    );
    assert.equal(condition(failed, "Stalled")?.status, "True", "only a change fixes it");
    assert.equal(failed.status?.observedGeneration, failed.metadata.generation);
    const events = await waitForEvents("a Warning Event", namespace, "involvedObject.name=example-com,type=Warning,reason=ReconcileFailed");
    assert.match(events, /kubectl create namespace/);

    // Retried with backoff, and reported once: nothing more is written while it keeps failing.
    await assertReconcileWritesNothing(controller, `domain/${namespace}/example-com`, "writes while failing the same way");

    await core.createNamespace({ body: { metadata: { name: caNamespace } } });
    controller.queue.add(`domain/${namespace}/example-com`);
    const fixed = await waitForCondition(
      "the failure replaced by the real state",
      get,
      "Ready",
      (ready, d) => ready?.reason !== "ReconcileFailed" && condition(d, "CredentialsIssued")?.status === "True",
    );
    assert.equal(condition(fixed, "Stalled"), undefined);
    assert.equal(condition(fixed, "CertificateReady")?.reason, "Issued");
  });
});
