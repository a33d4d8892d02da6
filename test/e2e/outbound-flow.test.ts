// Outbound as the operator sets it up: a SupportAddress's login for the
// customer's server (a real Postfix requiring SASL over TLS) reaches the relay
// the operator deployed; a verification email goes out through exactly that
// path; the helpdesk's submission login and the internal Service exist, and
// the helpdesk cannot send as an address that is not Ready.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { before, describe, test } from "node:test";
import { controlRequest } from "../../operator/address/control-client.js";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { pythonDkim } from "../support/dkim.js";
import { helpdeskSubmit, localServerAddress, startOperatorCommand } from "../support/e2e.js";
import { applyManifests, eventually, freshNamespace, readSecret, readSmtpDomain, secretText as text } from "../support/kube.js";
import { customerSecrets, mailFlow, runRelay } from "../support/mail-flow.js";
import { tlsSecretManifest } from "../support/mail.js";
import { startSubmissionServer } from "../support/postfix.js";

describe("outbound, end to end", () => {
  const flow = mailFlow();
  const { login } = flow;

  before(async () => {
    flow.customer = await startSubmissionServer({ relayTo: flow.recipientSide.port, users: [login] });
    flow.operator = await startOperatorCommand(["--system-domains", "helpdesk.test"]);
  });

  test("a verification email leaves through the address's own login; the helpdesk may not send as it before it is Ready", async (t) => {
    const namespace = await freshNamespace(t, "e2e-out");
    await applyManifests(
      await tlsSecretManifest(namespace),
      {
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        metadata: { name: "example-com", namespace },
        spec: {
          domain: "example.com",
          inbound: { delivery: { smtp: { host: "127.0.0.1", port: flow.helpdesk.port, tls: "None" } } },
          // The operator generates the key; the record is declared published, so the relay signs.
          dkim: { keys: [{ selector: "smtpc1", recordPublished: true }] },
          relay: { replicas: 1, tls: { secretName: "relay-tls" } },
        },
      },
      ...customerSecrets(namespace, flow),
      localServerAddress(namespace, flow.customer!.port),
    );
    const read = (name: string) => readSecret(flow.core, namespace, name);
    await eventually("the sender in the relay config", async () =>
      text(await read("example-com-relay-config"), "relay.yaml").includes(`username: ${login.username}`) ? true : undefined,
    );
    const config = await read("example-com-relay-config");
    assert.ok(!text(config, "relay.yaml").includes(login.password), "the password is a file next to the config, not in it");
    assert.ok(Object.keys(config.data ?? {}).some((k) => k.endsWith(".password")));

    // The submission port is only on the internal Service, never on the customer-facing one.
    const services = await eventually("the internal Service", () =>
      flow.core.readNamespacedService({ namespace, name: "example-com-relay-internal" }),
    );
    assert.equal(services.spec?.type, "ClusterIP");
    assert.deepEqual(
      services.spec?.ports?.map((p) => p.port),
      [2587, 8443],
    );
    const facing = await flow.core.readNamespacedService({ namespace, name: "example-com-relay" });
    assert.deepEqual(
      facing.spec?.ports?.map((p) => p.port),
      [587, 465],
    );

    await runRelay(flow, namespace, { available: false });

    // The operator's call: the token from the control Secret.
    const token = text(await read("example-com-relay-control"), "token");
    // HTTPS, pinned to the certificate in the relay's TLS Secret, as the operator does.
    const pin = new X509Certificate(text(await read("relay-tls"), "tls.crt")).fingerprint256;
    const response = await controlRequest("https://127.0.0.1:8443/v1/verification-sends", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({
        domain: "example.com",
        from: "support@example.com",
        to: "check@elsewhere.test",
        token: "vrf_e2e_0123456789abcdef",
      }),
      pins: [pin],
    });
    assert.equal(response.status, 200, JSON.stringify(await response.json()));
    await eventually(
      "the verification email at the recipient's side",
      () => (flow.recipientSide.messages().some((m) => m.content.includes("vrf_e2e_0123456789abcdef")) ? true : undefined),
      20_000,
    );
    const sent = flow.recipientSide.messages().find((m) => m.content.includes("vrf_e2e_0123456789abcdef"))!;
    assert.match(sent.content, /\(Authenticated sender: u1@example\.com\)/);
    // Signed for example.com with the generated key; verified against the record the SmtpDomain's status publishes.
    const domainStatus = await readSmtpDomain(flow.custom, namespace);
    const record = domainStatus.status?.dkim?.records?.find((r) => r.selector === "smtpc1");
    assert.ok(record?.signing, "status says smtpc1 signs");
    const resolver = (name: string, type: string) =>
      name === record.name && type === "TXT"
        ? Promise.resolve([[record.value]])
        : Promise.reject(Object.assign(new Error("NXDOMAIN"), { code: "ENOTFOUND" }));
    const verified = await dkimVerify(Buffer.from(sent.content.replace(/\r?\n/g, "\r\n"), "latin1"), { resolver });
    assert.deepEqual(
      verified.results.map((r) => `${r.signingDomain} ${r.status.result}`),
      ["example.com pass"],
    );
    assert.equal(await pythonDkim(sent.content.replace(/\r?\n/g, "\r\n"), { [record.name]: record.value }), "True", "python3-dkim agrees");

    // The helpdesk's own login, from the Secret the operator issued for it.
    const submission = await read("example-com-submission");
    assert.equal(text(submission, "port"), "2587");
    assert.equal(text(submission, "host"), `example-com-relay-internal.${namespace}.svc`);
    const attempt = await helpdeskSubmit(submission);
    assert.notEqual(attempt.code, 0);
    // Not Ready *yet* is temporary: the helpdesk's queue keeps the message and retries (issue 18).
    assert.match(attempt.output, /451 4\.7\.1 support@example\.com is a support address of example\.com that is not Ready yet/);
    const wrongDomain = await helpdeskSubmit(submission, [], { from: "noreply@helpdesk.test" });
    assert.match(wrongDomain.output, /550 5\.7\.1 noreply@helpdesk\.test is in the helpdesk's own domain/);
  });
});
