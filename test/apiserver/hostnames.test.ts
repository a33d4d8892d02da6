// One relay host name, one SmtpDomain, across namespaces, on the real API
// server: a name another account's domain listed first is refused
// (CertificateReady=False HostnameConflict, an Event, Ready held back) and left
// out of the certificate; another domain's default relay host name is its own
// even against an older domain; and when the holder drops a name or is deleted
// the names move to the domains waiting for them, by themselves.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { operatorNamespace, startControllerWithCA } from "../support/operator-rbac.js";
import { applyManifests, conditionOf, eventually, freshNamespace, listEvents, readSmtpDomain } from "../support/kube.js";

const caSecret = { namespace: operatorNamespace, name: `test-hostnames-ca-${process.pid}` };

const manifest = (namespace: string, name: string, hostnames: string[]) => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name, namespace },
  spec: {
    domain: `${name}.${namespace}.example`,
    inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } },
    relay: { replicas: 1, hostnames },
  },
});

describe("relay host names are unique across namespaces", () => {
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;
  let stop: () => Promise<void>;

  before(async () => {
    ({ core, custom, stop } = await startControllerWithCA(caSecret, { allowedHostnameSuffixes: ["shared.test", "late.test"] }));
  });
  after(() => stop());

  const getDomain = (namespace: string, name: string) => readSmtpDomain(custom, namespace, name);
  const condition = conditionOf;
  /** The DNS names of the certificate in the domain's operator-issued TLS Secret. */
  const certificateNames = async (namespace: string, name: string) => {
    const secret = await core.readNamespacedSecret({ namespace, name: `${name}-relay-tls` });
    const pem = Buffer.from(secret.data?.["tls.crt"] ?? "", "base64").toString();
    return (new X509Certificate(pem).subjectAltName ?? "").split(", ").map((san) => san.replace(/^DNS:/, ""));
  };
  /** Waits until the domain's CertificateReady has this reason and its certificate's names satisfy `names`. */
  const certificate = (namespace: string, name: string, reason: string, names: (dns: string[]) => boolean) =>
    eventually(
      `${namespace}/${name}: CertificateReady ${reason}`,
      async () => {
        const d = await getDomain(namespace, name);
        if (condition(d, "CertificateReady")?.reason !== reason) return undefined;
        return names(await certificateNames(namespace, name)) ? d : undefined;
      },
      30_000,
    );
  /** Waits until the relay announces `host`, status gives it as the endpoint, and the client snippets name it (and never `not`). */
  const told = (namespace: string, name: string, host: string, not?: string) =>
    eventually(
      `${namespace}/${name}: told ${host}`,
      async () => {
        const d = await getDomain(namespace, name);
        if (!d.status?.relay?.endpoint?.startsWith(`${host}:`)) return undefined;
        const config = await core.readNamespacedSecret({ namespace, name: `${name}-relay-config` }).catch(() => undefined);
        if (
          !Buffer.from(config?.data?.["relay.yaml"] ?? "", "base64")
            .toString()
            .includes(`hostname: ${host}\n`)
        )
          return undefined;
        const credentials = await core.readNamespacedSecret({ namespace, name: `${name}-inbound-v1` }).catch(() => undefined);
        const snippets = Buffer.from(credentials?.data?.["postfix-main.cf"] ?? "", "base64").toString();
        if (!snippets.includes(`[${host}]:587`) || (not !== undefined && snippets.includes(not))) return undefined;
        return true;
      },
      30_000,
    );
  // creationTimestamp has a resolution of one second: the next domain is made in a later second, so its age alone decides.
  const aSecondAfter = (d: SmtpDomain) =>
    eventually("a later second", () => (Date.now() >= Date.parse(String(d.metadata.creationTimestamp)) + 1_000 ? true : undefined));

  test("the later claim is refused and gets the name once the holder drops it or is deleted; a default host name belongs to its domain", async (t) => {
    const teamA = await freshNamespace(t, "hna");
    const teamB = await freshNamespace(t, "hnb");
    const defaultOfMail = `mail.${teamA}.relay.test`;

    // Another domain's default name is never anyone else's, not even before that domain exists: the
    // installation's name policy refuses it outright (hostname-claims.ts would also keep it for its domain).
    await applyManifests(manifest(teamB, "early", [defaultOfMail, "early.shared.test"]));
    const squatting = await eventually("early: HostnameNotAllowed", async () => {
      const d = await getDomain(teamB, "early");
      return condition(d, "CertificateReady")?.reason === "HostnameNotAllowed" ? d : undefined;
    });
    assert.match(condition(squatting, "CertificateReady")!.message, new RegExp(defaultOfMail.replace(/\./g, "\\.")));
    await applyManifests(manifest(teamB, "early", ["early.shared.test"]));
    const early = await certificate(teamB, "early", "Issued", (dns) => dns.includes("early.shared.test") && !dns.includes(defaultOfMail));
    await aSecondAfter(early);

    // Team A's "mail", newer, lists its own default name and a shared name.
    await applyManifests(manifest(teamA, "mail", [defaultOfMail, "relay.shared.test"]));
    const mail = await certificate(teamA, "mail", "Issued", (dns) => dns.includes(defaultOfMail) && dns.includes("relay.shared.test"));
    await aSecondAfter(mail);

    // Team B's "late" lists the shared name after team A did: refused, and told without naming team A.
    await applyManifests(manifest(teamB, "late", ["relay.shared.test", "own.late.test"]));
    const late = await certificate(
      teamB,
      "late",
      "HostnameConflict",
      (dns) => !dns.includes("relay.shared.test") && dns.includes("own.late.test"),
    );
    const refused = condition(late, "CertificateReady")!;
    assert.equal(refused.status, "False");
    assert.match(refused.message, /relay\.shared\.test belongs to an SmtpDomain in another namespace/);
    assert.ok(!refused.message.includes(teamA), "another account's namespace is not named");
    assert.equal(condition(late, "Ready")?.status, "False", "Ready is held back");
    assert.equal(condition(late, "Ready")?.reason, "HostnameConflict");
    assert.equal(condition(late, "Stalled")?.reason, "HostnameConflict");
    await eventually("a Warning Event on the refused domain", async () => {
      const messages = await listEvents(teamB, "involvedObject.name=late,type=Warning,reason=HostnameConflict");
      return messages.includes("relay.shared.test") && !messages.includes(teamA) ? true : undefined;
    });
    // What the refused domain tells its customer names a host its certificate covers, never the refused one.
    await told(teamB, "late", "own.late.test", "relay.shared.test");
    // The holder is untouched by all this.
    assert.equal(condition(await getDomain(teamA, "mail"), "CertificateReady")?.reason, "Issued");

    // The holder goes: the name moves to the domain waiting for it, which nobody touched.
    await custom.deleteNamespacedCustomObject({
      group: "smtpconnector.dev",
      version: "v1alpha1",
      namespace: teamA,
      plural: "smtpdomains",
      name: "mail",
    });
    await certificate(teamB, "late", "Issued", (dns) => dns.includes("relay.shared.test") && dns.includes("own.late.test"));
    await told(teamB, "late", "relay.shared.test");
    await eventually("the holder gone", async () => ((await getDomain(teamA, "mail").catch(() => undefined)) ? undefined : true));

    // A name the older "early" holds: refused to "late" too; once early drops it, it moves.
    await applyManifests(manifest(teamB, "late", ["relay.shared.test", "own.late.test", "early.shared.test"]));
    await certificate(teamB, "late", "HostnameConflict", (dns) => !dns.includes("early.shared.test") && dns.includes("relay.shared.test"));
    await applyManifests(manifest(teamB, "early", ["other.shared.test"]));
    await certificate(teamB, "late", "Issued", (dns) => dns.includes("early.shared.test") && dns.includes("relay.shared.test"));
    await certificate(teamB, "early", "Issued", (dns) => !dns.includes("early.shared.test") && dns.includes("other.shared.test"));
    assert.equal(condition(await getDomain(teamB, "late"), "Stalled"), undefined, "nothing holds the waiting domain back any more");
  });
});
