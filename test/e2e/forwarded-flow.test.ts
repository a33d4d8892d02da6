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
import { after, before, describe, test } from "node:test";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { relayPorts } from "../../relay/contract/pod.js";
import { startDns, type TestDns } from "../support/dns.js";
import { helpdeskSubmit, localServerAddress, requestVerification, startOperatorCommand, verificationFlags } from "../support/e2e.js";
import {
  applyManifests,
  conditionOf as condition,
  eventually,
  freshNamespace,
  kubectl,
  readSecret,
  readSmtpDomain,
  readSupportAddress,
} from "../support/kube.js";
import { customerSecrets, mailFlow, runRelay } from "../support/mail-flow.js";
import { freePort, randomPassword, startSmtpSink, type SmtpSink } from "../support/mail.js";
import { startSubmissionServer } from "../support/postfix.js";

describe("forwarded mode, end to end", () => {
  // The cloud service is the flow's customer server.
  const flow = mailFlow();
  let mailbox: SmtpSink;
  let dns: TestDns;

  before(async () => {
    // The address's mailbox at the cloud service, before forwarding is set up: mail stops there.
    mailbox = await startSmtpSink();
    dns = await startDns();
  });
  after(async () => {
    await Promise.all([mailbox.stop(), dns.stop()]);
  });

  test("from kubectl apply to Ready only once the cloud service forwards; DKIM-aligned forwarded verification; replies DKIM-signed through the cloud service", async (t) => {
    const namespace = await freshNamespace(t, "e2e-fwd");
    const cloudPort = await freePort();
    flow.operator = await startOperatorCommand([...verificationFlags(cloudPort), "--forwarded-dns-servers", dns.address]);
    await applyManifests({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { name: "example-com", namespace },
      spec: {
        domain: "example.com",
        inbound: { mode: "Forwarded", delivery: { smtp: { host: "127.0.0.1", port: flow.helpdesk.port, tls: "None" } } },
        dkim: { keys: [{ selector: "smtpc1", recordPublished: true }] },
        relay: { replicas: 1 },
      },
    });
    const smtpDomain = () => readSmtpDomain(flow.custom, namespace);
    // The customer publishes the DKIM record the status shows (here: in the DNS the relay is told to use).
    const record = await eventually(
      "the DKIM record in status",
      async () => (await smtpDomain()).status?.dkim?.records?.find((r) => r.selector === "smtpc1"),
      60_000,
    );
    dns.txt.set(record.name, record.value);
    const issued = await smtpDomain();
    assert.equal(issued.status?.conditions?.find((c) => c.type === "CredentialsIssued")?.reason, "NotRequired");
    assert.equal(
      (await flow.core.listNamespacedSecret({ namespace, labelSelector: "smtpconnector.dev/credential-version" })).items.length,
      0,
      "no inbound credential Secret",
    );

    // The cloud service: submission with the address's login; the domain's mail goes to the mailbox for now.
    const cloud = (flow.customer = await startSubmissionServer({
      relayTo: flow.recipientSide.port,
      users: [flow.login],
      forward: { domain: "example.com", relayPort: mailbox.port, withoutAuth: true },
      port: cloudPort,
    }));
    await applyManifests(
      ...customerSecrets(namespace, flow),
      localServerAddress(namespace, cloud.port, { verification: { timeout: "15s", interval: "1h" } }),
    );
    const deployment = await runRelay(flow, namespace);
    assert.deepEqual(
      deployment.spec!.template.spec!.containers[0]!.ports!.map((p) => p.containerPort).sort(),
      [relayPorts.forwarded, relayPorts.health, relayPorts.submission, relayPorts.control].sort(),
    );
    const started = flow.relay!;

    const address = () => readSupportAddress(flow.custom, namespace);

    // Forwarding not set up: the verification emails reach the mailbox and stop there; the address says so.
    const notSetUp = await eventually(
      "OutboundVerified False with ForwardingNotSetUp",
      async () => {
        const a = await address();
        return condition(a, "OutboundVerified")?.reason === "ForwardingNotSetUp" ? a : undefined;
      },
      90_000,
    );
    assert.equal(condition(notSetUp, "Ready")?.status, "False");
    assert.match(condition(notSetUp, "OutboundVerified")!.message, /port 25/);
    assert.ok(
      mailbox.messages().some((m) => /X-SmtpConnector-Verification/i.test(m.content)),
      "the verification email did reach the mailbox",
    );

    // The customer sets up forwarding (recipient unchanged) to the relay's forwarded listener; verify again.
    await cloud.reconfigure({ transport_maps: `inline:{ example.com=smtp:[127.0.0.1]:${relayPorts.forwarded} }` });
    await requestVerification(namespace, "2026-12-01T15:00:00Z");
    const ready = await eventually(
      "the address Ready",
      async () => {
        const a = await address();
        return condition(a, "Ready")?.status === "True" ? a : undefined;
      },
      90_000,
    ).catch(async (error: unknown) => {
      const tail = (text: string) => text.split("\n").slice(-25).join("\n");
      const copies = flow.helpdesk
        .messages()
        .map((m) => m.content.split(/\r?\n\r?\n/)[0])
        .join("\n----\n");
      throw new Error(
        `${(error as Error).message}\nstatus: ${JSON.stringify((await address()).status?.verifications)}\nat the helpdesk:\n${copies}\nrelay:\n${tail(started.logs())}`,
      );
    });
    const byDirection = new Map(ready.status?.verifications?.map((v) => [v.direction, v]));
    assert.equal(byDirection.get("Outbound")?.reason, "Verified");
    assert.match(byDirection.get("Outbound")!.message!, /forwarded to the relay, with a DKIM signature of example\.com intact/);
    assert.equal(byDirection.get("Inbound")?.reason, "Verified");
    assert.match(byDirection.get("Inbound")!.message!, /came back forwarded/);
    assert.ok(
      ready.status?.verifications?.every((v) => v.credentialVersion === undefined),
      "no credential version in Forwarded mode",
    );

    // What the helpdesk got: forwarded, with the relay's own truthful Authentication-Results, never auth=pass.
    // Known by their body: the relay removes X-SmtpConnector-* fields on the way in (the token field too).
    const forwarded = flow.helpdesk
      .messages()
      .filter((m) => m.content.includes("checks that mail for this support address flows through smtp-connector"));
    assert.ok(forwarded.length >= 2, `verification emails at the helpdesk: ${forwarded.length}`);
    for (const m of forwarded) {
      assert.doesNotMatch(m.content, /auth=pass/, "forwarded mail is never tagged authenticated");
      assert.deepEqual(
        m.rcptTo.map((r) => /<([^>]*)>/.exec(r)?.[1]?.toLowerCase()),
        ["support@example.com"],
        "the recipient is unchanged",
      );
    }
    const outboundCopy = forwarded.find((m) => /^From:.*support@example\.com/im.test(m.content));
    assert.ok(outboundCopy, "the outbound verification email came back");
    assert.match(outboundCopy.content, /Authentication-Results: [^;]+;[\s\S]*dkim=pass header\.d=example\.com/);
    assert.match(
      cloud.log(),
      new RegExp(`to=<support@example\\.com>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relayPorts.forwarded}, .*status=sent`),
    );

    // A reply: the helpdesk submits as the address; it leaves DKIM-signed (d=example.com) through the cloud service.
    const submission = await readSecret(flow.core, namespace, "example-com-submission", 30_000);
    const subject = `reply ${randomPassword().slice(0, 8)}`;
    await eventually(
      "the helpdesk's reply accepted",
      async () => {
        const sent = await helpdeskSubmit(submission, ["--header", `Subject: ${subject}`]);
        return sent.code === 0 ? true : undefined;
      },
      30_000,
    );
    const reply = await eventually(
      "the reply at the recipient's side",
      () => flow.recipientSide.messages().find((m) => m.content.includes(`Subject: ${subject}`)),
      30_000,
    );
    assert.match(reply.content, /\(Authenticated sender: u1@example\.com\)/, "through the cloud service with the address's own login");
    const resolver = (name: string, type: string) =>
      name === record.name && type === "TXT"
        ? Promise.resolve([[record.value]])
        : Promise.reject(Object.assign(new Error("NXDOMAIN"), { code: "ENOTFOUND" }));
    const verified = await dkimVerify(Buffer.from(reply.content.replace(/\r?\n/g, "\r\n"), "latin1"), { resolver });
    assert.deepEqual(
      verified.results.map((r) => `${r.signingDomain} ${r.status.result}`),
      ["example.com pass"],
    );

    const table = await kubectl(["get", "smtpdomain", "-n", namespace, "-o", "wide"]);
    assert.match(table.stdout, /\sForwarded\s+\S+$/m, table.stdout);
  });
});
