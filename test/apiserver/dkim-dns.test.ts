// The DKIM DNS check against a DNS server on loopback: a key whose record is
// missing or different is reported with its own reason, and a record found in
// DNS confirms the key, so the relay signs with it without recordPublished.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { startDns, type TestDns } from "../support/dns.js";
import { e2eClients, type Clients } from "../support/e2e.js";
import { applyManifests, eventually, freshNamespace, readSmtpDomain } from "../support/kube.js";
import { tlsSecretManifest } from "../support/mail.js";
import { smtpDomainManifest } from "../support/manifests.js";
import { startTestController } from "../support/operator-rbac.js";

describe("DKIM record check in DNS", () => {
  let dns: TestDns;
  let controller: Controller;
  let clients: Clients;
  before(async () => {
    clients = await e2eClients();
    dns = await startDns();
    controller = await startTestController({ settingsOverride: { dnsResolver: dns.address, dnsCheckIntervalMs: 1_000 } });
  });
  after(async () => {
    await controller.stop();
    await dns.stop();
  });

  test("missing, then another key, then the right record: each with its reason, and signing only at the end", async (t) => {
    const namespace = await freshNamespace(t, "dkim");
    await applyManifests(
      await tlsSecretManifest(namespace),
      smtpDomainManifest(namespace, { dkim: { keys: [{ selector: "dns1" }] }, relay: { tls: { secretName: "relay-tls" } } }),
    );
    const domain = async () => await readSmtpDomain(clients.custom, namespace, "example-com");
    const dkimCondition = async () => (await domain()).status?.conditions?.find((c) => c.type === "DKIMRecordPublished");
    const signing = async () => {
      const secret: k8s.V1Secret = await clients.core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
      return (
        parseConfig(Buffer.from(secret.data?.["relay.yaml"] ?? "", "base64").toString()).domains[0]!.outbound?.dkim.map(
          (k) => k.selector,
        ) ?? []
      );
    };
    const name = "dns1._domainkey.example.com";
    const record = await eventually("the record in status", async () => (await domain()).status?.dkim?.records?.[0]?.value);
    await eventually("RecordMissing", async () => ((await dkimCondition())?.reason === "RecordMissing" ? true : undefined));
    assert.deepEqual(await signing(), []);

    dns.txt.set(name, record.replace(/p=[A-Za-z0-9+/=]+/, `p=${Buffer.alloc(270, 7).toString("base64")}`));
    await eventually("RecordMismatch", async () => ((await dkimCondition())?.reason === "RecordMismatch" ? true : undefined));
    assert.match((await dkimCondition())!.message, /dns1\._domainkey\.example\.com publishes another key/);
    assert.deepEqual(await signing(), [], "never signs with a key whose record is not the published one");

    dns.txt.set(name, record);
    await eventually("confirmed by DNS", async () => ((await dkimCondition())?.status === "True" ? true : undefined));
    await eventually("signing with dns1", async () => ((await signing()).join() === "dns1" ? true : undefined));
    assert.equal((await domain()).status?.dkim?.pending, undefined);
  });
});
