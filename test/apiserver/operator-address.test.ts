// SupportAddress rules through the real API server: each verdict reaches
// status with its reason, and only served addresses reach the relay config.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import type { SupportAddress } from "../../crds/schema.js";
import type { VerificationIO } from "../../operator/address/verification.js";
import type { Controller } from "../../operator/controller.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { installCRDs } from "../support/crds.js";
import { startTestController } from "../support/operator-rbac.js";
import {
  applyManifests,
  deleteDomainsAtEnd,
  connect,
  eventually,
  freshNamespace,
  kubectl,
  listEvents,
  readSmtpDomain,
  readSupportAddress,
} from "../support/kube.js";
import { markDeploymentAvailable } from "../support/deployment-runner.js";

const domain = (namespace: string, name: string, mail: string) => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name, namespace },
  spec: { domain: mail, inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } }, relay: { replicas: 1 } },
});
const address = (namespace: string, name: string, mail: string, domainRef: string, secret = "outbound") => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SupportAddress",
  metadata: { name, namespace },
  spec: { address: mail, domainRef: { name: domainRef }, outbound: { host: "smtp.example.com", credentialsSecretRef: { name: secret } } },
});

/**
 * A controller with the chart's RBAC for one suite, and the clients its tests
 * use: started before the suite's tests, stopped after them.
 */
function suiteController(options: Parameters<typeof startTestController>[0]) {
  const suite = {} as { controller: Controller; custom: k8s.CustomObjectsApi; core: k8s.CoreV1Api };
  before(async () => {
    await installCRDs();
    const cluster = await connect();
    suite.core = cluster.core;
    suite.custom = cluster.config.makeApiClient(k8s.CustomObjectsApi);
    suite.controller = await startTestController(options);
  });
  after(() => suite.controller.stop());
  return suite;
}

describe("SupportAddress rules", () => {
  // The operator runs with the chart's RBAC, not as admin.
  const suite = suiteController({ systemDomains: ["helpdesk.example.net"] });

  const domainReady = async (namespace: string, name: string) => {
    const a = await readSupportAddress(suite.custom, namespace, name);
    return a.status?.conditions?.find((c) => c.type === "DomainReady");
  };

  test("each rule shows in DomainReady with its reason; only served addresses reach the relay", async (t) => {
    const namespace = await freshNamespace(t, "addr");
    deleteDomainsAtEnd(t, namespace);
    await suite.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "outbound" }, stringData: { username: "u", password: "p" } },
    });
    await suite.core.createNamespacedSecret({ namespace, body: { metadata: { name: "broken" }, stringData: { username: "u" } } });
    await applyManifests(domain(namespace, "example-com", "example.com"));
    await applyManifests(address(namespace, "support", "support@example.com", "example-com"));
    await applyManifests(address(namespace, "mismatch", "support@other.org", "example-com"));
    await applyManifests(address(namespace, "system", "team@helpdesk.example.net", "example-com"));
    await applyManifests(address(namespace, "orphan", "orphan@example.com", "no-such-domain"));
    await applyManifests(address(namespace, "nosecret", "sales@example.com", "example-com", "missing"));
    await applyManifests(address(namespace, "badsecret", "billing@example.com", "example-com", "broken"));
    const expected: Record<string, string> = {
      support: "DomainNotReady",
      mismatch: "DomainMismatch",
      system: "SystemAddress",
      orphan: "DomainNotFound",
      nosecret: "CredentialsSecretNotFound",
      badsecret: "CredentialsSecretInvalid",
    };
    for (const [name, reason] of Object.entries(expected)) {
      const condition = await eventually(`${name}: ${reason}`, async () => {
        const c = await domainReady(namespace, name);
        return c?.reason === reason ? c : undefined;
      });
      assert.equal(condition.status, "False");
    }
    const config = await eventually("the relay config", async () => {
      const secret = await suite.core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
      return parseConfig(Buffer.from(secret.data!["relay.yaml"]!, "base64").toString());
    });
    assert.deepEqual(config.domains[0]!.addresses, ["support@example.com"]);

    // Fixing the Secret brings the address in.
    await suite.core.replaceNamespacedSecret({
      namespace,
      name: "broken",
      body: { metadata: { name: "broken" }, stringData: { username: "u", password: "p" } },
    });
    await eventually("billing@ in the relay config", async () => {
      const secret = await suite.core.readNamespacedSecret({ namespace, name: "example-com-relay-config" });
      return Buffer.from(secret.data!["relay.yaml"]!, "base64").toString().includes("billing@example.com") ? true : undefined;
    });
  });

  test("the helpdesk's own domain is refused as an SmtpDomain before anything is created", async (t) => {
    const namespace = await freshNamespace(t, "sys");
    deleteDomainsAtEnd(t, namespace);
    await applyManifests(domain(namespace, "helpdesk", "helpdesk.example.net"), domain(namespace, "mail", "mail.helpdesk.example.net"));
    for (const name of ["helpdesk", "mail"]) {
      const d = await eventually(`${name}: Ready=False SystemDomain`, async () => {
        const o = await readSmtpDomain(suite.custom, namespace, name);
        return o.status?.conditions?.find((c) => c.type === "Ready")?.reason === "SystemDomain" ? o : undefined;
      });
      assert.equal(d.status?.conditions?.find((c) => c.type === "Stalled")?.reason, "SystemDomain");
      assert.match(d.status.conditions.find((c) => c.type === "Ready")!.message, /helpdesk's own system domains/);
    }
    await suite.controller.queue.idle();
    const secrets = (await suite.core.listNamespacedSecret({ namespace })).items.map((s) => s.metadata?.name);
    assert.deepEqual(secrets, [], "no credentials, certificate or relay config");
    for (const kind of ["deployments", "services", "networkpolicies"]) {
      const listed = await kubectl(["get", kind, "-n", namespace, "-o", "name"]);
      assert.equal(listed.stdout.trim(), "", `no ${kind}`);
    }
    const events = await listEvents(namespace, "involvedObject.name=helpdesk,type=Warning", "reason");
    assert.match(events, /SystemDomain/);
  });

  test("the same domain in a second account (namespace) is flagged; the first keeps working", async (t) => {
    const production = await freshNamespace(t, "prod");
    deleteDomainsAtEnd(t, production);
    await applyManifests(domain(production, "example-com", "example.com"));
    await eventually("the production credentials", () =>
      suite.core.readNamespacedSecret({ namespace: production, name: "example-com-inbound-v1" }),
    );
    const sandbox = await freshNamespace(t, "sandbox");
    deleteDomainsAtEnd(t, sandbox);
    await applyManifests(domain(sandbox, "example-com", "example.com"));
    const ready = await eventually("the sandbox domain flagged", async () => {
      const d = await readSmtpDomain(suite.custom, sandbox, "example-com");
      return d.status?.conditions?.find((c) => c.type === "Stalled" && c.reason === "DomainConflict");
    });
    assert.match(ready.message, new RegExp(`already connected in namespace ${production}`));
    const sandboxSecrets = (await suite.core.listNamespacedSecret({ namespace: sandbox })).items.map((s) => s.metadata?.name);
    assert.equal(sandboxSecrets.includes("example-com-inbound-v1"), false, "a flagged domain gets no credentials");
  });
});

// Verification's decisions through the real API server, with a stand-in for
// the mail (this tier runs no relay): tokens "come back" when the test says so,
// with the credential version the customer's server uses.
describe("SupportAddress readiness through a rotation", () => {
  const sent = new Set<string>();
  const mail = { answering: true, version: 1 };
  const digest = (token: string) => createHash("sha256").update(token).digest("hex");
  const io: VerificationIO = {
    sendInbound: (_address, token) => Promise.resolve(void sent.add(digest(token))),
    sendOutbound: (_domain, _address, token) => Promise.resolve(void sent.add(digest(token))),
    receipt: (d, tokenSha256) =>
      Promise.resolve(
        mail.answering && sent.has(tokenSha256)
          ? { domain: d.spec.domain, credentialVersion: mail.version, arrivedAt: new Date().toISOString() }
          : undefined,
      ),
    lastRevokedRefusal: () => Promise.resolve(undefined),
    credentialUse: () => Promise.resolve(new Map<number, string>()),
  };
  const suite = suiteController({ verificationIO: io, verificationTiming: { pollMs: 200, retryMs: 60_000 } });

  test("adding a credential version keeps the address Ready while it is verified again; revoking the version in use does not", async (t) => {
    const namespace = await freshNamespace(t, "rot");
    deleteDomainsAtEnd(t, namespace);
    const withVersions = (credentials: object[]) => {
      const d = domain(namespace, "example-com", "example.com");
      return { ...d, spec: { ...d.spec, inbound: { ...d.spec.inbound, credentials } } };
    };
    await suite.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "outbound" }, stringData: { username: "u", password: "p" } },
    });
    await applyManifests(withVersions([{ version: 1 }]));
    await applyManifests(address(namespace, "support", "support@example.com", "example-com"));
    // No kubelet here: the relay is marked available as the Deployment controller would.
    await eventually("the relay Deployment", async () =>
      (await kubectl(["get", "deployment", "example-com-relay", "-n", namespace])).code === 0 ? true : undefined,
    );
    await markDeploymentAvailable(namespace, "example-com-relay", 1);

    const get = async () => await readSupportAddress(suite.custom, namespace, "support");
    const ready = (a: SupportAddress) => a.status?.conditions?.find((c) => c.type === "Ready");
    await eventually("the address Ready", async () => (ready(await get())?.status === "True" ? true : undefined), 30_000);

    // Every Ready the address shows from now on.
    const seen: string[] = [];
    const { config } = await connect();
    const watch = await new k8s.Watch(config).watch(
      `/apis/smtpconnector.dev/v1alpha1/namespaces/${namespace}/supportaddresses`,
      {},
      (_type, a: SupportAddress) => {
        const c = ready(a);
        if (c) seen.push(`${c.status} ${c.reason}`);
      },
      () => undefined,
    );
    t.after(() => watch.abort());

    // A rotation: version 2 beside 1, verified again while the customer's server still uses version 1.
    mail.answering = false;
    await applyManifests(withVersions([{ version: 1 }, { version: 2 }]));
    const pending = await eventually(
      "both directions verifying again for versions 1,2",
      async () => {
        const a = await get();
        const attempts = a.status?.verifications ?? [];
        return attempts.length === 2 && attempts.every((v) => v.result === "Pending" && v.basis?.endsWith("inbound=1,2")) ? a : undefined;
      },
      30_000,
    );
    assert.equal(ready(pending)?.status, "True", "the proven basis stands while the new one is verified");
    assert.ok(pending.status?.verifications?.every((v) => v.previouslyVerifiedAt && v.credentialVersion === 1));
    mail.answering = true;
    await eventually(
      "verified again",
      async () =>
        (await get()).status?.verifications?.every((v) => v.result === "Succeeded" && v.basis?.endsWith("inbound=1,2")) ? true : undefined,
      30_000,
    );
    assert.deepEqual(
      seen.filter((s) => !s.startsWith("True")),
      [],
      `Ready through the rotation: ${seen.join(", ")}`,
    );

    // Revoking the version the proof came back with: proven again before the address is Ready.
    mail.answering = false;
    mail.version = 2;
    await applyManifests(withVersions([{ version: 1, state: "Revoked" }, { version: 2 }]));
    const stale = await eventually(
      "Ready no longer True",
      async () => {
        const a = await get();
        return ready(a)?.status !== "True" ? a : undefined;
      },
      30_000,
    );
    assert.equal(ready(stale)?.reason, "VerificationPending");
    mail.answering = true;
    await eventually(
      "Ready with version 2",
      async () => {
        const a = await get();
        return ready(a)?.status === "True" && a.status?.verifications?.every((v) => v.credentialVersion === 2) ? true : undefined;
      },
      30_000,
    );
  });
});

describe("account limits set per installation", () => {
  const suite = suiteController({ limits: { domainsPerNamespace: 1, addressesPerDomain: 2, addressesPerNamespace: 200 } });

  test("the operator's limits apply; the domain's status counts the addresses that are not served", async (t) => {
    const namespace = await freshNamespace(t, "lim");
    deleteDomainsAtEnd(t, namespace);
    await suite.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "outbound" }, stringData: { username: "u", password: "p" } },
    });
    await applyManifests(domain(namespace, "example-com", "example.com"));
    await eventually("the first domain's credentials", () =>
      suite.core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" }),
    );
    await applyManifests(domain(namespace, "example-org", "example.org"));
    // The oldest are served; within one second of creation, name order decides: a and b, not c.
    for (const name of ["a", "b", "c"]) await applyManifests(address(namespace, name, `${name}@example.com`, "example-com"));
    await applyManifests(address(namespace, "wrong", "wrong@example.net", "example-com"));
    const second = await eventually("the second domain over the limit", async () => {
      const d = await readSmtpDomain(suite.custom, namespace, "example-org");
      return d.status?.conditions?.find((c) => c.type === "Ready" && c.reason === "LimitExceeded");
    });
    assert.match(second.message, /at most 1 domains per account/);
    const first = await eventually("two served, two not", async () => {
      const d = await readSmtpDomain(suite.custom, namespace, "example-com");
      return d.status?.addresses === 2 && d.status.addressesNotServed === 2 ? d : undefined;
    });
    assert.match(
      first.status!.conditions!.find((c) => c.type === "AddressesConfigured")!.message,
      /2 support address\(es\) served, 2 not served/,
    );
    const limited = await eventually("c over the limit", async () =>
      (await domainReady(namespace, "c"))?.reason === "LimitExceeded" ? domainReady(namespace, "c") : undefined,
    );
    assert.match(limited.message, /at most 2 addresses per domain/);
    const wide = await kubectl(["get", "smtpdomain", "example-com", "-n", namespace, "-o", "wide"]);
    assert.match(wide.stdout, /ADDRESSES SERVED\s+NOT SERVED/);
    assert.match(wide.stdout, /example-com\s+example\.com\s+1\s+2\s+2\s/);
  });

  const domainReady = async (namespace: string, name: string) => {
    const a = await readSupportAddress(suite.custom, namespace, name);
    return a.status?.conditions?.find((c) => c.type === "DomainReady");
  };
});
