// How the operator reads kubeconfigs outside a cluster, as kubectl does: every
// file of KUBECONFIG (the first to name a context, cluster or user wins, and
// the first current-context), --context, paths relative to their own file, and
// a server URL's own path kept (a proxy such as Rancher's serves the API there).
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { stringify } from "yaml";
import { apiUrl, clusterAccess, type ClusterAccess } from "../../operator/kube/access.js";
import { tempDir } from "../support/mail.js";

const tokenOf = async (access: ClusterAccess) => (await access.credentials()).token;

describe("kubeconfig", () => {
  const saved = process.env.KUBECONFIG;
  after(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });
  const dir = tempDir("kubeconfig");
  mkdirSync(join(dir, "b"));
  const a = join(dir, "a.yaml");
  const b = join(dir, "b", "b.yaml");
  writeFileSync(
    a,
    stringify({
      "current-context": "rancher",
      contexts: [{ name: "rancher", context: { cluster: "rancher", user: "alice" } }],
      clusters: [{ name: "rancher", cluster: { server: "https://127.0.0.1:1/k8s/clusters/c-m-abc" } }],
      users: [{ name: "alice", user: { token: "alice-token" } }],
    }),
  );
  writeFileSync(join(dir, "b", "token"), "bob-token\n");
  writeFileSync(
    b,
    stringify({
      "current-context": "other",
      contexts: [
        { name: "other", context: { cluster: "other", user: "bob" } },
        { name: "rancher", context: { cluster: "other", user: "bob" } },
      ],
      clusters: [{ name: "other", cluster: { server: "https://127.0.0.2:6443" } }],
      users: [{ name: "bob", user: { tokenFile: "token" } }],
    }),
  );

  test("every file of KUBECONFIG: the first current-context and the first definition of a name win; a missing file is skipped", async () => {
    process.env.KUBECONFIG = [join(dir, "missing.yaml"), a, b].join(":");
    const access = clusterAccess();
    assert.equal(access.server.href, "https://127.0.0.1:1/k8s/clusters/c-m-abc");
    assert.equal(await tokenOf(access), "alice-token");
  });

  test("--context picks a context of any file; its user's tokenFile is relative to that user's own file", async () => {
    process.env.KUBECONFIG = [a, b].join(":");
    const access = clusterAccess(undefined, "other");
    assert.equal(access.server.origin, "https://127.0.0.2:6443");
    assert.equal(await tokenOf(access), "bob-token");
    assert.throws(() => clusterAccess(undefined, "nope"), /no context named nope \(there are: rancher, other\)/);
  });

  test("--kubeconfig reads that file alone", async () => {
    process.env.KUBECONFIG = a;
    assert.equal(await tokenOf(clusterAccess(b)), "bob-token");
  });

  test("the server URL's path stays in front of every API path", () => {
    assert.equal(
      apiUrl(new URL("https://rancher.example.com/k8s/clusters/c-m-abc"), "/api/v1/secrets?limit=500").href,
      "https://rancher.example.com/k8s/clusters/c-m-abc/api/v1/secrets?limit=500",
    );
    assert.equal(
      apiUrl(new URL("https://rancher.example.com/k8s/clusters/c-m-abc/"), "/api/v1/secrets").href,
      "https://rancher.example.com/k8s/clusters/c-m-abc/api/v1/secrets",
    );
    assert.equal(
      apiUrl(new URL("https://10.0.0.1:6443"), "/apis/apps/v1/deployments").href,
      "https://10.0.0.1:6443/apis/apps/v1/deployments",
    );
  });
});
