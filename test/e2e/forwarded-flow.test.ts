// Forwarded mode end to end (issue 25), as a Microsoft 365 or Google
// Workspace customer lives it, with a real Postfix as the cloud service: it
// hosts the address's mailbox and its SMTP submission (each address's own
// login), and once the customer sets up forwarding it forwards the domain's
// mail to the relay's forwarded listener without AUTH, the recipient
// unchanged. The operator runs as the chart's RBAC on the real API server, the
// relay from its Deployment. The address becomes Ready only when the circle
// closes: the outbound verification email leaves through the cloud service
// with the relay's DKIM signature (d=example.com) and comes back forwarded
// with it intact; the inbound one, from the helpdesk's system sender, comes
// back forwarded too. Replies then leave DKIM-signed through the cloud service.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { relayPorts } from "../../relay/contract/pod.js";
import { runDeployment, type RunningDeployment } from "../support/deployment-runner.js";
import { startDns, type TestDns } from "../support/dns.js";
import { e2eClients, localServerAddress, relayReady, startOperatorCommand } from "../support/e2e.js";
import { applyManifests, eventually, freshNamespace, kubectl } from "../support/kube.js";
import { freePort, randomPassword, startSmtpSink, stopChild, swaks, type SmtpSink } from "../support/mail.js";
import { startSubmissionServer, type Postfix } from "../support/postfix.js";

describe("forwarded mode, end to end", () => {
  let operator: ChildProcess | undefined;
  let helpdesk: SmtpSink;
  let mailbox: SmtpSink;
  let recipientSide: SmtpSink;
  let dns: TestDns;
  let cloud: (Postfix & { certFile: string }) | undefined;
  let relay: RunningDeployment | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let custom: k8s.CustomObjectsApi;
  const login = { username: "u1@example.com", password: randomPassword(), senders: ["support@example.com"] };

  before(async () => {
    ({ core, apps, custom } = await e2eClients());
    helpdesk = await startSmtpSink();
    // The address's mailbox at the cloud service, before forwarding is set up: mail stops there.
    mailbox = await startSmtpSink();
    recipientSide = await startSmtpSink();
    dns = await startDns();
  });
  after(async () => {
    await relay?.stop();
    if (operator) await stopChild(operator);
    await cloud?.stop();
    await Promise.all([helpdesk.stop(), mailbox.stop(), recipientSide.stop(), dns.stop()]);
  });

  test("from kubectl apply to Ready only once the cloud service forwards; DKIM-aligned forwarded verification; replies DKIM-signed through the cloud service", async (t) => {
    const namespace = await freshNamespace(t, "e2e-fwd");
    const cloudPort = await freePort();
    operator = await startOperatorCommand([
      "--system-domains", "helpdesk.test", "--verification-sender", "verify@helpdesk.test",
      "--verification-smtp", `127.0.0.1:${cloudPort}`, "--relay-control-url", "https://127.0.0.1:8443",
      "--forwarded-dns-servers", dns.address,
    ]);
    await applyManifests({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { name: "example-com", namespace },
      spec: {
        domain: "example.com",
        inbound: { mode: "Forwarded", delivery: { smtp: { host: "127.0.0.1", port: helpdesk.port, tls: "None" } } },
        dkim: { keys: [{ selector: "smtpc1", recordPublished: true }] },
        relay: { replicas: 1 },
      },
    });
    const smtpDomain = async () => (await custom.getNamespacedCustomObject({ group: "smtpconnector.dev", version: "v1alpha1", namespace, plural: "smtpdomains", name: "example-com" })) as SmtpDomain;
    // The customer publishes the DKIM record the status shows (here: in the DNS the relay is told to use).
    const record = await eventually("the DKIM record in status", async () => (await smtpDomain()).status?.dkim?.records?.find((r) => r.selector === "smtpc1"), 60_000);
    dns.txt.set(record.name, record.value);
    const issued = await smtpDomain();
    assert.equal(issued.status?.conditions?.find((c) => c.type === "CredentialsIssued")?.reason, "NotRequired");
    assert.equal((await core.listNamespacedSecret({ namespace, labelSelector: "smtpconnector.dev/credential-version" })).items.length, 0, "no inbound credential Secret");

    // The cloud service: submission with the address's login; the domain's mail goes to the mailbox for now.
    cloud = await startSubmissionServer({ relayTo: recipientSide.port, users: [login], forward: { domain: "example.com", relayPort: mailbox.port, withoutAuth: true }, port: cloudPort });
    await applyManifests(
      { apiVersion: "v1", kind: "Secret", metadata: { name: "support-smtp", namespace }, stringData: { username: login.username, password: login.password } },
      { apiVersion: "v1", kind: "Secret", metadata: { name: "customer-ca", namespace }, stringData: { "ca.crt": readFileSync(cloud.certFile, "utf8") } },
      localServerAddress(namespace, cloud.port, { verification: { timeout: "15s", interval: "1h" } }),
    );
    const deployment = await eventually("the relay Deployment", () => apps.readNamespacedDeployment({ namespace, name: "example-com-relay" }));
    assert.deepEqual(deployment.spec!.template.spec!.containers[0]!.ports!.map((p) => p.containerPort).sort(), [relayPorts.forwarded, relayPorts.health, relayPorts.submission, relayPorts.control].sort());
    relay = await runDeployment(core, deployment);
    const started = relay;
    await relayReady().catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; the relay's log:\n${started.logs()}`);
    });
    await relay.markAvailable();

    const address = async () => (await custom.getNamespacedCustomObject({ group: "smtpconnector.dev", version: "v1alpha1", namespace, plural: "supportaddresses", name: "support" })) as SupportAddress;
    const condition = (a: SupportAddress, type: string) => a.status?.conditions?.find((c) => c.type === type);

    // Forwarding not set up: the verification emails reach the mailbox and stop there; the address says so.
    const notSetUp = await eventually("OutboundVerified False with ForwardingNotSetUp", async () => {
      const a = await address();
      return condition(a, "OutboundVerified")?.reason === "ForwardingNotSetUp" ? a : undefined;
    }, 90_000);
    assert.equal(condition(notSetUp, "Ready")?.status, "False");
    assert.match(condition(notSetUp, "OutboundVerified")!.message, /port 25/);
    assert.ok(mailbox.messages().some((m) => /X-SmtpConnector-Verification/i.test(m.content)), "the verification email did reach the mailbox");

    // The customer sets up forwarding (recipient unchanged) to the relay's forwarded listener; verify again.
    await cloud.reconfigure({ transport_maps: `inline:{ example.com=smtp:[127.0.0.1]:${relayPorts.forwarded} }` });
    await kubectl(["annotate", "supportaddress", "support", "-n", namespace, "smtpconnector.dev/verify-requested-at=2026-12-01T15:00:00Z", "--overwrite"]);
    const ready = await eventually("the address Ready", async () => {
      const a = await address();
      return condition(a, "Ready")?.status === "True" ? a : undefined;
    }, 90_000).catch(async (error: unknown) => {
      const tail = (text: string) => text.split("\n").slice(-25).join("\n");
      const copies = helpdesk.messages().map((m) => m.content.split(/\r?\n\r?\n/)[0]).join("\n----\n");
      throw new Error(`${(error as Error).message}\nstatus: ${JSON.stringify((await address()).status?.verifications)}\nat the helpdesk:\n${copies}\nrelay:\n${tail(started.logs())}`);
    });
    const byDirection = new Map(ready.status?.verifications?.map((v) => [v.direction, v]));
    assert.equal(byDirection.get("Outbound")?.reason, "Verified");
    assert.match(byDirection.get("Outbound")!.message!, /forwarded to the relay, with a DKIM signature of example\.com intact/);
    assert.equal(byDirection.get("Inbound")?.reason, "Verified");
    assert.match(byDirection.get("Inbound")!.message!, /came back forwarded/);
    assert.ok(ready.status?.verifications?.every((v) => v.credentialVersion === undefined), "no credential version in Forwarded mode");

    // What the helpdesk got: forwarded, with the relay's own truthful Authentication-Results, never auth=pass.
    // Known by their body: the relay removes X-SmtpConnector-* fields on the way in (the token field too).
    const forwarded = helpdesk.messages().filter((m) => m.content.includes("checks that mail for this support address flows through smtp-connector"));
    assert.ok(forwarded.length >= 2, `verification emails at the helpdesk: ${forwarded.length}`);
    for (const m of forwarded) {
      assert.doesNotMatch(m.content, /auth=pass/, "forwarded mail is never tagged authenticated");
      assert.deepEqual(m.rcptTo.map((r) => /<([^>]*)>/.exec(r)?.[1]?.toLowerCase()), ["support@example.com"], "the recipient is unchanged");
    }
    const outboundCopy = forwarded.find((m) => /^From:.*support@example\.com/im.test(m.content));
    assert.ok(outboundCopy, "the outbound verification email came back");
    assert.match(outboundCopy.content, /Authentication-Results: [^;]+;[\s\S]*dkim=pass header\.d=example\.com/);
    assert.match(cloud.log(), new RegExp(`to=<support@example\\.com>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relayPorts.forwarded}, .*status=sent`));

    // A reply: the helpdesk submits as the address; it leaves DKIM-signed (d=example.com) through the cloud service.
    const read = (name: string) => eventually(`Secret ${name}`, () => core.readNamespacedSecret({ namespace, name }), 30_000);
    const text = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
    const submission = await read("example-com-submission");
    const subject = `reply ${randomPassword().slice(0, 8)}`;
    await eventually("the helpdesk's reply accepted", async () => {
      const sent = await swaks([
        "--server", `127.0.0.1:${relayPorts.submission}`, "--tls", "--auth", "PLAIN", "--auth-user", text(submission, "username"), "--auth-password", text(submission, "password"),
        "--from", "support@example.com", "--to", "customer@elsewhere.test", "--header", `Subject: ${subject}`,
      ]);
      return sent.code === 0 ? true : undefined;
    }, 30_000);
    const reply = await eventually("the reply at the recipient's side", () => recipientSide.messages().find((m) => m.content.includes(`Subject: ${subject}`)), 30_000);
    assert.match(reply.content, /\(Authenticated sender: u1@example\.com\)/, "through the cloud service with the address's own login");
    const resolver = (name: string, type: string) =>
      name === record.name && type === "TXT" ? Promise.resolve([[record.value]]) : Promise.reject(Object.assign(new Error("NXDOMAIN"), { code: "ENOTFOUND" }));
    const verified = await dkimVerify(Buffer.from(reply.content.replace(/\r?\n/g, "\r\n"), "latin1"), { resolver });
    assert.deepEqual(verified.results.map((r) => `${r.signingDomain} ${r.status.result}`), ["example.com pass"]);

    const table = await kubectl(["get", "smtpdomain", "-n", namespace, "-o", "wide"]);
    assert.match(table.stdout, /\sForwarded\s+\S+$/m, table.stdout);
  });
});
