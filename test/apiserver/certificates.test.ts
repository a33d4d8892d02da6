// The relay's TLS certificate against the real API server: issued from the
// installation's CA for the relay's names, renewed before it expires, issued
// again when the CA changes; a referenced Secret judged (names, expiry) and
// followed when it is replaced; the CA handed to the customer's server; a
// host name outside the installation's allowed suffixes refused, and the CA
// name-constrained to what it may vouch for. The CA's rotation: ca-rotation.test.ts. Each reason a
// certificate is judged with is unit-tested from plain objects (test/unit/domain-reconcile-plan.test.ts).
import assert from "node:assert/strict";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { SmtpDomain } from "../../crds/schema.js";
import { issueCertificate, readNameConstraints } from "../../operator/tls/x509.js";
import { gitopsVerdicts } from "../support/gitops.js";
import { operatorNamespace, startControllerWithCA } from "../support/operator-rbac.js";
import { applyManifests, deleteDomainsAtEnd, eventually, freshNamespace, kubectl, listEvents, readSmtpDomain } from "../support/kube.js";
import { smtpDomainManifest } from "../support/manifests.js";

const caSecret = { namespace: operatorNamespace, name: `test-ca-${process.pid}` };

const domainManifest = (namespace: string, relay: object) => smtpDomainManifest(namespace, { relay });

/** A kubernetes.io/tls Secret with a self-signed certificate for `names`, valid over [from, to]. */
function tlsSecret(namespace: string, names: string[], from: Date, to: Date) {
  const key = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
  const subject = { commonName: names[0]! };
  const certPem = issueCertificate(
    { subject, publicKey: key, notBefore: from, notAfter: to, subjectAltNames: names },
    { subject, privateKey: key },
  );
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "cert-manager-relay", namespace },
    type: "kubernetes.io/tls",
    stringData: { "tls.crt": certPem, "tls.key": key.export({ format: "pem", type: "pkcs8" }).toString() },
  };
}

describe("relay TLS certificates", () => {
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;
  let stop: () => Promise<void>;

  before(async () => {
    // Certificates live 24 s and are renewed 16 s ahead: a renewal every 8 s.
    ({ core, custom, stop } = await startControllerWithCA(caSecret, {
      certificates: { durationMs: 24_000, renewBeforeMs: 16_000 },
      allowedHostnameSuffixes: ["helpdesk.example.net"],
    }));
  });
  after(() => stop());

  const getDomain = (namespace: string) => readSmtpDomain(custom, namespace);
  const condition = (d: SmtpDomain, type: string) => d.status?.conditions?.find((c) => c.type === type);
  const text = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
  const relayTls = (namespace: string) => core.readNamespacedSecret({ namespace, name: "example-com-relay-tls" });

  test("issued from the installation's CA for the customer's host names and the Services, with the CA handed to the customer", async (t) => {
    const namespace = await freshNamespace(t, "cert");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(domainManifest(namespace, { hostnames: ["relay.helpdesk.example.net", "relay2.helpdesk.example.net"] }));
    const domain = await eventually("CertificateReady=True", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.status === "True" ? d : undefined;
    });
    assert.equal(condition(domain, "CertificateReady")?.reason, "Issued");
    const secret = await relayTls(namespace);
    assert.equal(secret.type, "kubernetes.io/tls");
    assert.equal(secret.metadata?.ownerReferences?.[0]?.uid, domain.metadata.uid);
    const ca = text(await core.readNamespacedSecret(caSecret), "tls.crt");
    assert.equal(text(secret, "ca.crt"), ca, "ca.crt is the installation's CA");
    const cert = new X509Certificate(text(secret, "tls.crt"));
    assert.ok(cert.checkIssued(new X509Certificate(ca)) && cert.verify(new X509Certificate(ca).publicKey));
    const names = [
      "relay.helpdesk.example.net",
      "relay2.helpdesk.example.net",
      ...["example-com-relay", "example-com-relay-internal"].flatMap((s) => [
        `${s}.${namespace}.svc`,
        `${s}.${namespace}.svc.cluster.local`,
      ]),
    ];
    for (const name of names) assert.equal(cert.checkHost(name), name, `the certificate covers ${name}`);
    assert.deepEqual(domain.status?.tls?.dnsNames, names);
    assert.equal(domain.status?.tls?.issuedByOperator, true);
    assert.equal(Date.parse(domain.status?.tls?.notAfter ?? ""), Math.floor(Date.parse(cert.validTo) / 1000) * 1000);
    assert.ok(domain.status?.tls?.renewalTime);

    // The customer's server is told which CA to trust, in the credentials Secret.
    const credentials = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    assert.equal(text(credentials, "ca.crt"), ca);
    assert.match(
      text(credentials, "postfix-main.cf"),
      /smtp_tls_policy_maps = inline:\{ \{ \[relay\.helpdesk\.example\.net\]:587 = secure match=relay\.helpdesk\.example\.net tafile=\/etc\/postfix\/smtp-connector-ca\.crt \} \}/,
    );
    assert.match(text(credentials, "exchange-connector.txt"), /Windows has no per-connector trust store.*\n.*Do not import it there/);
    assert.doesNotMatch(text(credentials, "exchange-connector.txt"), /^\s*Certificate: import/m);
    assert.match(
      text(credentials, "exim.conf"),
      /tls_verify_certificates = \/etc\/exim4\/smtp-connector-ca\.crt\n {2}# .*\n {2}tls_verify_hosts = \*/,
    );

    const wide = await kubectl(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "wide"]);
    assert.match(wide.stdout, /CERT EXPIRY[\s\S]*\d{4}-\d\d-\d\dT/);
  });

  test("renewed before it expires, with a new key, and the CA kept", async (t) => {
    const namespace = await freshNamespace(t, "cert");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(domainManifest(namespace, {}));
    const first = await eventually("a certificate", () => relayTls(namespace));
    const firstCert = new X509Certificate(text(first, "tls.crt"));
    const renewed = await eventually(
      "a renewed certificate",
      async () => {
        const s = await relayTls(namespace);
        return new X509Certificate(text(s, "tls.crt")).serialNumber !== firstCert.serialNumber ? s : undefined;
      },
      40_000,
    );
    const cert = new X509Certificate(text(renewed, "tls.crt"));
    assert.ok(Date.parse(cert.validTo) > Date.parse(firstCert.validTo), "the new certificate lasts longer");
    assert.ok(Date.parse(firstCert.validTo) - Date.now() > 0, "renewed before the old one expired");
    assert.notEqual(text(renewed, "tls.key"), text(first, "tls.key"), "a new key with each certificate");
    assert.equal(text(renewed, "ca.crt"), text(first, "ca.crt"));
    await eventually("status shows the new expiry", async () => {
      const d = await getDomain(namespace);
      return d.status?.tls?.notAfter === new Date(Math.floor(Date.parse(cert.validTo) / 1000) * 1000).toISOString().replace(".000Z", "Z")
        ? true
        : undefined;
    });
    const events = await listEvents(namespace, "reason=CertificateIssued");
    assert.match(events, /relay certificate issued into Secret example-com-relay-tls \(it expires at/);
  });

  test("a new CA (its Secret deleted) means every operator-issued certificate is issued again from it", async (t) => {
    const namespace = await freshNamespace(t, "cert");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(domainManifest(namespace, {}));
    const first = await eventually("a certificate", () => relayTls(namespace));
    await core.deleteNamespacedSecret(caSecret);
    const reissued = await eventually("a certificate from a new CA", async () => {
      const s = await relayTls(namespace);
      return text(s, "ca.crt") !== text(first, "ca.crt") ? s : undefined;
    });
    const ca = new X509Certificate(text(await core.readNamespacedSecret(caSecret), "tls.crt"));
    assert.equal(text(reissued, "ca.crt"), ca.toString());
    assert.ok(new X509Certificate(text(reissued, "tls.crt")).checkIssued(ca));
  });

  test("a host name outside the allowed suffixes: HostnameNotAllowed, no certificate for it, an Event, Ready held back; the CA cannot vouch for it", async (t) => {
    const namespace = await freshNamespace(t, "cert");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(domainManifest(namespace, { hostnames: ["relay.helpdesk.example.net", "mail.google.com"] }));
    let domain = await eventually("HostnameNotAllowed", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.reason === "HostnameNotAllowed" ? d : undefined;
    });
    assert.equal(condition(domain, "CertificateReady")?.status, "False");
    assert.match(
      condition(domain, "CertificateReady")!.message,
      /mail\.google\.com is not under the allowed suffixes helpdesk\.example\.net .*no certificate is issued/,
    );
    assert.equal(condition(domain, "Ready")?.status, "False");
    assert.equal(condition(domain, "Ready")?.reason, "HostnameNotAllowed");
    assert.equal(condition(domain, "Stalled")?.reason, "HostnameNotAllowed");
    await eventually("the Warning Event", async () => {
      const warnings = await listEvents(namespace, "reason=HostnameNotAllowed,type=Warning");
      return /mail\.google\.com/.test(warnings) ? true : undefined;
    });
    await assert.rejects(relayTls(namespace), "no relay certificate Secret at all");
    const credentials = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }).catch(() => undefined);
    assert.equal(credentials?.data?.["ca.crt"], undefined, "no CA handed out for a domain refused its names");

    // The CA itself is constrained to the allowed suffix, the default relay suffix and the cluster names.
    const ca = new X509Certificate(text(await core.readNamespacedSecret(caSecret), "tls.crt"));
    assert.deepEqual(readNameConstraints(ca.raw), {
      permittedDnsNames: ["helpdesk.example.net", "relay.test", "svc", "svc.cluster.local"],
      excludeAllIpAddresses: true,
    });

    // Corrected: the certificate is issued for the allowed names only.
    await applyManifests(domainManifest(namespace, { hostnames: ["relay.helpdesk.example.net"] }));
    domain = await eventually("CertificateReady=True", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.status === "True" ? d : undefined;
    });
    const cert = new X509Certificate(text(await relayTls(namespace), "tls.crt"));
    assert.equal(cert.checkHost("mail.google.com"), undefined);
    assert.equal(cert.checkHost("relay.helpdesk.example.net"), "relay.helpdesk.example.net");
  });

  test("a referenced Secret is judged against the host names and its expiry, and followed when replaced", async (t) => {
    const namespace = await freshNamespace(t, "cert");
    deleteDomainsAtEnd(t, namespace);
    const day = 86_400_000;
    const now = Date.now();
    const hostnames = ["relay.helpdesk.example.net"];
    const relay = { hostnames, tls: { secretName: "cert-manager-relay" } };

    await applyManifests(domainManifest(namespace, relay));
    let domain = await eventually("SecretNotFound", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.reason === "SecretNotFound" ? d : undefined;
    });
    assert.match(
      condition(domain, "CertificateReady")!.message,
      /cert-manager-relay does not exist: create a kubernetes\.io\/tls Secret .* for relay\.helpdesk\.example\.net, or remove spec\.relay\.tls/,
    );
    assert.equal(condition(domain, "Ready")?.reason, "SecretNotFound");

    await applyManifests(tlsSecret(namespace, ["mx.elsewhere.example"], new Date(now - day), new Date(now + 60 * day)));
    domain = await eventually("HostnamesNotCovered", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.reason === "HostnamesNotCovered" ? d : undefined;
    });
    assert.equal(condition(domain, "CertificateReady")?.status, "False");
    assert.equal(condition(domain, "Stalled")?.reason, "HostnamesNotCovered");
    assert.match(
      condition(domain, "CertificateReady")!.message,
      /does not cover relay\.helpdesk\.example\.net \(it names mx\.elsewhere\.example\)/,
    );
    // GitOps tools report a failure that needs a change, with the reason (kstatus and Argo CD, by their own code).
    const [verdict] = gitopsVerdicts([domain]);
    assert.equal(verdict?.kstatus, "Failed");
    assert.equal(verdict?.health, "Degraded");
    assert.match(verdict?.healthMessage ?? "", /^HostnamesNotCovered: /);

    // cert-manager replaces the Secret: followed at once (the Secret is watched).
    await applyManifests(tlsSecret(namespace, hostnames, new Date(now - day), new Date(now + 60 * day)));
    domain = await eventually("Valid", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.reason === "Valid" ? d : undefined;
    });
    assert.equal(domain.status?.tls?.issuedByOperator, false);
    assert.deepEqual(domain.status?.tls?.dnsNames, hostnames);
    assert.equal(domain.status?.tls?.renewalTime, undefined, "the operator does not renew what it did not issue");
    assert.equal(condition(domain, "Stalled"), undefined);
    const credentials = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
    assert.equal(credentials.data?.["ca.crt"], undefined, "a certificate from elsewhere needs no CA from us");
    assert.match(text(credentials, "postfix-main.cf"), /= secure match=relay\.helpdesk\.example\.net \} \}/);
    assert.match(text(credentials, "exim.conf"), /tls_verify_certificates = system/);

    await applyManifests(tlsSecret(namespace, hostnames, new Date(now - 80 * day), new Date(now + 5 * day)));
    domain = await eventually("ExpiringSoon", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.reason === "ExpiringSoon" ? d : undefined;
    });
    assert.equal(condition(domain, "CertificateReady")?.status, "True", "a warning, the relay still serves");

    await applyManifests(tlsSecret(namespace, hostnames, new Date(now - 90 * day), new Date(now - day)));
    domain = await eventually("Expired", async () => {
      const d = await getDomain(namespace);
      return condition(d, "CertificateReady")?.reason === "Expired" ? d : undefined;
    });
    assert.equal(condition(domain, "Ready")?.status, "False");
    const described = await eventually("the expiry in describe", async () => {
      const d = await kubectl(["describe", "smtpdomain", "example-com", "-n", namespace]);
      return /Warning\s+Expired/.test(d.stdout) ? d.stdout : undefined;
    });
    assert.match(described, /CertificateReady=False: the relay's certificate in Secret cert-manager-relay expired at/);
  });
});
