// The namespace-scoped mode on the real API server, under exactly the RBAC the
// chart renders for `watchNamespaces` (Roles in those namespaces, no
// ClusterRole): the operator starts, serves the watched namespaces, leaves the
// others alone, and could not read them if it tried; its CA Secret, in its own
// unwatched namespace, is watched by name.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import type { Controller } from "../../operator/controller.js";
import { installCRDs } from "../support/crds.js";
import { caNameConstraints } from "../../operator/domain/certificate.js";
import { newCertificateAuthority } from "../../operator/tls/certificates.js";
import { chartRbacKubeconfig, operatorNamespace, startTestController } from "../support/operator-rbac.js";
import { applyManifests, connect, eventually, freshNamespace, kubectl, readSmtpDomain } from "../support/kube.js";

const domain = (namespace: string) => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace },
  spec: {
    domain: `${namespace}.example.com`,
    inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } },
    relay: { replicas: 1 },
  },
});

describe("the namespace-scoped mode (--watch-namespaces, chart value watchNamespaces)", () => {
  let custom: k8s.CustomObjectsApi;
  let core: k8s.CoreV1Api;
  let controller: Controller;
  let kubeconfig: string;
  const watched: string[] = [];
  let other: string;
  const cleanups: (() => Promise<void> | void)[] = [];
  // Its own, in the operator's namespace, which is not among the watched ones.
  const caSecret = { namespace: operatorNamespace, name: `scoped-ca-${randomBytes(3).toString("hex")}` };

  before(async () => {
    await installCRDs();
    const cluster = await connect();
    custom = cluster.config.makeApiClient(k8s.CustomObjectsApi);
    core = cluster.core;
    const hooks = { after: (fn: () => Promise<void> | void) => cleanups.push(fn) };
    watched.push(await freshNamespace(hooks, "team-a"), await freshNamespace(hooks, "team-b"));
    other = await freshNamespace(hooks, "other");
    kubeconfig = await chartRbacKubeconfig(`scoped-${randomBytes(3).toString("hex")}`, {
      watchNamespaces: watched,
      operator: { caSecretName: caSecret.name },
    });
    // Under that RBAC a cluster-wide list is refused: the controller starts only if it never asks for one.
    controller = await startTestController({ kubeconfig, namespaces: watched, settingsOverride: { caSecret } });
  });
  after(async () => {
    await controller?.stop();
    await core.deleteNamespacedSecret(caSecret).catch(() => undefined);
    for (const cleanup of cleanups) await cleanup();
  });

  test("serves the watched namespaces and never touches another", async () => {
    await applyManifests(...watched.map(domain), domain(other));
    for (const namespace of watched) {
      await eventually(
        `${namespace}: its relay config`,
        async () => (await core.readNamespacedSecret({ namespace, name: "example-com-relay-config" }).catch(() => undefined)) ?? undefined,
      );
      // The status is written after the relay's objects, in the same reconcile: a moment later.
      await eventually(`${namespace}: credentials issued`, async () =>
        (await readSmtpDomain(custom, namespace, "example-com")).status?.conditions?.some(
          (c) => c.type === "CredentialsIssued" && c.status === "True",
        )
          ? true
          : undefined,
      );
    }
    await controller.queue.idle();
    const untouched = await readSmtpDomain(custom, other, "example-com");
    assert.equal(untouched.status, undefined, "the unwatched namespace's SmtpDomain has no status");
    assert.equal(untouched.metadata.finalizers, undefined, "nor a finalizer");
    assert.deepEqual(
      (await core.listNamespacedSecret({ namespace: other })).items.map((s) => s.metadata?.name),
      [],
      "nor any Secret",
    );
    assert.deepEqual(
      controller.secrets.census().full.filter((key) => !watched.some((n) => key.startsWith(`${n}/`))),
      [],
      "nothing of another namespace is cached",
    );
  });

  test("its RBAC cannot read another namespace, nor anything cluster-wide", async () => {
    await core.createNamespacedSecret({
      namespace: other,
      body: { metadata: { name: "private" }, stringData: { password: "not-for-the-operator" } },
    });
    for (const args of [
      ["get", "secret", "private", "-n", other],
      ["get", "secrets", "-n", other],
      ["get", "secrets", "--all-namespaces"],
      // In its own namespace, only its CA Secret, by name.
      ["get", "secrets", "-n", operatorNamespace],
      ["get", "smtpdomains", "--all-namespaces"],
      ["get", "deployments", "-n", other],
    ]) {
      const result = await kubectl(args, { kubeconfig });
      assert.notEqual(result.code, 0, `allowed: kubectl ${args.join(" ")}`);
      assert.match(result.stderr, /forbidden/i, args.join(" "));
    }
    const allowed = await kubectl(["get", "secrets", "-n", watched[0]!, "-o", "name"], { kubeconfig });
    assert.equal(allowed.code, 0, allowed.stderr);
  });

  test("a CA Secret replaced by hand in the operator's own (unwatched) namespace is noticed at once", async () => {
    const namespace = watched[0]!;
    const caOf = async () =>
      Buffer.from(
        (await core.readNamespacedSecret({ namespace, name: "example-com-relay-tls" }).catch(() => undefined))?.data?.["ca.crt"] ?? "",
        "base64",
      ).toString();
    const first = await eventually("a relay certificate from the first CA", async () => (await caOf()) || undefined);
    await controller.queue.idle();
    // Replaced as an administrator would: a new CA of their own in the same Secret.
    // With the installation's name constraints (startTestController's settings), or the operator would at once
    // rotate it as a CA made for other names.
    const replacement = newCertificateAuthority(
      operatorNamespace,
      new Date(),
      caNameConstraints({ relayImage: "smtp-connector:test", relayHostSuffix: "relay.test" }),
    );
    await core.replaceNamespacedSecret({
      ...caSecret,
      body: {
        metadata: { name: caSecret.name, namespace: caSecret.namespace },
        type: "kubernetes.io/tls",
        stringData: { "tls.crt": replacement.certPem, "tls.key": replacement.keyPem },
      },
    });
    // Well within the CA's 60 s cache and the 10 min resync: only a watch on that Secret sees it this soon.
    await eventually(
      "the relay certificate issued again from the new CA",
      async () => ((await caOf()) === replacement.certPem ? true : undefined),
      20_000,
    );
    assert.notEqual(first, replacement.certPem);
  });
});
