// The product as a platform team runs it, on a real node: `helm install` of the
// chart with the image built from the Dockerfile in this run, the operator as a
// pod under the chart's ServiceAccount, `kubectl apply -f examples/` with the
// site's values, the relay Deployment's pods Running (as uid 65532 with every
// capability dropped, on a runtime where ports below 1024 are privileged), and
// the customer's Postfix sending through a relay pod to the helpdesk.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";
import type * as k8s from "@kubernetes/client-node";
import { builtImageValues, installChart } from "../../hack/lib/demo.js";
import { nodeIp } from "../../hack/node/node.js";
import { relayPorts } from "../../relay/contract/pod.js";
import { helm } from "../support/helm.js";
import { eventually, kubectl } from "../support/kube.js";
import { startSmtpSink, swaks, type SmtpSink } from "../support/mail.js";
import { idlePod, startCluster, type Cluster } from "../support/node.js";
import { secretForwarding, startSubmissionServer, type Postfix } from "../support/postfix.js";

const release = "smtpc";
const system = "smtp-connector-system";
const namespace = "acme-helpdesk"; // as the examples name it

interface Pod {
  metadata: { name: string };
  spec: { serviceAccountName?: string; containers: { image: string }[] };
  status: { phase?: string; podIP?: string; containerStatuses?: { ready: boolean; restartCount: number }[] };
}
const json = async <T>(args: string[]): Promise<T> => {
  const result = await kubectl([...args, "-o", "json"]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as T;
};
const running = (pods: Pod[]) =>
  pods.length > 0 && pods.every((p) => p.status.phase === "Running" && p.status.containerStatuses?.every((c) => c.ready));
const text = (s: { data?: Record<string, string> }, key: string) => Buffer.from(s.data?.[key] ?? "", "base64").toString();

describe("on a real node: the chart from the built image, the examples' relay pods, mail through them", { timeout: 1_200_000 }, () => {
  let cluster: Cluster;
  let helpdesk: SmtpSink | undefined;
  let customer: Postfix | undefined;

  before(async () => {
    cluster = await startCluster();
    // Every support helper (kubectl, helm) talks to this cluster.
    process.env.SMTPC_KUBECONFIG = cluster.kubeconfig;
    process.env.SMTPC_TESTENV_BIN = cluster.testenv;
  });
  after(async () => {
    await customer?.stop();
    await helpdesk?.stop();
    await cluster?.stop();
  });

  test("helm install: the operator runs as a pod from the built image, under the chart's ServiceAccount", async () => {
    await installChart(
      system,
      [...builtImageValues(cluster.image), "operator.relayHostSuffix=relay.test", "relay.allowedHostnameSuffixes={helpdesk.example.net}"],
      release,
    );
    const pods = await eventually(
      "the operator pod Running and ready",
      async () => {
        const list = (await json<{ items: Pod[] }>(["get", "pods", "-n", system, "-l", "app.kubernetes.io/name=smtp-connector"])).items;
        return running(list) ? list : undefined;
      },
      180_000,
    );
    assert.equal(pods.length, 1);
    // The chart's own ServiceAccount (named after the release), not the namespace's default.
    const account = pods[0]!.spec.serviceAccountName!;
    assert.notEqual(account, "default");
    assert.equal((await kubectl(["get", "serviceaccount", account, "-n", system])).code, 0, `ServiceAccount ${account} exists`);
    assert.equal(pods[0]!.spec.containers[0]!.image, cluster.image);
    // Ready means its informers synced: it reached the API server from inside the pod, at the kubernetes
    // Service, with its ServiceAccount's token. kubectl logs (through the kubelet) shows where it connected.
    const logs = await kubectl(["logs", "-n", system, pods[0]!.metadata.name]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /operator started.*https:\/\/10\.0\.0\.1/, logs.stdout);
  });

  test("kubectl apply -f examples/ with the site's values: relay pods Running, and the customer's Postfix delivers through one", async () => {
    helpdesk = await startSmtpSink([], { lmtp: true, host: nodeIp });
    const applied = await kubectl(["apply", "-f", "examples/"]);
    assert.equal(applied.code, 0, applied.stderr);
    // The site's values: the helpdesk's ingestion (on the node's address, which pods reach), the customer's server (the node's bridge).
    const patched = await kubectl([
      "patch",
      "smtpdomain",
      "example-com",
      "-n",
      namespace,
      "--type=merge",
      "-p",
      JSON.stringify({
        spec: { inbound: { allowedSourceRanges: ["10.244.0.1/32"], delivery: { smtp: { host: nodeIp, port: helpdesk.port } } } },
      }),
    ]);
    assert.equal(patched.code, 0, patched.stderr);

    const selector = "app.kubernetes.io/name=smtp-connector-relay,app.kubernetes.io/instance=example-com";
    const relays = await eventually(
      "the relay Deployment's pods Running and ready",
      async () => {
        const list = (await json<{ items: Pod[] }>(["get", "pods", "-n", namespace, "-l", selector])).items;
        return running(list) ? list : undefined;
      },
      240_000,
    ).catch(async (error: unknown) => {
      // What the pods say is the finding (a relay that cannot bind shows "listen EACCES" here).
      const pods = await kubectl(["get", "pods", "-n", namespace, "-l", selector, "-o", "wide"]);
      const logs = await kubectl(["logs", "-n", namespace, "-l", selector, "--tail=5", "--previous=false"]);
      throw new Error(`${String(error)}\n${pods.stdout}\n${logs.stdout}${logs.stderr}`);
    });
    assert.ok(
      relays.every((p) => p.spec.containers[0]!.image === cluster.image),
      "the relay runs the operator's image",
    );
    assert.ok(
      relays.every((p) => p.status.containerStatuses!.every((c) => c.restartCount === 0)),
      "no relay pod crash-looped",
    );
    const available = await json<{ status: { availableReplicas?: number }; spec: { replicas: number } }>([
      "get",
      "deployment",
      "example-com-relay",
      "-n",
      namespace,
    ]);
    assert.equal(available.status.availableReplicas, available.spec.replicas);

    await eventually(
      "the relay config with the site's values",
      async () =>
        text(
          (await json<k8s.V1Secret>(["get", "secret", "example-com-relay-config", "-n", namespace])) as { data?: Record<string, string> },
          "relay.yaml",
        ).includes(`port: ${helpdesk!.port}`)
          ? true
          : undefined,
      60_000,
    );
    const credentials = await json<{ data?: Record<string, string> }>(["get", "secret", "example-com-inbound-v1", "-n", namespace]);
    // The customer's Postfix connects to the relay Service's 587 (its cluster IP: no load balancer here); kube-proxy
    // maps it onto a relay pod's unprivileged listener (ADR 0012).
    const service = await json<{ spec: { clusterIP: string; ports: { port: number; targetPort: string }[] } }>([
      "get",
      "service",
      "example-com-relay",
      "-n",
      namespace,
    ]);
    assert.deepEqual(
      service.spec.ports.map((p) => [p.port, p.targetPort]),
      [
        [587, "submission"],
        [465, "submissions"],
      ],
    );
    customer = await startSubmissionServer({
      relayTo: 9, // no outbound mail in this test
      users: [],
      forward: secretForwarding(credentials, 587, service.spec.clusterIP),
    });
    const inbound = await swaks([
      "--server",
      `127.0.0.1:${customer.port}`,
      "--from",
      "jane@users.example.org",
      "--to",
      "billing@example.com",
      "--header",
      "Subject: through a real pod",
    ]);
    assert.equal(inbound.code, 0, inbound.output);
    await eventually(
      "the email at the helpdesk, tagged by the relay",
      () =>
        helpdesk!
          .messages()
          .some(
            (m) =>
              m.content.includes("Subject: through a real pod") && /X-SmtpConnector-Auth: domain=example\.com; version=1/.test(m.content),
          )
          ? true
          : undefined,
      60_000,
    );
    assert.match(
      customer.log(),
      new RegExp(`Verified TLS connection established to ${service.spec.clusterIP.replaceAll(".", "\\.")}\\[[^\\]]+\\]:587`),
      "Postfix verified the relay's certificate against ca.crt, at the Service's 587",
    );
    // The relay pods' /metrics (their health port, from the node): one of them counted the delivery.
    const metrics = (
      await Promise.all(relays.map(async (p) => (await fetch(`http://${p.status.podIP!}:${relayPorts.health}/metrics`)).text()))
    ).join("\n");
    assert.match(metrics, /^smtpc_relay_messages_total\{direction="inbound",result="Delivered"\} [1-9]/m);
    // What the kubelet's readiness probe reads: the relay's own account of what it serves.
    for (const pod of relays) {
      const readyz = await fetch(`http://${pod.status.podIP!}:${relayPorts.health}/readyz`);
      assert.equal(readyz.status, 200);
      assert.match(await readyz.text(), /^ready\nconfig loaded at \S+Z\n$/);
    }
    // And straight to a pod, on the listener behind the mapping.
    const direct = await swaks(["--server", `${relays[0]!.status.podIP!}:${relayPorts.starttls}`, "--tls", "--quit-after", "STARTTLS"]);
    assert.equal(direct.code, 0, direct.output);
  });

  test("rotation and revocation reach the running relay pods through their mounted Secrets (the kubelet's refresh), with no restart", async () => {
    const selector = "app.kubernetes.io/name=smtp-connector-relay,app.kubernetes.io/instance=example-com";
    const pods = (await json<{ items: Pod[] }>(["get", "pods", "-n", namespace, "-l", selector])).items;
    const restarts = () => pods.map((p) => p.status.containerStatuses![0]!.restartCount);
    const before = restarts();
    const credentials = (list: object[]) =>
      kubectl([
        "patch",
        "smtpdomain",
        "example-com",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        JSON.stringify({ spec: { inbound: { credentials: list } } }),
      ]);
    const secret = (version: number) =>
      eventually(
        `credential version ${version}`,
        async () => {
          const got = await kubectl(["get", "secret", `example-com-inbound-v${version}`, "-n", namespace, "-o", "json"]);
          const found = got.code === 0 ? (JSON.parse(got.stdout) as { data?: Record<string, string> }) : undefined;
          return found && text(found, "username") && text(found, "password") ? found : undefined;
        },
        60_000,
      );
    // AUTH at one pod, on its own listener: every pod must see the change.
    const login = (pod: Pod, s: { data?: Record<string, string> }) =>
      swaks([
        "--server",
        `${pod.status.podIP!}:${relayPorts.starttls}`,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        text(s, "username"),
        "--auth-password",
        text(s, "password"),
        "--quit-after",
        "AUTH",
      ]);
    const v1 = await secret(1);

    // What the kubelet has written into a pod's mounted config Secret, read in the pod (kubectl exec). AUTH is
    // tried only once the file has changed: every refused attempt counts towards the relay's lockout.
    const mounted = async (pod: Pod) =>
      (await kubectl(["exec", "-n", namespace, pod.metadata.name, "--", "cat", "/etc/smtp-connector/config/relay.yaml"])).stdout;
    const refreshed = (pod: Pod, what: string, holds: (config: string) => boolean) =>
      eventually(
        `${what} in ${pod.metadata.name}'s mounted config (the kubelet's refresh)`,
        async () => (holds(await mounted(pod)) ? true : undefined),
        120_000,
      );
    const reloaded = async (pod: Pod, what: string, works: () => Promise<boolean>) => {
      for (let attempt = 0; attempt < 10; attempt++) {
        if (await works()) return;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      assert.fail(`${what} at ${pod.metadata.name} within 10 s of the file changing`);
    };

    assert.equal((await credentials([{ version: 1 }, { version: 2 }])).code, 0);
    const v2 = await secret(2);
    for (const pod of pods) {
      await refreshed(pod, "version 2", (config) => config.includes(`username: ${text(v2, "username")}`));
      await reloaded(pod, "version 2 accepted", async () => (await login(pod, v2)).code === 0);
      assert.equal((await login(pod, v1)).code, 0, "version 1 stays valid during the rotation");
    }

    assert.equal((await credentials([{ version: 1, state: "Revoked" }, { version: 2 }])).code, 0);
    for (const pod of pods) {
      await refreshed(pod, "version 1 revoked", (config) =>
        new RegExp(`username: ${text(v1, "username")}\\n\\s+passwordSha256: \\S+\\n\\s+state: Revoked`).test(config),
      );
      await reloaded(pod, "version 1 refused", async () => /535 5\.7\.8/.test((await login(pod, v1)).output));
      assert.equal((await login(pod, v2)).code, 0);
    }
    const now = (await json<{ items: Pod[] }>(["get", "pods", "-n", namespace, "-l", selector])).items;
    assert.deepEqual(
      now.map((p) => p.metadata.name),
      pods.map((p) => p.metadata.name),
      "the same pods",
    );
    assert.deepEqual(
      now.map((p) => p.status.containerStatuses![0]!.restartCount),
      before,
      "no restart",
    );
  });

  test("the relay's NetworkPolicy holds, probed from pods: 8587/8465 from allowedSourceRanges only, 8080/2587 from the cluster, 8443 from the operator's namespace only", async () => {
    // A probe pod in the relay's namespace, one in the operator's and one in a third; kubectl exec runs the probes.
    const probeNamespaces = [namespace, system, "elsewhere"];
    assert.equal((await kubectl(["create", "namespace", "elsewhere"])).code, 0);
    for (const ns of probeNamespaces) {
      const pod = idlePod(cluster.image, ns, "probe", { spec: { automountServiceAccountToken: false } });
      const created = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pod) });
      assert.equal(created.code, 0, created.stderr);
    }
    for (const ns of probeNamespaces)
      assert.equal((await kubectl(["wait", "-n", ns, "--for=condition=Ready", "pod/probe", "--timeout=120s"])).code, 0);
    const ip = async (ns: string, name: string) => (await json<Pod>(["get", "pod", name, "-n", ns])).status.podIP!;
    const inside = await ip(namespace, "probe");
    // Only the relay's own namespace's probe (and the host's bridge address, for the Postfix above) may submit.
    const patched = await kubectl([
      "patch",
      "smtpdomain",
      "example-com",
      "-n",
      namespace,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { inbound: { allowedSourceRanges: ["10.244.0.1/32", `${inside}/32`] } } }),
    ]);
    assert.equal(patched.code, 0, patched.stderr);
    await eventually(
      "the NetworkPolicy with the new ranges",
      async () =>
        JSON.stringify((await json<{ spec: unknown }>(["get", "networkpolicy", "example-com-relay", "-n", namespace])).spec).includes(
          `${inside}/32`,
        )
          ? true
          : undefined,
      30_000,
    );

    const relay = (
      await json<{ items: Pod[] }>([
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/name=smtp-connector-relay,app.kubernetes.io/instance=example-com",
      ])
    ).items[0]!;
    const ports = [relayPorts.starttls, relayPorts.implicitTls, relayPorts.health, relayPorts.submission, relayPorts.control];
    // A connection either opens, or is refused (kube-router rejects), or times out: as seen from inside a pod.
    const script = `const net = require("net"); const [host, ...ports] = process.argv.slice(1);
Promise.all(ports.map((p) => new Promise((done) => { const s = net.connect({ host, port: +p }); const t = setTimeout(() => (s.destroy(), done("timeout")), 3000);
s.on("connect", () => (clearTimeout(t), s.destroy(), done("open"))); s.on("error", (e) => (clearTimeout(t), done(e.code))); }))).then((r) => console.log(JSON.stringify(r)));`;
    const probe = async (ns: string) => {
      const result = await kubectl(["exec", "-n", ns, "probe", "--", "node", "-e", script, relay.status.podIP!, ...ports.map(String)]);
      assert.equal(result.code, 0, result.stderr);
      return Object.fromEntries(ports.map((p, i) => [p, (JSON.parse(result.stdout) as string[])[i] === "open"]));
    };
    const expected = {
      [namespace]: { 8587: true, 8465: true, 8080: true, 2587: true, 8443: false },
      [system]: { 8587: false, 8465: false, 8080: true, 2587: true, 8443: true },
      elsewhere: { 8587: false, 8465: false, 8080: true, 2587: true, 8443: false },
    };
    // kube-router applies a change within a second or so: the matrix is asked until it holds.
    const seen: Record<string, unknown> = {};
    await eventually(
      "every probe answered as the policy says",
      async () => {
        for (const ns of probeNamespaces) seen[ns] = await probe(ns);
        return JSON.stringify(seen) === JSON.stringify(expected) ? true : undefined;
      },
      30_000,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}\nseen:     ${JSON.stringify(seen)}\nexpected: ${JSON.stringify(expected)}`);
    });
  });
  test("an address goes Ready on real pods: the operator pod's inbound email and the relay pod's outbound email both come back through the relay Service; a reply leaves DKIM-signed through the customer's server", async () => {
    // The world beyond the customer's server, and the customer's server itself on the node's address (pods reach
    // it there; its certificate names that address), with the support address's account and the domain's current
    // inbound credential (version 2 since the rotation above) for relaying mail for example.com to the relay.
    const world = await startSmtpSink();
    const credentials = await json<{ data?: Record<string, string> }>(["get", "secret", "example-com-inbound-v2", "-n", namespace]);
    const service = await json<{ spec: { clusterIP: string } }>(["get", "service", "example-com-relay", "-n", namespace]);
    await customer?.stop();
    const mx = await startSubmissionServer({
      relayTo: world.port,
      listenAddress: nodeIp,
      users: [{ username: "support@example.com", password: "change-me", senders: ["support@example.com"] }],
      forward: secretForwarding(credentials, 587, service.spec.clusterIP),
    });
    customer = mx;
    try {
      // The site's values: the operator submits inbound verification emails to the customer's MX (an upgrade, as a
      // platform team would make it; the operator pod is replaced), the address sends through the customer's server
      // trusting its CA, and the domain's DKIM record is published.
      const upgraded = await helm([
        "upgrade",
        release,
        "charts/smtp-connector",
        "--namespace",
        system,
        "--reuse-values",
        "--set",
        `operator.verification.smtp=${nodeIp}:${customer.port}`,
      ]);
      assert.equal(upgraded.code, 0, upgraded.stderr);
      // The old operator pod hands over only once the new one is available; the address is changed after that, so
      // the operator that verifies it is the one with the new value.
      const rolledOut = await kubectl(["rollout", "status", `deployment/${release}-operator`, "-n", system, "--timeout=180s"]);
      assert.equal(rolledOut.code, 0, rolledOut.stdout + rolledOut.stderr);
      const ca = await kubectl(["create", "secret", "generic", "customer-ca", "-n", namespace, `--from-file=ca.crt=${mx.certFile}`]);
      assert.equal(ca.code, 0, ca.stderr);
      const dkim = await kubectl([
        "patch",
        "smtpdomain",
        "example-com",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        JSON.stringify({ spec: { dkim: { keys: [{ selector: "helpdesk1", recordPublished: true }] } } }),
      ]);
      assert.equal(dkim.code, 0, dkim.stderr);
      const address = await kubectl([
        "patch",
        "supportaddress",
        "support",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        JSON.stringify({
          spec: { outbound: { host: nodeIp, port: customer.port, tls: "StartTLS", caSecretRef: { name: "customer-ca" } } },
        }),
      ]);
      assert.equal(address.code, 0, address.stderr);

      interface Condition {
        type: string;
        status: string;
        reason: string;
        message: string;
      }
      const conditions = async () =>
        (await json<{ status?: { conditions?: Condition[] } }>(["get", "supportaddress", "support", "-n", namespace])).status?.conditions ??
        [];
      await eventually(
        "support@example.com Ready through the real pods",
        async () => ((await conditions()).some((c) => c.type === "Ready" && c.status === "True") ? true : undefined),
        300_000,
      ).catch(async (error: unknown) => {
        throw new Error(
          `${String(error)}\n${JSON.stringify(await conditions(), null, 1)}\n${customer!.log().split("\n").slice(-30).join("\n")}`,
        );
      });
      const ready = await conditions();
      for (const type of ["InboundVerified", "OutboundVerified"])
        assert.equal(ready.find((c) => c.type === type)?.status, "True", `${type}: ${JSON.stringify(ready)}`);
      // Both verification emails passed the customer's Postfix: the outbound one sent by a relay pod with the
      // address's login over verified TLS at the node's address, then both relayed to the relay Service's 587.
      assert.match(customer.log(), /sasl_method=PLAIN, sasl_username=support@example\.com/, "the relay pod logged in as the address");
      assert.match(
        customer.log(),
        new RegExp(`Verified TLS connection established to ${service.spec.clusterIP.replaceAll(".", "\\.")}\\[[^\\]]+\\]:587`),
      );

      // A reply: the helpdesk submits on the internal Service with the domain's submission credential, a relay pod
      // signs it and sends it through the customer's server with the address's login, which delivers it.
      const submission = await json<{ data?: Record<string, string> }>(["get", "secret", "example-com-submission", "-n", namespace]);
      const internal = await json<{ spec: { clusterIP: string } }>(["get", "service", "example-com-relay-internal", "-n", namespace]);
      // Until the kubelet refreshes the relay pods' mounted config, they still have the address as not Ready and
      // answer 451 (try again later), which the helpdesk's queue does: so does this.
      const submit = () =>
        swaks([
          "--server",
          `${internal.spec.clusterIP}:${text(submission, "port")}`,
          "--tls",
          "--auth",
          "PLAIN",
          "--auth-user",
          text(submission, "username"),
          "--auth-password",
          text(submission, "password"),
          "--from",
          "support@example.com",
          "--to",
          "jane@users.example.org",
          "--header",
          "From: Example Support <support@example.com>",
          "--header",
          "Subject: a reply from a real pod",
        ]);
      await eventually(
        "the reply accepted by a relay pod",
        async () => {
          const reply = await submit();
          if (reply.code === 0) return true;
          assert.match(
            reply.output,
            /451 4\.7\.1 support@example\.com is a support address of example\.com that is not Ready yet/,
            reply.output,
          );
          return undefined;
        },
        180_000,
      );
      const delivered = await eventually(
        "the reply in the world beyond the customer's server",
        () => world.messages().find((m) => m.content.includes("Subject: a reply from a real pod")),
        60_000,
      );
      assert.match(delivered.content, /^DKIM-Signature:[^]*?\bd=example\.com;[^]*?\bs=helpdesk1;/m, "signed with the domain's key");
    } finally {
      await world.stop();
    }
  });
  test("a relay pod deleted in the middle of traffic loses no message: Postfix keeps what was not accepted, the other pod and the replacement take it", async () => {
    const selector = "app.kubernetes.io/name=smtp-connector-relay,app.kubernetes.io/instance=example-com";
    const pods = (await json<{ items: Pod[] }>(["get", "pods", "-n", namespace, "-l", selector])).items;
    assert.equal(pods.length, 2, "the examples' two replicas");
    const total = 40;
    const sendOne = async (i: number) => {
      const sent = await swaks([
        "--server",
        `${nodeIp}:${customer!.port}`,
        "--from",
        "jane@users.example.org",
        "--to",
        "support@example.com",
        "--header",
        `Subject: burst ${i} of ${total}`,
      ]);
      assert.equal(sent.code, 0, sent.output);
    };
    // Five at a time into the customer's Postfix, which relays them through the Service; one pod is deleted
    // (SIGTERM, as a rollout or a node drain does) once a quarter of them are in.
    for (let i = 0; i < total; i += 5) {
      if (i === 10) assert.equal((await kubectl(["delete", "pod", "-n", namespace, pods[0]!.metadata.name, "--wait=false"])).code, 0);
      await Promise.all([0, 1, 2, 3, 4].map((k) => sendOne(i + k)));
    }
    const arrived = () => new Set(helpdesk!.messages().flatMap((m) => /Subject: burst (\d+) of 40/.exec(m.content)?.[1] ?? []));
    await eventually(
      "every message of the burst at the helpdesk",
      async () => {
        await customer!.flush();
        return arrived().size === total ? true : undefined;
      },
      180_000,
    ).catch(async (error: unknown) => {
      throw new Error(`${String(error)}: ${arrived().size} of ${total} arrived; ${await customer!.queued()} in Postfix's queue`);
    });
    assert.equal(await customer!.queued(), 0, "nothing left in the customer's queue");
    const replaced = await eventually(
      "two relay pods Running again",
      async () => {
        const list = (await json<{ items: Pod[] }>(["get", "pods", "-n", namespace, "-l", selector])).items;
        return list.length === 2 && running(list) && !list.some((p) => p.metadata.name === pods[0]!.metadata.name) ? list : undefined;
      },
      180_000,
    );
    assert.equal(replaced.length, 2);
  });

  test("spec.relay.template.pod reaches the pods the kubelet runs (labels, annotations, nodeSelector, tolerations, priorityClassName, imagePullSecrets, topologySpreadConstraints); a nodeSelector no node matches leaves the pod Pending and the relay not available", async (t) => {
    // Last in the file: it taints the node (untainted again below), which would keep other pods off it.
    const ns = "templated";
    const priority = {
      apiVersion: "scheduling.k8s.io/v1",
      kind: "PriorityClass",
      metadata: { name: "smtpc-test-relay" },
      value: 1000,
      globalDefault: false,
      description: "relay pods in the node tier",
    };
    const template = {
      metadata: { labels: { "team.example/owner": "mail" }, annotations: { "team.example/note": "from the domain's template" } },
      nodeSelector: { "smtpc.test/pool": "mail" },
      tolerations: [{ key: "smtpc.test/dedicated", operator: "Equal", value: "mail", effect: "NoSchedule" }],
      priorityClassName: "smtpc-test-relay",
      // A private registry's pull secret (the image is already on the node: pullPolicy Never, so nothing is pulled).
      imagePullSecrets: [{ name: "registry" }],
      topologySpreadConstraints: [
        {
          maxSkew: 1,
          topologyKey: "kubernetes.io/hostname",
          whenUnsatisfiable: "DoNotSchedule",
          labelSelector: { matchLabels: { "app.kubernetes.io/instance": "templated" } },
        },
      ],
    };
    const domain = {
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { name: "templated", namespace: ns },
      spec: {
        domain: "templated.example",
        inbound: { delivery: { smtp: { host: nodeIp, port: 9, tls: "None" } } },
        relay: { replicas: 1, template: { pod: template } },
      },
    };
    assert.equal((await kubectl(["create", "namespace", ns])).code, 0);
    const pullSecret = await kubectl([
      "create",
      "secret",
      "docker-registry",
      "registry",
      "-n",
      ns,
      "--docker-server=registry.example.net",
      "--docker-username=mail",
      "--docker-password=not-a-real-one",
    ]);
    assert.equal(pullSecret.code, 0, pullSecret.stderr);
    const applied = await kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "v1", kind: "List", items: [priority, domain] }),
    });
    assert.equal(applied.code, 0, applied.stderr);
    t.after(async () => {
      await kubectl(["taint", "node", nodeIp, "smtpc.test/dedicated-"]);
      await kubectl(["label", "node", nodeIp, "smtpc.test/pool-"]);
    });

    interface TemplatedPod extends Pod {
      metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
      spec: Pod["spec"] & {
        nodeSelector?: Record<string, string>;
        tolerations?: object[];
        priorityClassName?: string;
        priority?: number;
        nodeName?: string;
        imagePullSecrets?: { name: string }[];
        topologySpreadConstraints?: object[];
      };
      status: Pod["status"] & { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
    }
    const selector = "app.kubernetes.io/name=smtp-connector-relay,app.kubernetes.io/instance=templated";
    const pods = async () => (await json<{ items: TemplatedPod[] }>(["get", "pods", "-n", ns, "-l", selector])).items;
    interface Condition {
      type: string;
      status: string;
      reason: string;
      message: string;
    }
    const relayAvailable = async () =>
      (await json<{ status?: { conditions?: Condition[] } }>(["get", "smtpdomain", "templated", "-n", ns])).status?.conditions?.find(
        (c) => c.type === "RelayAvailable",
      );

    // No node has the label: the scheduler leaves the pod Pending, saying why, and the domain's relay is not available.
    const pending = await eventually(
      "the relay pod unschedulable",
      async () => {
        const list = await pods();
        return list.length === 1 &&
          list[0]!.status.conditions?.some((c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable")
          ? list[0]!
          : undefined;
      },
      120_000,
    );
    assert.equal(pending.status.phase, "Pending");
    assert.equal(pending.spec.nodeName, undefined);
    assert.match(
      pending.status.conditions!.find((c) => c.type === "PodScheduled")!.message ?? "",
      /node\(s\) didn't match Pod's node affinity\/selector/,
    );
    const waiting = await eventually("the domain's RelayAvailable condition", async () => await relayAvailable(), 60_000);
    assert.equal(waiting.status, "False", JSON.stringify(waiting));
    t.diagnostic(`while the pod is Pending the domain says: RelayAvailable=${waiting.status} ${waiting.reason}: ${waiting.message}`);

    // The node labelled for the pool and tainted for it: the pod schedules (it tolerates the taint) and runs.
    assert.equal((await kubectl(["taint", "node", nodeIp, "smtpc.test/dedicated=mail:NoSchedule"])).code, 0);
    assert.equal((await kubectl(["label", "node", nodeIp, "smtpc.test/pool=mail"])).code, 0);
    const [pod] = await eventually(
      "the relay pod Running and ready on the node",
      async () => {
        const list = await pods();
        return running(list) ? list : undefined;
      },
      180_000,
    );
    assert.equal(pod!.metadata.name, pending.metadata.name, "the same pod, scheduled once a node matched");
    assert.equal(pod!.spec.nodeName, nodeIp);
    assert.equal(pod!.metadata.labels?.["team.example/owner"], "mail");
    assert.equal(pod!.metadata.annotations?.["team.example/note"], "from the domain's template");
    assert.deepEqual(pod!.spec.nodeSelector, template.nodeSelector);
    assert.ok(
      pod!.spec.tolerations?.some((tol) => isDeepStrictEqual(tol, template.tolerations[0])),
      JSON.stringify(pod!.spec.tolerations),
    );
    assert.equal(pod!.spec.priorityClassName, "smtpc-test-relay");
    assert.deepEqual(pod!.spec.imagePullSecrets, [{ name: "registry" }]);
    assert.deepEqual(
      pod!.spec.topologySpreadConstraints,
      template.topologySpreadConstraints,
      "the domain's spread replaces the default one",
    );
    assert.equal(pod!.spec.priority, 1000, "the Priority admission resolved the class");
    assert.equal(pod!.spec.containers[0]!.image, cluster.image);
    await eventually("the domain's relay available", async () => ((await relayAvailable())?.status === "True" ? true : undefined), 120_000);
  });
});
