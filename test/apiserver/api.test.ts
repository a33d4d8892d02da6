// The smtpconnector.dev API on a real API server: the examples apply, every
// rule checkable inside one object rejects bad input with its message, defaults
// land, and kubectl shows the columns and descriptions platform teams read.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { before, describe, test } from "node:test";
import { stringify } from "yaml";
import { installCRDs } from "../support/crds.js";
import { freshNamespace, kubectl } from "../support/kube.js";

const examples = fileURLToPath(new URL("../../examples/", import.meta.url));

/** kubectl explain wraps lines: match words separated by any white space. */
const words = (text: string) => new RegExp(text.split(" ").join("\\s+"));

type Manifest = Record<string, unknown> & { spec: Record<string, unknown> };

function domain(namespace: string, spec: Record<string, unknown> = {}, name = "example-com"): Manifest {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name, namespace },
    spec: {
      domain: "example.com",
      inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } },
      ...spec,
    },
  };
}

function address(namespace: string, spec: Record<string, unknown> = {}, name = "support"): Manifest {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SupportAddress",
    metadata: { name, namespace },
    spec: {
      address: "support@example.com",
      domainRef: { name: "example-com" },
      outbound: { host: "smtp.example.com", port: 587, tls: "StartTLS", credentialsSecretRef: { name: "support-smtp" } },
      ...spec,
    },
  };
}

async function apply(manifest: Manifest) {
  return kubectl(["apply", "--server-side", "--field-manager=smtpc-tests", "-f", "-"], { input: stringify(manifest) });
}

const inbound = (extra: Record<string, unknown>) => ({
  inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } }, ...extra },
});
const outbound = (extra: Record<string, unknown>) => ({
  outbound: { host: "smtp.example.com", port: 587, tls: "StartTLS", credentialsSecretRef: { name: "support-smtp" }, ...extra },
});

// One row per rule: a manifest that breaks exactly that rule, and the message
// the API server must answer with.
const invalid: { rule: string; manifest: (ns: string) => Manifest; message: RegExp }[] = [
  { rule: "domain syntax", manifest: (ns) => domain(ns, { domain: "Example.COM." }), message: /domain must be a lowercase DNS name/ },
  { rule: "domain required", manifest: (ns) => domain(ns, { domain: undefined }), message: /spec.domain: Required value/ },
  {
    rule: "authProtocol enum",
    manifest: (ns) => domain(ns, inbound({ authProtocol: "CRAM-MD5" })),
    message: /spec.inbound.authProtocol: Unsupported value: "CRAM-MD5"/,
  },
  {
    rule: "at most two active credential versions",
    manifest: (ns) => domain(ns, inbound({ credentials: [{ version: 1 }, { version: 2 }, { version: 3 }] })),
    message: /at most two credential versions may be Active at once/,
  },
  {
    rule: "credential versions are unique",
    manifest: (ns) => domain(ns, inbound({ credentials: [{ version: 1 }, { version: 1, state: "Revoked" }] })),
    message: /spec.inbound.credentials: duplicate entries for key \[version=1\]/,
  },
  {
    rule: "Forwarded mode issues no inbound credentials",
    manifest: (ns) => domain(ns, inbound({ mode: "Forwarded", credentials: [{ version: 1 }] })),
    message:
      /spec.inbound.credentials: Invalid value: .*spec.inbound.credentials is not allowed with mode: Forwarded .*remove spec.inbound.credentials/,
  },
  {
    rule: "inbound mode enum",
    manifest: (ns) => domain(ns, inbound({ mode: "Relayed" })),
    message: /spec.inbound.mode: Unsupported value: "Relayed"/,
  },
  {
    rule: "credential version is positive",
    manifest: (ns) => domain(ns, inbound({ credentials: [{ version: 0 }] })),
    message: /should be greater than or equal to 1/,
  },
  {
    rule: "grace period is a duration",
    manifest: (ns) => domain(ns, inbound({ gracePeriod: "one week" })),
    message: /spec.inbound.gracePeriod: Invalid value/,
  },
  {
    rule: "source ranges are CIDRs",
    manifest: (ns) => domain(ns, inbound({ allowedSourceRanges: ["203.0.113.7"] })),
    message: /allowedSourceRanges must be CIDR ranges/,
  },
  {
    rule: "exactly one delivery target",
    manifest: (ns) => domain(ns, { inbound: { delivery: {} } }),
    message: /set exactly one of delivery.smtp or delivery.webhook/,
  },
  {
    rule: "webhook must be https",
    manifest: (ns) =>
      domain(ns, { inbound: { delivery: { webhook: { url: "http://helpdesk.example/ingest", signingSecretRef: { name: "hmac" } } } } }),
    message: /webhook url must be an https:\/\/ URL/,
  },
  {
    rule: "next-hop credentials need TLS",
    manifest: (ns) =>
      domain(ns, {
        inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None", authSecretRef: { name: "ingest" } } } },
      }),
    message: /authSecretRef requires TLS/,
  },
  {
    rule: "DKIM selector syntax",
    manifest: (ns) => domain(ns, { dkim: { keys: [{ selector: "My_Selector" }] } }),
    message: /selector must be a lowercase DNS label/,
  },
  {
    rule: "relay replicas bounds",
    manifest: (ns) => domain(ns, { relay: { replicas: 0 } }),
    message: /spec.relay.replicas: Invalid value: 0/,
  },
  {
    rule: "relay resources are quantities",
    manifest: (ns) => domain(ns, { relay: { resources: { requests: { memory: "256 MB" } } } }),
    message: /must be a quantity such as 500m/,
  },
  {
    rule: "relay resource requests within limits",
    manifest: (ns) =>
      domain(ns, { relay: { resources: { requests: { cpu: "2", memory: "1Gi" }, limits: { cpu: "1500m", memory: "1Gi" } } } }),
    message: /a request must not exceed its limit/,
  },
  {
    rule: "relay Service type enum",
    manifest: (ns) => domain(ns, { relay: { service: { type: "ExternalName" } } }),
    message: /Unsupported value: "ExternalName"/,
  },
  {
    rule: "address syntax: display name",
    manifest: (ns) => address(ns, { address: "Support <support@example.com>" }),
    message: /address must be a plain mailbox/,
  },
  {
    rule: "address syntax: quoted local part",
    manifest: (ns) => address(ns, { address: '"a@b"@example.com' }),
    message: /address must be a plain mailbox/,
  },
  {
    rule: "address syntax: percent hack",
    manifest: (ns) => address(ns, { address: "support%evil.org@example.com" }),
    message: /address must be a plain mailbox/,
  },
  {
    rule: "address syntax: address literal",
    manifest: (ns) => address(ns, { address: "support@[192.0.2.1]" }),
    message: /address must be a plain mailbox/,
  },
  {
    rule: "address syntax: bang path",
    manifest: (ns) => address(ns, { address: "evil.org!support@example.com" }),
    message: /address must be a plain mailbox/,
  },
  {
    rule: "address syntax: local part over 64",
    manifest: (ns) => address(ns, { address: `${"a".repeat(65)}@example.com` }),
    message: /before the @ must be at most 64 characters/,
  },
  {
    rule: "outbound TLS never plaintext",
    manifest: (ns) => address(ns, outbound({ tls: "None" })),
    message: /spec.outbound.tls: Unsupported value: "None"/,
  },
  {
    rule: "outbound port range",
    manifest: (ns) => address(ns, outbound({ port: 70000 })),
    message: /spec.outbound.port: Invalid value: 70000/,
  },
  {
    rule: "port 465 is implicit TLS",
    manifest: (ns) => address(ns, outbound({ port: 465, tls: "StartTLS" })),
    message: /port 465 is implicit TLS/,
  },
  {
    rule: "outbound host syntax",
    manifest: (ns) => address(ns, outbound({ host: "smtp example com" })),
    message: /host must be a lowercase DNS name/,
  },
  {
    rule: "outbound credentials required",
    manifest: (ns) => address(ns, outbound({ credentialsSecretRef: undefined })),
    message: /spec.outbound.credentialsSecretRef: Required value/,
  },
  { rule: "domainRef required", manifest: (ns) => address(ns, { domainRef: undefined }), message: /spec.domainRef: Required value/ },
  {
    rule: "verification timeout shorter than interval",
    manifest: (ns) => address(ns, { verification: { interval: "10m", timeout: "1h" } }),
    message: /verification.timeout must be shorter than verification.interval/,
  },
];

describe("smtpconnector.dev API", () => {
  before(() => installCRDs());

  test("every example applies server-side, and re-applying changes nothing", async (t) => {
    t.after(async () => {
      await kubectl(["delete", "namespace", "acme-helpdesk", "--wait=false"]);
    });
    const applied = await kubectl(["apply", "--server-side", "--field-manager=smtpc-tests", "-f", examples]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /smtpdomain.smtpconnector.dev\/example-com serverside-applied/);
    assert.match(applied.stdout, /supportaddress.smtpconnector.dev\/support serverside-applied/);
    assert.match(applied.stdout, /supportaddress.smtpconnector.dev\/billing serverside-applied/);

    // Defaults are filled in by the API server and never fight the manifest (no perpetual diff).
    const diff = await kubectl(["diff", "--server-side", "--field-manager=smtpc-tests", "-f", examples]);
    assert.equal(diff.code, 0, `kubectl diff found changes after apply:\n${diff.stdout}${diff.stderr}`);
    const stored = await kubectl([
      "get",
      "smtpdomain",
      "example-com",
      "-n",
      "acme-helpdesk",
      "-o",
      "jsonpath={.spec.inbound.authProtocol} {.spec.inbound.credentials[0].state}",
    ]);
    assert.equal(stored.stdout, "PLAIN Active");
  });

  for (const row of invalid) {
    test(`rejects an invalid manifest: ${row.rule}`, async (t) => {
      const namespace = await freshNamespace(t, "api");
      const result = await apply(row.manifest(namespace));
      assert.notEqual(result.code, 0, `expected rejection, got: ${result.stdout}`);
      assert.match(result.stderr, row.message);
    });
  }

  test("domain and address are immutable", async (t) => {
    const namespace = await freshNamespace(t, "api");
    assert.equal((await apply(domain(namespace))).code, 0);
    const changed = await apply(domain(namespace, { domain: "example.org" }));
    assert.notEqual(changed.code, 0);
    assert.match(changed.stderr, /domain is immutable: create a new SmtpDomain/);

    assert.equal((await apply(address(namespace))).code, 0);
    const moved = await apply(address(namespace, { address: "help@example.com" }));
    assert.notEqual(moved.code, 0);
    assert.match(moved.stderr, /address is immutable/);
  });

  test("a revoked credential version cannot become Active again", async (t) => {
    const namespace = await freshNamespace(t, "api");
    assert.equal((await apply(domain(namespace, inbound({ credentials: [{ version: 1, state: "Revoked" }, { version: 2 }] })))).code, 0);
    const revived = await apply(domain(namespace, inbound({ credentials: [{ version: 1, state: "Active" }, { version: 2 }] })));
    assert.notEqual(revived.code, 0);
    assert.match(revived.stderr, /a revoked credential version cannot be made Active again/);
  });

  test("kubectl get smtpconnector shows both kinds with their columns", async (t) => {
    const namespace = await freshNamespace(t, "api");
    assert.equal((await apply(domain(namespace))).code, 0);
    assert.equal((await apply(address(namespace))).code, 0);
    const got = await kubectl(["get", "smtpconnector", "-n", namespace]);
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /NAME\s+DOMAIN\s+ACTIVE VERSIONS\s+ADDRESSES SERVED\s+READY\s+AGE/);
    assert.match(got.stdout, /smtpdomain.smtpconnector.dev\/example-com\s+example.com\s/);
    const wide = await kubectl(["get", "smtpdomain", "-n", namespace, "-o", "wide"]);
    assert.match(wide.stdout, /CERT EXPIRY\s+MODE\s+AGE/);
    assert.match(wide.stdout, /\sAuthenticated\s+\S+$/m, "the mode's default shows (wide)");
    assert.match(got.stdout, /NAME\s+ADDRESS\s+SMTPDOMAIN\s+INBOUND VERIFIED\s+OUTBOUND VERIFIED\s+READY\s+AGE/);
    assert.match(got.stdout, /supportaddress.smtpconnector.dev\/support\s+support@example.com\s+example-com\s/);

    const short = await kubectl(["get", "smtpdom,supaddr", "-n", namespace, "-o", "name"]);
    assert.equal(
      short.stdout.trim().split("\n").sort().join(" "),
      "smtpdomain.smtpconnector.dev/example-com supportaddress.smtpconnector.dev/support",
    );
  });

  test("kubectl explain shows a description for the fields", async () => {
    const credentials = await kubectl(["explain", "smtpdomain.spec.inbound.credentials"]);
    assert.equal(credentials.code, 0, credentials.stderr);
    assert.match(credentials.stdout, words("To rotate, add a version with the next number"));
    assert.match(credentials.stdout, /state\s+<string>/);
    const tls = await kubectl(["explain", "supportaddress.spec.outbound.tls"]);
    assert.match(tls.stdout, words("Plaintext is not offered"));
    assert.match(tls.stdout, /ENUM:\s+StartTLS\s+Implicit/);
    const status = await kubectl(["explain", "smtpdomain.status.credentials.lastUsedAt"]);
    assert.match(status.stdout, words("Last successful AUTH with this version"));
  });
});
