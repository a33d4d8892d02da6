// The relay's certificate end to end: the operator issues and renews it, the
// relay run from its Deployment serves it; a session opened before a renewal
// (or before a referenced Secret is replaced) carries on, a new handshake
// gets the new certificate, verified against the CA handed to the customer.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { e2eClients, startOperatorCommand, relayReady, inboundOnlyAddress } from "../support/e2e.js";
import { runDeployment, type RunningDeployment } from "../support/deployment-runner.js";
import { applyManifests, eventually, freshNamespace, kubectl } from "../support/kube.js";
import { startSmtpSink, stopChild, tlsSecretManifest, type SmtpSink } from "../support/mail.js";
import { smtpDomainManifest } from "../support/manifests.js";
import { operatorNamespace } from "../support/operator-rbac.js";
import { RawSmtp } from "../support/relay.js";
import { relayPorts } from "../../relay/contract/pod.js";

const caSecret = `e2e-ca-${process.pid}`;

describe("relay certificates, end to end", () => {
  let operator: ChildProcess;
  let sink: SmtpSink;
  let relay: RunningDeployment | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;

  before(async () => {
    ({ core, apps } = await e2eClients());
    sink = await startSmtpSink();
    // Short-lived certificates: issued for 30 s, renewed 20 s ahead (every 10 s or so).
    operator = await startOperatorCommand([
      "--certificate-duration",
      "30s",
      "--certificate-renew-before",
      "20s",
      "--ca-secret",
      `${operatorNamespace}/${caSecret}`,
    ]);
  });
  after(async () => {
    await relay?.stop();
    await stopChild(operator);
    await sink.stop();
    await core.deleteNamespacedSecret({ namespace: operatorNamespace, name: caSecret }).catch(() => undefined);
  });

  const text = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
  const serialOf = (s: k8s.V1Secret) => new X509Certificate(text(s, "tls.crt")).serialNumber.toUpperCase();

  /** A domain with one address, its relay running from the Deployment; returns its inbound credential. */
  async function connectDomain(namespace: string, relaySpec: object): Promise<{ username: string; password: string }> {
    await applyManifests(
      smtpDomainManifest(namespace, { delivery: { host: "127.0.0.1", port: sink.port }, relay: relaySpec }),
      ...inboundOnlyAddress(namespace),
    );
    const credentials = await eventually(
      "the credentials",
      () => core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }),
      30_000,
    );
    await eventually("the address in the relay config", async () =>
      text(await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }), "relay.yaml").includes("support@example.com")
        ? true
        : undefined,
    );
    const deployment = await eventually("the relay Deployment", () =>
      apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }),
    );
    relay = await runDeployment(core, deployment);
    await relayReady();
    return { username: text(credentials, "username"), password: text(credentials, "password") };
  }

  async function openSession(login: { username: string; password: string }, tls: { ca?: string; servername?: string }): Promise<RawSmtp> {
    const client = await RawSmtp.connect(relayPorts.implicitTls, { implicitTls: true, ...tls });
    assert.match(await client.reply(), /^220 /);
    assert.match(await client.command("EHLO mx.customer.test"), /^250/);
    assert.match(await client.authPlain(login.username, login.password), /^235 /);
    return client;
  }

  /** Sends one message in an open, authenticated session; the sink must have it. */
  async function deliver(client: RawSmtp, subject: string): Promise<void> {
    assert.match(await client.command("MAIL FROM:<jane@users.example.org>"), /^250 /);
    assert.match(await client.command("RCPT TO:<support@example.com>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    assert.match(await client.command(`Subject: ${subject}\r\n\r\nbody\r\n.`), /^250 /);
    await eventually(
      `"${subject}" at the helpdesk`,
      () => (sink.messages().some((m) => m.content.includes(`Subject: ${subject}`)) ? true : undefined),
      10_000,
    );
  }

  test("an operator-issued certificate is renewed under a live session: the session carries on, new handshakes get the new certificate", async (t) => {
    const namespace = await freshNamespace(t, "e2e");
    const login = await connectDomain(namespace, {});
    const issued = await core.readNamespacedSecret({ namespace, name: "example-com-relay-tls" });
    const ca = text(issued, "ca.crt");
    // The name the helpdesk's own clients use; the customer's host name is covered the same way.
    const tls = { ca, servername: `example-com-relay.${namespace}.svc` };

    const before = await openSession(login, tls);
    const first = before.peerSerial()?.toUpperCase();
    assert.ok(first);

    const renewed = await eventually(
      "a renewed certificate in the Secret",
      async () => {
        const s = await core.readNamespacedSecret({ namespace, name: "example-com-relay-tls" });
        return serialOf(s) !== first ? serialOf(s) : undefined;
      },
      30_000,
    );
    // A new handshake, verified against the CA, gets the renewed certificate once the kubelet (here: the runner) refreshed the files.
    await eventually(
      "a new handshake with the renewed certificate",
      async () => {
        const client = await openSession(login, tls);
        const serial = client.peerSerial()?.toUpperCase();
        client.close();
        return serial === renewed ? true : undefined;
      },
      15_000,
    );
    // The session opened before the renewal was never dropped: it still delivers.
    assert.equal(before.closed, false);
    await deliver(before, "through a session older than its certificate");
    before.close();
    await relay?.stop();
    relay = undefined;
  });

  test("a referenced Secret that is replaced (as cert-manager does) is served to new handshakes without dropping sessions", async (t) => {
    const namespace = await freshNamespace(t, "e2e");
    await applyManifests(await tlsSecretManifest(namespace, "relay-cert"));
    const login = await connectDomain(namespace, { tls: { secretName: "relay-cert" } });
    const before = await openSession(login, {});
    const first = before.peerSerial()?.toUpperCase();

    await applyManifests(await tlsSecretManifest(namespace, "relay-cert"));
    const replaced = serialOf(await core.readNamespacedSecret({ namespace, name: "relay-cert" }));
    assert.notEqual(replaced, first);
    await eventually(
      "a new handshake with the replaced certificate",
      async () => {
        const client = await openSession(login, {});
        const serial = client.peerSerial()?.toUpperCase();
        client.close();
        return serial === replaced ? true : undefined;
      },
      15_000,
    );
    await deliver(before, "through a session older than the replacement");
    before.close();
    await eventually("status: the replaced certificate, Valid", async () => {
      const d = (
        await kubectl([
          "get",
          "smtpdomain",
          "example-com",
          "-n",
          namespace,
          "-o",
          'jsonpath={.status.conditions[?(@.type=="CertificateReady")].reason}',
        ])
      ).stdout;
      return d === "Valid" ? true : undefined;
    });
  });
});
