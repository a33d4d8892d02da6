// Verification both ways, as a customer lives it: a real Postfix is the
// customer's server (its MX forwards the domain to the relay with the inbound
// credential over TLS; its submission service requires each address's own
// login). The operator proves both paths with one-time tokens, the helpdesk
// can send only after that, and each failure mode gets its own reason, which
// `kubectl get` and `kubectl describe` show.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
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
  secretText as text,
} from "../support/kube.js";
import { customerSecrets, mailFlow, runRelay } from "../support/mail-flow.js";
import { smtpDomainManifest } from "../support/manifests.js";
import { freePort } from "../support/mail.js";
import { startSubmissionServer } from "../support/postfix.js";
import { relayPorts } from "../../relay/contract/pod.js";

describe("verification, end to end", () => {
  const flow = mailFlow();
  const { login } = flow;

  test("both directions verify through the customer's Postfix; the helpdesk may send once Ready; wrong credentials and a revoked inbound credential get their own reasons", async (t) => {
    const namespace = await freshNamespace(t, "e2e-vrf");
    const domain = (credentials: object[]) =>
      smtpDomainManifest(namespace, { credentials, delivery: { host: "127.0.0.1", port: flow.helpdesk.port } });
    // The customer's server listens here once it knows the inbound credential; the operator is told now.
    const customerPort = await freePort();
    flow.operator = await startOperatorCommand(verificationFlags(customerPort));
    // The relay's certificate is the operator's own (issued from its CA).
    await applyManifests(domain([{ version: 1 }]));
    const read = (name: string) => readSecret(flow.core, namespace, name);
    const v1 = await read("example-com-inbound-v1");

    // The customer's server, set up from the credential Secret's snippet as its admin would: it verifies
    // the relay's certificate against ca.crt for the relay's host name (smtp_tls_policy_maps ... secure).
    const customer = (flow.customer = await startSubmissionServer({
      relayTo: flow.recipientSide.port,
      users: [login],
      forward: {
        domain: "example.com",
        relayPort: relayPorts.starttls,
        snippet: text(v1, "postfix-main.cf"),
        relayHost: `example-com.${namespace}.relay.smtp-connector.local`,
        caPem: text(v1, "ca.crt"),
      },
      port: customerPort,
    }));
    await applyManifests(
      ...customerSecrets(namespace, flow),
      localServerAddress(namespace, customer.port, { verification: { timeout: "15s", interval: "1h" } }),
    );
    await runRelay(flow, namespace);

    const address = () => readSupportAddress(flow.custom, namespace);
    await eventually("the address Ready", async () => (condition(await address(), "Ready")?.status === "True" ? true : undefined), 60_000);
    // The customer's Postfix checked the relay's certificate (level secure, the CA from the Secret), not merely encrypted.
    assert.match(
      customer.log(),
      new RegExp(`Verified TLS connection established to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relayPorts.starttls}`),
    );
    const verified = await address();
    assert.deepEqual(
      verified.status?.verifications?.map((v) => `${v.direction} ${v.result} ${v.reason}`),
      ["Inbound Succeeded Verified", "Outbound Succeeded Verified"],
    );
    assert.ok(
      verified.status?.verifications?.every((v) => /^[0-9a-f]{64}$/.test(v.tokenSha256 ?? "")),
      "only token digests are kept",
    );
    // Both tokens reached the helpdesk through the authenticated relay, tagged.
    const tagged = flow.helpdesk.messages().filter((m) => /X-SmtpConnector-Auth: domain=example\.com; version=1/.test(m.content));
    assert.ok(tagged.length >= 2, `verification emails at the helpdesk: ${tagged.length}`);
    const table = await kubectl(["get", "supportaddresses", "-n", namespace]);
    assert.match(table.stdout, /support\s+support@example\.com\s+example-com\s+True\s+True\s+True/, table.stdout);
    // The category shows both kinds at once, as a platform engineer first looks.
    const overview = await kubectl(["get", "smtpconnector", "-n", namespace]);
    assert.match(overview.stdout, /smtpdomain\.smtpconnector\.dev\/example-com\s+example\.com\s+1\s+1\s+True/, overview.stdout);
    assert.match(
      overview.stdout,
      /supportaddress\.smtpconnector\.dev\/support\s+support@example\.com\s+example-com\s+True\s+True\s+True/,
      overview.stdout,
    );

    // The relay's report of last use reaches the SmtpDomain's status: the admin sees version 1 in use.
    const smtpDomain = () => readSmtpDomain(flow.custom, namespace);
    await eventually(
      "version 1's last use in status",
      async () => ((await smtpDomain()).status?.credentials?.find((c) => c.version === 1)?.lastUsedAt ? true : undefined),
      60_000,
    );
    assert.match((await kubectl(["describe", "smtpdomain", "example-com", "-n", namespace])).stdout, /Last Used At:\s+2\d{3}-/);

    // Ready: the relay config marks the sender ready, and the helpdesk may send as it.
    const submission = await read("example-com-submission");
    const submit = (subject: string) => helpdeskSubmit(submission, ["--header", `Subject: ${subject}`]);
    await eventually(
      "the helpdesk's first notification accepted",
      async () => ((await submit("ticket update")).code === 0 ? true : undefined),
      20_000,
    );
    await eventually(
      "the notification at the recipient's side",
      () => (flow.recipientSide.messages().some((m) => m.content.includes("Subject: ticket update")) ? true : undefined),
      20_000,
    );

    // Wrong outbound password: the changed Secret re-verifies, and the reason says what to fix.
    await applyManifests({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "support-smtp", namespace },
      stringData: { username: login.username, password: "not-the-password" },
    });
    await eventually(
      "OutboundVerified False with InvalidCredentials",
      async () => (condition(await address(), "OutboundVerified")?.reason === "InvalidCredentials" ? true : undefined),
      60_000,
    );
    const failed = await address();
    assert.equal(condition(failed, "Ready")?.status, "False");
    assert.equal(condition(failed, "Stalled")?.status, "True");
    const described = await kubectl(["describe", "supportaddress", "support", "-n", namespace]);
    assert.match(described.stdout, /InvalidCredentials/);
    assert.match(described.stdout, /authentication failed/i);

    // Fixed, and a verification requested by annotation: echoed back once handled.
    await applyManifests({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "support-smtp", namespace },
      stringData: { username: login.username, password: login.password },
    });
    await requestVerification(namespace, "2026-11-25T17:00:00Z");
    await eventually(
      "verified again after the fix",
      async () => {
        const a = await address();
        return condition(a, "Ready")?.status === "True" && a.status?.lastHandledVerifyRequest === "2026-11-25T17:00:00Z" ? true : undefined;
      },
      60_000,
    );

    // A rotation under steady traffic: version 2 is added while the helpdesk keeps sending as the address.
    // The address stays Ready while it is verified again beside version 1, so no notification is refused.
    // The relay learns of the fixed address through its config: from its first accepted notification on.
    await eventually("the helpdesk sending again", async () => ((await submit("after the fix")).code === 0 ? true : undefined), 20_000);
    let sending = true;
    const replies: number[] = [];
    const refusals: string[] = [];
    const traffic = (async () => {
      for (let i = 0; sending; i++) {
        const result = await submit(`rotation ${i}`);
        replies.push(result.code);
        if (result.code !== 0)
          refusals.push(
            result.output
              .split("\n")
              .filter((l) => /^<~?\*? *[45]\d\d/.test(l))
              .join(" | "),
          );
      }
    })();
    await eventually("traffic flowing", () => (replies.length >= 3 ? true : undefined), 20_000);
    await applyManifests(domain([{ version: 1 }, { version: 2 }]));
    await eventually(
      "verified again with versions 1,2 active",
      async () => {
        const a = await address();
        return a.status?.verifications?.every((v) => v.result === "Succeeded" && v.basis?.endsWith("inbound=1,2")) ? true : undefined;
      },
      90_000,
    );
    const during = replies.length;
    await eventually("a few more after it", () => (replies.length >= during + 3 ? true : undefined), 20_000);
    sending = false;
    await traffic;
    const story = (
      await kubectl([
        "get",
        "events",
        "-n",
        namespace,
        "--sort-by=.lastTimestamp",
        "-o",
        "custom-columns=T:.lastTimestamp,OBJ:.involvedObject.name,REASON:.reason,MSG:.message",
      ])
    ).stdout;
    assert.deepEqual(refusals, [], `refused during the rotation: ${refusals.length} of ${replies.length}\n${story}`);
    assert.equal(condition(await address(), "Ready")?.status, "True");
    t.diagnostic(`rotation under traffic: ${replies.length} notifications submitted, none refused`);

    // The customer's server keeps using version 1 after it was revoked: inbound verification says so.
    await applyManifests(domain([{ version: 1, state: "Revoked" }, { version: 2 }]));
    await requestVerification(namespace, "2026-11-25T17:05:00Z");
    await eventually(
      "InboundVerified False with ArrivedRevokedCredential",
      async () => (condition(await address(), "InboundVerified")?.reason === "ArrivedRevokedCredential" ? true : undefined),
      90_000,
    );
  });
});
