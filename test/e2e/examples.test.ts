// From empty to Ready the way a platform team starts: `kubectl apply -f
// examples/` exactly as shipped, then the site's own values (where the
// helpdesk ingests, where the customer's servers are) set with kubectl, the
// customer's Postfix configured from the issued snippet, and the relay run
// from its Deployment. At each step `kubectl get smtpconnector` and
// `kubectl describe` tell the story.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { e2eClients, helpdeskSubmit, relayReady, requestVerification, startOperatorCommand, verificationFlags } from "../support/e2e.js";
import { runDeployment, type RunningDeployment } from "../support/deployment-runner.js";
import { applyManifests, eventually, kubectl, readSmtpDomain, readSupportAddress } from "../support/kube.js";
import { freePort, startSmtpSink, stopChild, swaksCustomer, type SmtpSink } from "../support/mail.js";
import { gitopsVerdicts } from "../support/gitops.js";
import { startSubmissionServer, type Postfix } from "../support/postfix.js";
import { relayPorts } from "../../relay/contract/pod.js";

const namespace = "acme-helpdesk"; // as the examples name it

describe("examples, from empty to Ready", () => {
  let operator: ChildProcess | undefined;
  let helpdesk: SmtpSink;
  let recipientSide: SmtpSink;
  let customer: (Postfix & { certFile: string }) | undefined;
  let relay: RunningDeployment | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    ({ core, apps, custom } = await e2eClients());
    // The helpdesk's ingestion speaks LMTP, as in the example.
    helpdesk = await startSmtpSink([], { lmtp: true });
    recipientSide = await startSmtpSink();
  });
  after(async () => {
    await relay?.stop();
    if (operator) await stopChild(operator);
    await customer?.stop();
    await helpdesk.stop();
    await recipientSide.stop();
    await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  });

  const domain = async () => await readSmtpDomain(custom, namespace, "example-com");
  const address = async (name: string) => await readSupportAddress(custom, namespace, name);
  const condition = (o: SmtpDomain | SupportAddress, type: string) => o.status?.conditions?.find((c) => c.type === type);
  const text = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
  const overview = async () => (await kubectl(["get", "smtpconnector", "-n", namespace])).stdout;
  const everything = async () => [await domain(), await address("support"), await address("billing")];

  test("kubectl apply -f examples/, the site's values, the customer's Postfix from the snippet: every resource Ready", async () => {
    const customerPort = await freePort();
    operator = await startOperatorCommand([
      ...verificationFlags(customerPort),
      // The example's spec.relay.hostnames is under the installation's allowed suffix, as a site sets it.
      "--allowed-hostname-suffixes",
      "helpdesk.example.net",
    ]);

    // 1. The examples as shipped: every object passes the API server's validation.
    const applied = await kubectl(["apply", "-f", "examples/"]);
    assert.equal(applied.code, 0, applied.stderr);
    for (const object of [
      "namespace/acme-helpdesk",
      "smtpdomain.smtpconnector.dev/example-com",
      "secret/support-smtp-credentials",
      "secret/billing-smtp-credentials",
      "supportaddress.smtpconnector.dev/support",
      "supportaddress.smtpconnector.dev/billing",
    ]) {
      assert.match(applied.stdout, new RegExp(`${object.replace(/\./g, "\\.")} created`));
    }

    // 2. The operator issues what it can at once; the story so far is in kubectl get.
    const issued = await eventually("credentials and certificate issued", async () => {
      const d = await domain();
      return condition(d, "CredentialsIssued")?.status === "True" && condition(d, "CertificateReady")?.status === "True" ? d : undefined;
    });
    assert.deepEqual(issued.status?.tls?.dnsNames?.[0], "relay.helpdesk.example.net");
    assert.equal(issued.status?.dkim?.pending, "helpdesk1", "the example's DKIM key waits for its record");
    assert.equal(condition(issued, "Ready")?.status, "False");
    let table = await overview();
    assert.match(table, /smtpdomain\.smtpconnector\.dev\/example-com\s+example\.com\s+1\s+2\s+False/, table);
    assert.match(table, /supportaddress\.smtpconnector\.dev\/support\s+support@example\.com\s+example-com\s+\S*\s+\S*\s+False/, table);
    const wide = await kubectl(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "wide"]);
    assert.match(wide.stdout, /relay\.helpdesk\.example\.net:587\s+helpdesk1\s+\d{4}-/, wide.stdout);
    // GitOps tools see work in progress, not a failure (kstatus and Argo CD's health, by their own code).
    for (const verdict of gitopsVerdicts(await everything())) {
      assert.deepEqual([verdict.kstatus, verdict.health], ["InProgress", "Progressing"], JSON.stringify(verdict));
    }
    // The operator writes status and its finalizer, never what was applied: no perpetual diff.
    const diff = await kubectl(["diff", "-f", "examples/"]);
    assert.equal(diff.code, 0, `kubectl diff -f examples/ shows a change:\n${diff.stdout}${diff.stderr}`);
    // As a GitOps tool syncing with server-side apply sees it: a dry run of the manifests changes nothing
    // but kubectl's own record of the earlier client-side apply (its last-applied annotation).
    const ssaDiff = await kubectl(["diff", "--server-side", "--force-conflicts", "-f", "examples/"]);
    const changed = ssaDiff.stdout.split("\n").filter((l) => /^[-+](?![-+]{2} )/.test(l));
    assert.deepEqual(
      changed.filter((l) => !/^[-+]\s+\{"apiVersion":/.test(l)),
      [],
      `a server-side apply dry run of examples/ shows a change:\n${ssaDiff.stdout}${ssaDiff.stderr}`,
    );

    // 3. The site's values: the helpdesk's ingestion, the customer's servers, and (to see verification at once) a short timeout.
    const site = (patch: object, kind: string, name: string) =>
      kubectl(["patch", kind, name, "-n", namespace, "--type=merge", "-p", JSON.stringify(patch)]);
    assert.equal(
      (
        await site(
          { spec: { inbound: { allowedSourceRanges: ["127.0.0.0/8"], delivery: { smtp: { host: "127.0.0.1", port: helpdesk.port } } } } },
          "smtpdomain",
          "example-com",
        )
      ).code,
      0,
    );
    const credentials = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    // The customer's Postfix: the MX relays example.com to the relay as the snippet says (verifying the relay's
    // certificate against ca.crt); its submission service has the two accounts of the example's Secrets.
    customer = await startSubmissionServer({
      relayTo: recipientSide.port,
      users: [
        { username: "support@example.com", password: "change-me", senders: ["support@example.com"] },
        { username: "billing@example.com", password: "change-me", senders: ["billing@example.com"] },
      ],
      forward: {
        domain: "example.com",
        relayPort: relayPorts.starttls,
        snippet: text(credentials, "postfix-main.cf"),
        relayHost: "relay.helpdesk.example.net",
        caPem: text(credentials, "ca.crt"),
      },
      port: customerPort,
    });
    await applyManifests({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "customer-ca", namespace },
      stringData: { "ca.crt": readFileSync(customer.certFile, "utf8") },
    });
    for (const name of ["support", "billing"]) {
      const patched = await site(
        {
          spec: {
            outbound: { host: "127.0.0.1", port: customer.port, tls: "StartTLS", caSecretRef: { name: "customer-ca" } },
            verification: { timeout: "30s" },
          },
        },
        "supportaddress",
        name,
      );
      assert.equal(patched.code, 0, patched.stderr);
    }

    // 4. The relay, from the Deployment the operator made.
    await eventually("the relay config with the site's values", async () =>
      text(await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }), "relay.yaml").includes(
        `port: ${customer!.port}`,
      )
        ? true
        : undefined,
    );
    const deployment = await apps.readNamespacedDeployment({ namespace, name: "example-com-relay" });
    relay = await runDeployment(core, deployment, apps);
    await relayReady();
    await relay.markAvailable();
    await eventually("the domain Ready", async () => (condition(await domain(), "Ready")?.status === "True" ? true : undefined), 30_000);

    // 5. Verification both ways for both addresses (asked for again now that everything is in place).
    const requested = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await requestVerification(namespace, requested, "--all");
    // Ready from the attempts this request started (an earlier attempt may have made one Ready already).
    for (const name of ["support", "billing"]) {
      await eventually(
        `${name} Ready after the requested verification`,
        async () => {
          const a = await address(name);
          // Ready may hold through a repeat of an earlier success; these attempts must have succeeded themselves.
          const repeated = (a.status?.verifications ?? []).filter(
            (v) => v.result === "Succeeded" && Date.parse(v.startedAt) >= Date.parse(requested),
          );
          return condition(a, "Ready")?.status === "True" && a.status?.lastHandledVerifyRequest === requested && repeated.length === 2
            ? true
            : undefined;
        },
        90_000,
      );
    }
    table = await overview();
    assert.match(table, /smtpdomain\.smtpconnector\.dev\/example-com\s+example\.com\s+1\s+2\s+True/, table);
    assert.match(table, /supportaddress\.smtpconnector\.dev\/billing\s+billing@example\.com\s+example-com\s+True\s+True\s+True/, table);
    assert.match(table, /supportaddress\.smtpconnector\.dev\/support\s+support@example\.com\s+example-com\s+True\s+True\s+True/, table);
    for (const verdict of gitopsVerdicts(await everything())) {
      assert.deepEqual([verdict.kstatus, verdict.health], ["Current", "Healthy"], JSON.stringify(verdict));
    }
    const described = (await kubectl(["describe", "supportaddress", "billing", "-n", namespace])).stdout;
    assert.match(described, /InboundVerified\s+True|Type:\s+InboundVerified[\s\S]*?Status:\s+True/);

    // 6. Mail, once each way, through the customer's Postfix.
    const inbound = await swaksCustomer(customer.port, "invoice 42", { to: "billing@example.com" });
    assert.equal(inbound.code, 0, inbound.output);
    await eventually(
      "the email at the helpdesk, tagged",
      () =>
        helpdesk
          .messages()
          .some((m) => m.content.includes("Subject: invoice 42") && /X-SmtpConnector-Auth: domain=example\.com; version=1/.test(m.content))
          ? true
          : undefined,
      30_000,
    );
    const submission = await core.readNamespacedSecret({ namespace, name: "example-com-submission" });
    const reply = await eventually(
      "the helpdesk's reply accepted",
      async () => {
        const attempt = await helpdeskSubmit(submission, ["--header", "Subject: Re: invoice 42"], {
          from: "billing@example.com",
          to: "jane@users.example.org",
        });
        return attempt.code === 0 ? attempt : undefined;
      },
      30_000,
    );
    assert.match(reply.output, /Accepted by the customer's server/);
    await eventually(
      "the reply at the recipient's side, sent as billing@",
      () =>
        recipientSide
          .messages()
          .some((m) => m.content.includes("Subject: Re: invoice 42") && /Authenticated sender: billing@example\.com/.test(m.content))
          ? true
          : undefined,
      30_000,
    );
  });
});
