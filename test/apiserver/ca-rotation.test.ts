// The installation CA's two-phase rotation against the real API server: the
// rotate annotation publishes the next CA in every ca.crt the operator writes
// while the current CA goes on signing (a customer's server holding only the
// old ca.crt keeps verifying the relay), the SmtpDomain and the CA Secret say
// so and from when; an operator restarted mid-phase resumes the same rotation;
// after the notice the next CA signs, leaves are reissued by it, and the old
// CA stays in the bundle until none of its leaves can be valid. Two operators
// that both believe they lead, reconciling at once, make one CA, one next CA
// and promote it once, and every domain is signed by the CA that won.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { domainCaches, reconcileDomain, type DomainCaches } from "../../operator/domain/reconcile.js";
import type { OperatorSettings } from "../../operator/domain/render.js";
import { clusterAccess } from "../../operator/kube/access.js";
import { ApiError, Cluster } from "../../operator/kube/cluster.js";
import { rotateAnnotation } from "../../operator/tls/ca-rotation.js";
import { e2eClients } from "../support/e2e.js";
import { tempDir } from "../support/mail.js";
import { operatorKubeconfig, operatorNamespace, startTestController } from "../support/operator-rbac.js";
import { applyManifests, connect, eventually, freshNamespace, kubectl, readSmtpDomain } from "../support/kube.js";
import { smtpDomainManifest } from "../support/manifests.js";

const caSecret = { namespace: operatorNamespace, name: `test-rotation-ca-${process.pid}` };
// Relay certificates live 20 s (renewed 7 s ahead); a new CA is announced 15 s before it signs: phase 1's checks
// and a restart (asserted to fall inside it) took 1–2 s of them on the shared 2-core machine, and both phases with
// the old CA's retirement (20 s + a margin of 5 s after the promotion) take some 40 s.
const certificates = { durationMs: 20_000, renewBeforeMs: 7_000, caRotationNoticeMs: 15_000 };
const settingsOverride = { caSecret, certificates, allowedHostnameSuffixes: ["helpdesk.example.net"] };

const text = (s: k8s.V1Secret, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();
const issuedBy = (leafPem: string, caPem: string) => {
  const leaf = new X509Certificate(leafPem);
  const ca = new X509Certificate(caPem);
  return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
};

/** What a customer's Postfix does with its tafile: `openssl verify` of the relay's leaf against that file alone. */
function customerTrusts(caFile: string, leafPem: string): boolean {
  const dir = tempDir("customer-ca");
  writeFileSync(join(dir, "ca.crt"), caFile);
  writeFileSync(join(dir, "leaf.crt"), leafPem);
  try {
    execFileSync(
      "openssl",
      ["verify", "-CAfile", join(dir, "ca.crt"), "-verify_hostname", "relay.helpdesk.example.net", join(dir, "leaf.crt")],
      {
        stdio: "pipe",
      },
    );
    return true;
  } catch {
    return false;
  }
}

describe("CA rotation in two phases", () => {
  let controller: Controller | undefined;
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    ({ core, custom } = await e2eClients());
    controller = await startTestController({ settingsOverride });
  });
  after(async () => {
    await controller?.stop();
    await core.deleteNamespacedSecret(caSecret).catch(() => undefined);
  });

  const getDomain = (namespace: string) => readSmtpDomain(custom, namespace);
  const relayTls = (namespace: string) => core.readNamespacedSecret({ namespace, name: "example-com-relay-tls" });
  const credentials = (namespace: string) => core.readNamespacedSecret({ namespace, name: "example-com-inbound-v1" });
  const events = async (namespace: string, selector: string) =>
    (await kubectl(["get", "events", "-n", namespace, "--field-selector", selector, "-o", "jsonpath={.items[*].message}"])).stdout;

  test("announced first, the current CA signing; after the notice the new CA signs; the old one trusted until its leaves expire; a restart in between resumes", async (t) => {
    const namespace = await freshNamespace(t, "rotation");
    await applyManifests(smtpDomainManifest(namespace, { relay: { hostnames: ["relay.helpdesk.example.net"] } }));
    const first = await eventually("a relay certificate", () => relayTls(namespace));
    const oldCa = text(await core.readNamespacedSecret(caSecret), "tls.crt");
    assert.ok(issuedBy(text(first, "tls.crt"), oldCa));
    // The customer copied ca.crt into Postfix's tafile once, by hand.
    const customerCopy = text(await eventually("the credentials", () => credentials(namespace)), "ca.crt");
    assert.equal(customerCopy, oldCa);

    // Phase 1: the next CA is published beside the current one, which still signs.
    await kubectl(["annotate", "secret", caSecret.name, "-n", caSecret.namespace, `${rotateAnnotation}=${Date.now()}`, "--overwrite"]);
    const announced = await eventually("the next CA published", async () => {
      const s = await core.readNamespacedSecret(caSecret);
      return s.data?.["next.crt"] || text(s, "tls.crt") !== oldCa ? s : undefined;
    });
    assert.equal(text(announced, "tls.crt"), oldCa, "the current CA still signs");
    const nextCa = text(announced, "next.crt");
    assert.ok(nextCa.includes("BEGIN CERTIFICATE"));
    assert.equal(text(announced, "ca.crt"), `${oldCa}${nextCa}`, "ca.crt: the signing CA, then the next one");
    const signsFrom = Date.parse(announced.metadata?.annotations?.["smtpconnector.dev/next-ca-signs-from"] ?? "");
    assert.ok(Math.abs(signsFrom - (Date.now() + certificates.caRotationNoticeMs)) < 10_000, "signs after the notice");

    // Every ca.crt the operator writes carries both; the relay still serves a leaf of the old CA.
    const bundle = `${oldCa}${nextCa}`;
    const phase1 = await eventually("the relay Secret carries both CAs", async () => {
      const s = await relayTls(namespace);
      return text(s, "ca.crt") === bundle ? s : undefined;
    });
    assert.ok(Date.now() < signsFrom, "still in phase 1 (the notice is long enough for these checks)");
    assert.ok(issuedBy(text(phase1, "tls.crt"), oldCa), "a leaf of the current CA, not the next");
    assert.ok(customerTrusts(customerCopy, text(phase1, "tls.crt")), "a server with only the old ca.crt still verifies the relay");
    assert.ok(customerTrusts(bundle, text(phase1, "tls.crt")));
    await eventually("the credentials carry both CAs", async () =>
      text(await credentials(namespace), "ca.crt") === bundle ? true : undefined,
    );

    // The platform engineer sees it on the domain: status, the condition's message, an Event; and on the CA Secret.
    const fingerprint = new X509Certificate(nextCa).fingerprint256;
    const domain = await eventually("status.tls.nextCA", async () => {
      const d = await getDomain(namespace);
      return d.status?.tls?.nextCA ? d : undefined;
    });
    assert.deepEqual(domain.status?.tls?.nextCA, { fingerprint, signsFrom: new Date(signsFrom).toISOString().replace(".000Z", "Z") });
    assert.match(
      domain.status?.conditions?.find((c) => c.type === "CertificateReady")?.message ?? "",
      /a new CA \(SHA-256 [0-9A-F:]+\) is in ca\.crt from now and signs this relay's certificate from \d{4}-/,
    );
    await eventually("the domain's Event", async () =>
      (await events(namespace, "reason=CARotationAnnounced")).includes(fingerprint) ? true : undefined,
    );
    await eventually("the CA Secret's Event", async () =>
      /a new CA is published in ca\.crt beside the signing one \(rotation was asked for/.test(
        await events(caSecret.namespace, `involvedObject.name=${caSecret.name},reason=CARotationStarted`),
      )
        ? true
        : undefined,
    );

    // And `kubectl smtpconnector status` (the plugin from source, with the test's kubectl).
    const { kubeconfigPath, binary } = await connect();
    const wrapper = join(tempDir("kubectl"), "kubectl");
    writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(binary)} kubectl "$@"\n`, { mode: 0o755 });
    const plugin = execFileSync(
      process.execPath,
      ["--import", "tsx", "plugin/main.ts", "status", "example-com", "-n", namespace, "--kubeconfig", kubeconfigPath],
      { env: { ...process.env, KUBECTL: wrapper }, encoding: "utf8" },
    );
    assert.match(plugin, new RegExp(`new CA +signs from ${domain.status?.tls?.nextCA?.signsFrom} \\(SHA-256 ${fingerprint}\\)`));

    // A restart in phase 1 resumes the same rotation: no other next CA, the current one still signs.
    await controller!.stop();
    controller = undefined;
    controller = await startTestController({ settingsOverride });
    await eventually("the restarted operator reconciled", async () => {
      const d = await getDomain(namespace);
      return d.status?.tls?.nextCA?.fingerprint === fingerprint ? true : undefined;
    });
    const resumed = await core.readNamespacedSecret(caSecret);
    assert.equal(text(resumed, "next.crt"), nextCa);
    assert.equal(text(resumed, "tls.crt"), oldCa);
    assert.ok(Date.now() < signsFrom, "the restart happened in phase 1");

    // Phase 2, at signsFrom with no other event: the next CA signs; the relay's leaf is reissued by it.
    const promoted = await eventually(
      "the next CA signing",
      async () => {
        const s = await core.readNamespacedSecret(caSecret);
        return text(s, "tls.crt") === nextCa ? s : undefined;
      },
      certificates.caRotationNoticeMs + 20_000,
    );
    assert.ok(Date.now() >= signsFrom - 1000, "not before the announced time");
    assert.equal(promoted.data?.["next.crt"], undefined);
    assert.equal(text(promoted, "ca.crt"), `${nextCa}${oldCa}`, "the old CA still trusted");
    const reissued = await eventually("a leaf of the new CA", async () => {
      const s = await relayTls(namespace);
      return issuedBy(text(s, "tls.crt"), nextCa) ? s : undefined;
    });
    assert.equal(text(reissued, "ca.crt"), `${nextCa}${oldCa}`);
    assert.ok(customerTrusts(bundle, text(reissued, "tls.crt")), "the bundle published in phase 1 verifies the new leaf");
    assert.equal(customerTrusts(customerCopy, text(reissued, "tls.crt")), false, "the old copy alone would not: hence the notice");
    await eventually("status.tls.nextCA gone", async () => ((await getDomain(namespace)).status?.tls?.nextCA ? undefined : true));

    // No leaf of the old CA can be valid after the promotion + 20 s + a margin: it leaves every bundle.
    await eventually(
      "the old CA dropped",
      async () => {
        const ca = await core.readNamespacedSecret(caSecret);
        const relay = await relayTls(namespace);
        const creds = await credentials(namespace);
        return [ca, relay, creds].every((s) => text(s, "ca.crt") === nextCa) ? true : undefined;
      },
      90_000,
    );
  });
});

/** An operator that believes it leads: its own connection and caches, and what the API server answered its writes of the CA Secret. */
interface Operator {
  cluster: Cluster;
  caches: DomainCaches;
  caWrites: string[];
}

/**
 * Two operators racing for the CA Secret `caName`. Each one's first write of it in a round waits until the
 * other's reaches it too (or 20 s pass): both planned on the same read, so the race is run every time, not
 * only when the timing falls that way. Nothing else of theirs is changed.
 */
async function racingOperators(caName: string): Promise<{ operators: [Operator, Operator]; round: () => void }> {
  let arrived = 0;
  let open: () => void = () => undefined;
  let opened = Promise.resolve();
  const arrive = () => {
    if (++arrived === 2) open();
    return opened;
  };
  const operator = async (): Promise<Operator> => {
    const cluster = new Cluster(clusterAccess(await operatorKubeconfig()));
    const caWrites: string[] = [];
    const write = cluster.write.bind(cluster);
    const apply = cluster.apply.bind(cluster);
    cluster.write = async (method, path, body, accept, timeoutMs) => {
      const ca = method === "POST" && (body as k8s.V1Secret | undefined)?.metadata?.name === caName;
      if (ca) await arrive();
      const answer = await write(method, path, body, accept, timeoutMs);
      if (ca) caWrites.push(`create ${answer.status}`);
      return answer;
    };
    cluster.apply = async (object) => {
      if (object.kind !== "Secret" || object.metadata.name !== caName) return apply(object);
      await arrive();
      try {
        await apply(object);
        caWrites.push("update 200");
      } catch (error) {
        caWrites.push(`update ${error instanceof ApiError ? error.code : "failed"}`);
        throw error;
      }
    };
    return { cluster, caches: domainCaches(), caWrites };
  };
  return {
    operators: [await operator(), await operator()],
    round: () => {
      arrived = 0;
      opened = new Promise<void>((resolve) => {
        open = resolve;
        setTimeout(resolve, 20_000).unref();
      });
    },
  };
}

describe("two operators that both believe they lead", () => {
  test("racing real domain reconciles, they create, announce and promote the CA once, and both domains are signed by the CA that won", async (t) => {
    const { core, custom } = await e2eClients();
    const raceSecret = { namespace: operatorNamespace, name: `test-rotation-race-${process.pid}` };
    t.after(() => core.deleteNamespacedSecret(raceSecret).catch(() => undefined));
    const settings: OperatorSettings = {
      relayImage: "smtp-connector:test",
      relayHostSuffix: "relay.test",
      caSecret: raceSecret,
      certificates: { durationMs: 86_400_000, renewBeforeMs: 3_600_000, caRotationNoticeMs: 3_600_000 },
    };
    // A domain each: the one whose operator lost a race is signed by the winner's CA all the same.
    const namespaces = [await freshNamespace(t, "race-a"), await freshNamespace(t, "race-b")] as const;
    await applyManifests(...namespaces.map((namespace) => smtpDomainManifest(namespace)));
    const { operators, round } = await racingOperators(raceSecret.name);
    const race = async (now = new Date()) => {
      round();
      // As each Controller's watch of the CA Secret does on every change of it (the annotation, the other's write).
      for (const { caches } of operators) caches.certificateAuthority.clear();
      for (const operator of operators) operator.caWrites.length = 0;
      await Promise.all(
        operators.map(async ({ cluster, caches }, i) => {
          const domain = await readSmtpDomain(custom, namespaces[i]!);
          await reconcileDomain(cluster, { domain, addresses: [], caches }, settings, now);
        }),
      );
      return operators.flatMap((o) => o.caWrites).sort();
    };
    const ca = () => core.readNamespacedSecret(raceSecret);
    const relays = () =>
      Promise.all(namespaces.map((namespace) => core.readNamespacedSecret({ namespace, name: "example-com-relay-tls" })));

    assert.deepEqual(await race(), ["create 201", "create 409"], "both created the CA; one was refused (409)");
    const created = await ca();
    const first = text(created, "tls.crt");
    for (const relay of await relays()) {
      assert.ok(issuedBy(text(relay, "tls.crt"), first), "signed by the CA that was created");
      assert.equal(text(relay, "ca.crt"), first);
    }

    // Phase 1: both announce a next CA on the same read; one's write lands, the other's is refused.
    await kubectl(["annotate", "secret", raceSecret.name, "-n", raceSecret.namespace, `${rotateAnnotation}=race`]);
    assert.deepEqual(await race(), ["update 200", "update 409"], "both wrote the next CA onto the same version; one was refused");
    const announced = await ca();
    const next = text(announced, "next.crt");
    assert.ok(next.includes("BEGIN CERTIFICATE"));
    assert.equal(text(announced, "tls.crt"), first, "phase 1: the current CA still signs");
    assert.equal(text(announced, "ca.crt"), `${first}${next}`, "announced once: one next CA, not two");
    for (const relay of await relays()) {
      assert.ok(issuedBy(text(relay, "tls.crt"), first));
      assert.equal(text(relay, "ca.crt"), `${first}${next}`, "both domains carry the next CA that won");
    }
    assert.deepEqual(await race(), [], "the same annotation value rotates once");
    assert.equal(text(await ca(), "next.crt"), next);

    // Both operators' clocks pass signsFrom at once: one promotes, the other is refused and reads the winner's CA.
    const signsFrom = Date.parse(announced.metadata?.annotations?.["smtpconnector.dev/next-ca-signs-from"] ?? "");
    assert.deepEqual(await race(new Date(signsFrom + 1000)), ["update 200", "update 409"], "both promoted; one was refused");
    const promoted = await ca();
    assert.equal(text(promoted, "tls.crt"), next);
    assert.equal(text(promoted, "ca.crt"), `${next}${first}`);
    for (const relay of await relays()) {
      assert.ok(issuedBy(text(relay, "tls.crt"), next), "reissued by the promoted CA");
      assert.equal(text(relay, "ca.crt"), `${next}${first}`);
    }
  });
});
