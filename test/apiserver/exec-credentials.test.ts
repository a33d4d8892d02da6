// Kubeconfigs whose user is an exec credential plugin, against the real API server: a plugin that
// returns the admin's client certificate, one that returns a ServiceAccount token (TokenRequest), and
// one whose first token the server refuses (401): the plugin runs once more and the request, or the
// watch, goes through with the new token. The server says who it authenticated (SelfSubjectReview).
import assert from "node:assert/strict";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { parse, stringify } from "yaml";
import { clusterAccess, request, watchStream, type ClusterAccess } from "../../operator/kube/access.js";
import { Cluster } from "../../operator/kube/cluster.js";
import { tempDir } from "../support/mail.js";
import { connect, freshNamespace, kubectl, selfSubjectReview, serviceAccountKubeconfig } from "../support/kube.js";

interface KubeconfigDoc {
  clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
  users: { user: { token?: string; "client-certificate-data"?: string; "client-key-data"?: string } }[];
}

const v1 = "client.authentication.k8s.io/v1";

/** The user the API server authenticates the request as. */
const whoAmI = async (access: ClusterAccess): Promise<string> => (await selfSubjectReview(access)).username;

describe("exec credential plugins against the API server", () => {
  let admin: KubeconfigDoc;
  let adminPath: string;
  before(async () => {
    adminPath = (await connect()).kubeconfigPath;
    admin = parse(readFileSync(adminPath, "utf8")) as KubeconfigDoc;
  });

  /**
   * A kubeconfig whose user runs ./plugin (relative: from the kubeconfig's directory); the plugin
   * prints credentials/<run number>.json, or the last one there is, and counts its runs.
   */
  function pluginKubeconfig(credentials: Record<string, unknown>[]): { file: string; runs: () => number } {
    const dir = tempDir("exec-plugin");
    credentials.forEach((status, i) =>
      writeFileSync(join(dir, `${i + 1}.json`), JSON.stringify({ apiVersion: v1, kind: "ExecCredential", status })),
    );
    writeFileSync(
      join(dir, "plugin"),
      `#!/bin/sh\ncd "$(dirname "$0")"\necho run >> runs\nn=$(wc -l < runs)\n[ -f "$n.json" ] || n=${credentials.length}\ncat "$n.json"\n`,
    );
    chmodSync(join(dir, "plugin"), 0o755);
    const file = join(dir, "kubeconfig");
    writeFileSync(
      file,
      stringify({
        apiVersion: "v1",
        kind: "Config",
        "current-context": "exec",
        contexts: [{ name: "exec", context: { cluster: "testenv", user: "plugin" } }],
        clusters: [{ name: "testenv", cluster: admin.clusters[0]!.cluster }],
        users: [
          {
            name: "plugin",
            user: { exec: { apiVersion: v1, command: "./plugin", interactiveMode: "Never", installHint: "the test writes it" } },
          },
        ],
      }),
    );
    return { file, runs: () => readFileSync(join(dir, "runs"), "utf8").split("\n").filter(Boolean).length };
  }

  async function serviceAccountToken(namespace: string): Promise<string> {
    const out = await serviceAccountKubeconfig(namespace, "exec-plugin", join(tempDir("exec-sa"), "kubeconfig"));
    return (parse(readFileSync(out, "utf8")) as KubeconfigDoc).users[0]!.user.token!;
  }

  test("a plugin that returns a client certificate: the operator's client authenticates with it", async () => {
    const user = admin.users[0]!.user;
    const pem = (b64: string | undefined) => Buffer.from(b64!, "base64").toString("utf8");
    const plugin = pluginKubeconfig([
      { clientCertificateData: pem(user["client-certificate-data"]), clientKeyData: pem(user["client-key-data"]) },
    ]);
    const access = clusterAccess(plugin.file);
    assert.equal(await whoAmI(access), await whoAmI(clusterAccess(adminPath)), "the admin, by its certificate");
    // The operator's own calls through it: a read by name (404 is an answer) and a list.
    assert.equal(await new Cluster(access).read("v1", "Secret", "default", "no-such-secret"), undefined);
    assert.equal((await request(access, "GET", "/api/v1/namespaces?limit=1")).status, 200);
    assert.equal(plugin.runs(), 1, "the credential is kept (it has no expiry)");
  });

  test("a plugin that returns a token (a ServiceAccount's, from TokenRequest)", async (t) => {
    const namespace = await freshNamespace(t, "exec");
    const plugin = pluginKubeconfig([
      { token: await serviceAccountToken(namespace), expirationTimestamp: new Date(Date.now() + 3600_000).toISOString() },
    ]);
    const access = clusterAccess(plugin.file);
    assert.equal(await whoAmI(access), `system:serviceaccount:${namespace}:exec-plugin`);
    assert.equal(await whoAmI(access), `system:serviceaccount:${namespace}:exec-plugin`);
    assert.equal(plugin.runs(), 1);
  });

  test("a token the server refuses (401) runs the plugin once more, and the request goes through with the new one", async (t) => {
    const namespace = await freshNamespace(t, "exec");
    const plugin = pluginKubeconfig([{ token: "revoked-or-expired" }, { token: await serviceAccountToken(namespace) }]);
    const access = clusterAccess(plugin.file);
    assert.equal(await whoAmI(access), `system:serviceaccount:${namespace}:exec-plugin`);
    assert.equal(plugin.runs(), 2, "one run more after the 401");
    await whoAmI(access);
    assert.equal(plugin.runs(), 2, "then the new token is kept");
  });

  test("a watch refused with 401 is made again with the plugin's next token", async (t) => {
    const namespace = await freshNamespace(t, "exec");
    await kubectl(["create", "configmap", "seen", "-n", namespace, "--from-literal=a=1"]);
    // Its own namespace's config maps are readable to no ServiceAccount by default: the admin's certificate.
    const user = admin.users[0]!.user;
    const pem = (b64: string | undefined) => Buffer.from(b64!, "base64").toString("utf8");
    const plugin = pluginKubeconfig([
      { token: "revoked-or-expired" },
      { clientCertificateData: pem(user["client-certificate-data"]), clientKeyData: pem(user["client-key-data"]) },
    ]);
    const access = clusterAccess(plugin.file);
    const events: string[] = [];
    const stop = new AbortController();
    await watchStream(
      access,
      `/api/v1/namespaces/${namespace}/configmaps?watch=1&resourceVersion=0`,
      (event) => {
        events.push(`${event.type} ${(event.object as { metadata: { name: string } }).metadata.name}`);
        stop.abort();
      },
      stop.signal,
    );
    assert.deepEqual(events, ["ADDED seen"]);
    assert.equal(plugin.runs(), 2);
  });
});
