// Rotation and disconnect while mail flows, the way a customer's mail server
// lives through them: a real Postfix (the domain's MX) keeps relaying into the
// relay the operator deployed while credentials rotate and, later, the domain
// is disconnected. Every message the customer's server accepted is counted.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { e2eClients, startOperatorCommand, relayReady } from "../support/e2e.js";
import { runDeployment, type RunningDeployment } from "../support/deployment-runner.js";
import { applyManifests, eventually, freshNamespace, kubectl, readSecret, secretText } from "../support/kube.js";
import { smtpDomainManifest, supportAddressManifest } from "../support/manifests.js";
import { randomPassword, startSmtpSink, stopChild, swaks, swaksCustomer, tlsSecretManifest, type SmtpSink } from "../support/mail.js";
import { startSubmissionServer, type Postfix } from "../support/postfix.js";
import { relayPorts } from "../../relay/contract/pod.js";

/** Submits messages to the customer's MX from a few parallel senders until stopped; returns the subjects it accepted. */
function steadyTraffic(mx: () => number, label: string) {
  const accepted: string[] = [];
  let running = true;
  let n = 0;
  const workers = Array.from({ length: 3 }, async () => {
    while (running) {
      const subject = `${label} ${n++}`;
      const result = await swaksCustomer(mx(), subject);
      if (result.code === 0) accepted.push(subject);
    }
  });
  return {
    accepted,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return accepted;
    },
  };
}

describe("rotation and disconnect under steady traffic", () => {
  let operator: ChildProcess;
  let helpdesk: SmtpSink;
  let elsewhere: SmtpSink;
  let customer: (Postfix & { certFile: string }) | undefined;
  let relay: RunningDeployment | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;

  before(async () => {
    ({ core, apps } = await e2eClients());
    helpdesk = await startSmtpSink();
    elsewhere = await startSmtpSink();
    operator = await startOperatorCommand();
  });
  after(async () => {
    await relay?.stop();
    await stopChild(operator);
    await customer?.stop();
    await helpdesk.stop();
    await elsewhere.stop();
  });

  test("no message is lost while credentials rotate; after disconnect nothing more arrives authenticated", async (t) => {
    const namespace = await freshNamespace(t, "e2e-rot");
    const domain = (credentials: object[]) =>
      smtpDomainManifest(namespace, {
        credentials,
        delivery: { host: "127.0.0.1", port: helpdesk.port },
        relay: { tls: { secretName: "relay-tls" } },
      });
    await applyManifests(
      await tlsSecretManifest(namespace),
      domain([{ version: 1 }]),
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "support-smtp", namespace },
        stringData: { username: "support@example.com", password: randomPassword() },
      },
      supportAddressManifest(namespace, { host: "smtp.example.com", credentialsSecretRef: { name: "support-smtp" } }),
    );
    const read = (name: string) => readSecret(core, namespace, name);
    const text = secretText;
    const relayYaml = async () => text(await read("example-com-relay-config"), "relay.yaml");
    const v1 = await read("example-com-inbound-v1");
    await eventually("the address in the relay config", async () =>
      (await relayYaml()).includes("support@example.com") ? true : undefined,
    );
    relay = await runDeployment(core, await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }), apps);
    await relayReady();
    const mx = await startSubmissionServer({
      relayTo: elsewhere.port,
      users: [{ username: "unused@example.com", password: randomPassword(), senders: ["nobody@example.com"] }],
      forward: { domain: "example.com", relayPort: relayPorts.starttls, username: text(v1, "username"), password: text(v1, "password") },
    });
    customer = mx;
    const passwordMap = (secret: k8s.V1Secret) =>
      `inline:{ [127.0.0.1]:${relayPorts.starttls}=${text(secret, "username")}:${text(secret, "password")} }`;

    // Rotation while mail flows: version 2 beside 1, the customer switches, version 1 is revoked.
    // Each step waits for what the next one needs (never for a fixed time), so a busy machine only makes it slower.
    const relayAccepts = async (secret: k8s.V1Secret) =>
      (
        await swaks([
          "--server",
          `127.0.0.1:${relayPorts.starttls}`,
          "--tls",
          "--auth",
          "PLAIN",
          "--auth-user",
          text(secret, "username"),
          "--auth-password",
          text(secret, "password"),
          "--quit-after",
          "AUTH",
        ])
      ).code === 0;
    const tagged = (version: number) =>
      helpdesk
        .messages()
        .filter(
          (m) =>
            /^Subject: rotation \d+$/m.test(m.content) &&
            new RegExp(`^X-SmtpConnector-Auth: domain=example\\.com; version=${version}\r?$`, "m").test(m.content),
        ).length;
    const rotation = steadyTraffic(() => mx.port, "rotation");
    t.after(() => rotation.stop());
    await eventually("traffic through version 1", () => (tagged(1) >= 3 ? true : undefined), 120_000);
    await applyManifests(domain([{ version: 1 }, { version: 2 }]));
    const v2 = await read("example-com-inbound-v2");
    await eventually(
      "the relay to accept version 2 (the kubelet's sync and the relay's reload)",
      async () => ((await relayAccepts(v2)) ? true : undefined),
      120_000,
    );
    await mx.reconfigure({ smtp_sasl_password_maps: passwordMap(v2) });
    await eventually("traffic through version 2", () => (tagged(2) >= 3 ? true : undefined), 120_000);
    await applyManifests(domain([{ version: 1, state: "Revoked" }, { version: 2 }]));
    await eventually("the relay to refuse version 1", async () => ((await relayAccepts(v1)) ? undefined : true), 120_000);
    const afterRevocation = tagged(2);
    await eventually(
      "traffic through version 2 after the revocation",
      () => (tagged(2) >= afterRevocation + 3 ? true : undefined),
      120_000,
    );
    const sent = await rotation.stop();
    await mx.flush();
    await eventually(
      "every accepted message at the helpdesk",
      async () => {
        const delivered = new Set(helpdesk.messages().flatMap((m) => /^Subject: (rotation \d+)$/m.exec(m.content)?.[1] ?? []));
        if (sent.every((s) => delivered.has(s)) && (await mx.queued()) === 0) return true;
        await mx.flush();
        return undefined;
      },
      120_000,
    );
    const rotated = helpdesk.messages().filter((m) => /^Subject: rotation \d+$/m.test(m.content));
    const duplicates = rotated.length - new Set(rotated.map((m) => /^Subject: (.*)$/m.exec(m.content)![1])).size;
    assert.equal(duplicates, 0, "no message arrived twice");
    t.diagnostic(
      `rotation: ${sent.length} messages accepted by the customer's server, ${rotated.length} delivered, 0 lost, ${duplicates} duplicates`,
    );
    const untagged = rotated.filter((m) => !/^X-SmtpConnector-Auth: domain=example\.com; version=[12]\r?$/m.test(m.content));
    assert.equal(untagged.length, 0, `every message tagged with its version; not: ${untagged[0]?.content.slice(0, 600)}`);
    assert.ok(
      rotated.some((m) => /version=2\r?$/m.test(m.content)),
      "version 2 carried traffic after the switch",
    );
    const table = await kubectl(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "jsonpath={.status.activeVersions}"]);
    assert.equal(table.stdout, "2");

    // Disconnect while mail flows: from the moment the relay has the revoked config, nothing more arrives authenticated.
    const flowing = steadyTraffic(() => mx.port, "disconnect");
    t.after(() => flowing.stop());
    const disconnectTagged = () => helpdesk.messages().filter((m) => /^Subject: disconnect \d+$/m.test(m.content)).length;
    await eventually("traffic before the disconnect", () => (disconnectTagged() >= 3 ? true : undefined), 120_000);
    const deleted = Date.now();
    // Only what the relay logs from here on: version 1's refusals during the rotation are not the disconnect's.
    const logged = relay.logs().split("\n").length - 1;
    await kubectl(["delete", "smtpdomain", "example-com", "-n", namespace, "--wait=false"]);
    // Revoked in the config first, then the pod goes (scaled to zero, then deleted with the domain).
    const logLines = () => relay!.logs().split("\n").slice(logged);
    const isRefusal = (l: string) => l.includes('"AUTH refused"') && l.includes('"reason":"Revoked"');
    await eventually(
      "authentication to stop",
      () => (logLines().some(isRefusal) || relay!.child.exitCode !== null ? true : undefined),
      120_000,
    );
    t.diagnostic(`disconnect: authentication stopped ${Date.now() - deleted} ms after the SmtpDomain was deleted`);
    await eventually(
      "the customer's server to queue what it cannot relay",
      async () => ((await mx.queued()) > 0 ? true : undefined),
      120_000,
    );
    await flowing.stop();
    // The relay's log is in order: once it refused a revoked credential, it accepted no AUTH again.
    const lines = logLines();
    const firstRefusal = lines.findIndex(isRefusal);
    const acceptedAfter = firstRefusal < 0 ? [] : lines.slice(firstRefusal).filter((l) => l.includes('"AUTH accepted"'));
    assert.deepEqual(acceptedAfter, [], "AUTH accepted after the relay refused the revoked credential");
    assert.ok((await mx.queued()) > 0, "the customer's server keeps what it could not relay");
  });
});
