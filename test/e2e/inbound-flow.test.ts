// The product as one: the operator command on the real control plane, the
// relay run from the Deployment it created, mail through it, and credential
// rotation and revocation arriving through the mounted Secrets.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { e2eClients, startOperatorCommand, relayReady } from "../support/e2e.js";
import { runDeployment, type RunningDeployment } from "../support/deployment-runner.js";
import { applyManifests, eventually, freshNamespace, readSecret, secretText } from "../support/kube.js";
import { smtpDomainManifest, supportAddressManifest } from "../support/manifests.js";
import { type SmtpSink, startSmtpSink, stopChild, swaks, tlsSecretManifest } from "../support/mail.js";
import { relayPorts } from "../../relay/contract/pod.js";

describe("inbound, end to end", () => {
  let operator: ChildProcess;
  let sink: SmtpSink;
  let relay: RunningDeployment | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;

  before(async () => {
    ({ core, apps } = await e2eClients());
    sink = await startSmtpSink();
    // The operator command, with the chart's RBAC (not admin).
    operator = await startOperatorCommand();
  });
  after(async () => {
    await relay?.stop();
    await stopChild(operator);
    await sink.stop();
  });

  test("mail flows through the relay the operator deployed; rotation and revocation take effect without a restart", async (t) => {
    const namespace = await freshNamespace(t, "e2e");
    await applyManifests(await tlsSecretManifest(namespace));
    const domain = (credentials: object[]) =>
      smtpDomainManifest(namespace, {
        credentials,
        delivery: { host: "127.0.0.1", port: sink.port },
        relay: { tls: { secretName: "relay-tls" } },
      });
    await applyManifests(domain([{ version: 1 }]));
    await applyManifests({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "support-smtp", namespace },
      stringData: { username: "support@example.com", password: "x" },
    });
    await applyManifests(supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "support-smtp" } }));
    const read = (name: string) => readSecret(core, namespace, name);
    const text = secretText;
    const v1 = await read("example-com-inbound-v1");
    await eventually("the address in the relay config", async () =>
      text(await read("example-com-relay-config"), "relay.yaml").includes("support@example.com") ? true : undefined,
    );

    const deployment = await eventually("the relay Deployment", () =>
      apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }),
    );
    relay = await runDeployment(core, deployment);
    await relayReady();

    const send = (secret: k8s.V1Secret, subject: string) =>
      swaks([
        "--server",
        `127.0.0.1:${relayPorts.starttls}`,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        text(secret, "username"),
        "--auth-password",
        text(secret, "password"),
        "--from",
        "jane@users.example.org",
        "--to",
        "support@example.com",
        "--header",
        `Subject: ${subject}`,
      ]);
    const first = await send(v1, "with version 1");
    assert.equal(first.code, 0, first.output);
    assert.match(sink.messages().at(-1)!.content, /X-SmtpConnector-Auth: domain=example\.com; version=1/);

    // Rotate: version 2 beside version 1; the kubelet would refresh the mounted Secrets.
    await applyManifests(domain([{ version: 1 }, { version: 2 }]));
    const v2 = await read("example-com-inbound-v2");
    await eventually("version 2 in the relay config", async () =>
      text(await read("example-com-relay-config"), "relay.yaml").includes("version: 2") ? true : undefined,
    );
    await relay.sync();
    await eventually("version 2 accepted", async () => ((await send(v2, "with version 2")).code === 0 ? true : undefined), 10_000);
    assert.equal((await send(v1, "still version 1")).code, 0, "version 1 stays valid during the rotation");

    // Revoke version 1: refused on the next AUTH, the relay process never restarted.
    const pid = relay.child.pid;
    await applyManifests(domain([{ version: 1, state: "Revoked" }, { version: 2 }]));
    await eventually("version 1 revoked in the relay config", async () =>
      /version: 1\n\s+username: \S+\n\s+passwordSha256: \S+\n\s+state: Revoked/.test(
        text(await read("example-com-relay-config"), "relay.yaml"),
      )
        ? true
        : undefined,
    );
    await relay.sync();
    await eventually(
      "version 1 refused",
      async () => {
        const attempt = await send(v1, "revoked");
        return attempt.code !== 0 && /535 5\.7\.8/.test(attempt.output) ? true : undefined;
      },
      60_000,
    );
    assert.equal(relay.child.pid, pid);
    assert.equal(relay.child.exitCode, null, "the relay kept running");
    assert.equal((await send(v2, "after revocation")).code, 0);
  });
});
