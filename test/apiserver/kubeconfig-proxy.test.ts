// A kubeconfig cluster behind an HTTP proxy, against the real API server with Debian's tinyproxy in
// front of it: proxy-url (http:// and https://, with a login), tls-server-name through the tunnel,
// a proxy that refuses the CONNECT, and HTTPS_PROXY / NO_PROXY as kubectl (the same build's) reads
// them. The proxy's own log shows the CONNECT each time.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createServer, type Server } from "node:tls";
import { parse, stringify } from "yaml";
import { clusterAccess, request, watchStream, type ClusterAccess } from "../../operator/kube/access.js";
import { kubectl, connect } from "../support/kube.js";
import { freePort, selfSignedCertificate, tempDir } from "../support/mail.js";
import { startTinyproxy, type Tinyproxy } from "../support/tinyproxy.js";

interface KubeconfigDoc {
  clusters: { name: string; cluster: Record<string, unknown> }[];
}

describe("kubeconfig proxy-url and HTTPS_PROXY against the API server through tinyproxy", () => {
  let admin: KubeconfigDoc & Record<string, unknown>;
  let server: URL;
  let proxy: Tinyproxy;
  const dir = tempDir("kube-proxy");
  before(async () => {
    admin = parse(readFileSync((await connect()).kubeconfigPath, "utf8")) as KubeconfigDoc & Record<string, unknown>;
    server = new URL(String(admin.clusters[0]!.cluster.server));
    proxy = await startTinyproxy({ connectPorts: [Number(server.port)] });
  });
  after(() => proxy.stop());

  let files = 0;
  /** The admin's kubeconfig with its cluster changed by `cluster`. */
  const kubeconfig = (cluster: Record<string, unknown>): string => {
    const file = join(dir, `kubeconfig-${++files}`);
    const [first] = admin.clusters;
    writeFileSync(file, stringify({ ...admin, clusters: [{ name: first!.name, cluster: { ...first!.cluster, ...cluster } }] }));
    return file;
  };
  const listNamespaces = async (access: ClusterAccess) => {
    const response = await request(access, "GET", "/api/v1/namespaces?limit=1");
    assert.equal(response.status, 200, response.body);
    return (JSON.parse(response.body) as { kind: string }).kind;
  };
  const connects = (log: string, target: string) => log.split("\n").filter((l) => l.includes(`CONNECT ${target} `)).length;

  test("proxy-url http://: lists and watches go through a CONNECT tunnel, TLS to the API server inside it", async () => {
    const target = `127.0.0.1:${server.port}`;
    const before = connects(proxy.log(), target);
    const access = clusterAccess(kubeconfig({ "proxy-url": `http://127.0.0.1:${proxy.port}` }));
    assert.equal(
      access.proxy,
      `http://127.0.0.1:${proxy.port} (kubeconfig ${join(dir, `kubeconfig-${files}`)}: cluster testenv: proxy-url)`,
    );
    assert.equal(await listNamespaces(access), "NamespaceList");
    let events = 0;
    await watchStream(access, "/api/v1/namespaces?watch=1&timeoutSeconds=1", () => events++, new AbortController().signal);
    assert.ok(events > 0, "the watch through the proxy delivered the namespaces");
    assert.ok(connects(proxy.log(), target) > before, `tinyproxy logged no CONNECT ${target}:\n${proxy.log()}`);
  });

  test("tls-server-name is the name checked inside the tunnel: a server named by a host not in the certificate", async () => {
    // `vm` is this machine's name (127.0.0.1 in /etc/hosts), resolved by the proxy; the certificate names `kubernetes`.
    const viaName = { server: `https://vm:${server.port}`, "proxy-url": `http://127.0.0.1:${proxy.port}` };
    await assert.rejects(listNamespaces(clusterAccess(kubeconfig(viaName))), /Hostname\/IP does not match certificate's altnames/);
    assert.equal(await listNamespaces(clusterAccess(kubeconfig({ ...viaName, "tls-server-name": "kubernetes" }))), "NamespaceList");
    assert.ok(connects(proxy.log(), `vm:${server.port}`) >= 2, proxy.log());
  });

  test("a proxy that refuses the CONNECT: the error names the proxy, the API server, the status and what to change", async () => {
    const strict = await startTinyproxy({ connectPorts: [443] });
    try {
      await assert.rejects(
        listNamespaces(clusterAccess(kubeconfig({ "proxy-url": `http://127.0.0.1:${strict.port}` }))),
        new RegExp(
          `proxy http://127\\.0\\.0\\.1:${strict.port} \\(.*proxy-url\\) refused the tunnel to the API server 127\\.0\\.0\\.1:${server.port}: ` +
            `HTTP 403 Access violation; the proxy does not allow CONNECT to this host and port \\(tinyproxy: ConnectPort`,
        ),
      );
      const closed = await freePort();
      await assert.rejects(
        listNamespaces(clusterAccess(kubeconfig({ "proxy-url": `http://127.0.0.1:${closed}` }))),
        new RegExp(
          `proxy http://127\\.0\\.0\\.1:${closed} .*: cannot open a tunnel to 127\\.0\\.0\\.1:${server.port}: connect ECONNREFUSED`,
        ),
      );
    } finally {
      await strict.stop();
    }
  });

  test("the proxy's login comes from the URL (Proxy-Authorization basic); a wrong one is refused (407, tinyproxy: 401) with a message that does not repeat the password", async () => {
    const guarded = await startTinyproxy({ connectPorts: [Number(server.port)], basicAuth: { user: "ops", password: "s3cret-pw" } });
    try {
      assert.equal(
        await listNamespaces(clusterAccess(kubeconfig({ "proxy-url": `http://ops:s3cret-pw@127.0.0.1:${guarded.port}` }))),
        "NamespaceList",
      );
      const wrong = clusterAccess(kubeconfig({ "proxy-url": `http://ops:wrong-pw@127.0.0.1:${guarded.port}` }));
      assert.equal(wrong.proxy?.includes("wrong-pw"), false);
      const error = await listNamespaces(wrong).then(
        () => assert.fail("a wrong proxy password was accepted"),
        (e: Error) => e,
      );
      assert.match(error.message, /HTTP 40[17] .*the proxy did not accept the user and password in the proxy URL/);
      assert.doesNotMatch(error.message, /wrong-pw|ops:/);
      await assert.rejects(
        listNamespaces(clusterAccess(kubeconfig({ "proxy-url": `http://127.0.0.1:${guarded.port}` }))),
        /HTTP 40[17] .*the proxy wants a login: put it in the proxy URL/,
      );
    } finally {
      await guarded.stop();
    }
  });

  test("proxy-url https://: TLS to the proxy (its certificate checked against the cluster's CA bundle), then TLS to the API server", async () => {
    // tinyproxy speaks plain HTTP; this TLS front end only unwraps the connection to it.
    const { certFile, keyFile } = await selfSignedCertificate(dir, "proxy.test");
    const front: Server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (socket) => {
      const upstream = netConnect(proxy.port, "127.0.0.1");
      socket.pipe(upstream).pipe(socket);
      socket.on("error", () => upstream.destroy());
      upstream.on("error", () => socket.destroy());
    });
    const port = await freePort();
    await new Promise<void>((resolve) => front.listen(port, "127.0.0.1", resolve));
    try {
      const clusterCa = Buffer.from(String(admin.clusters[0]!.cluster["certificate-authority-data"]), "base64").toString();
      const bundle = Buffer.from(`${clusterCa.trimEnd()}\n${readFileSync(certFile, "utf8")}`).toString("base64");
      const proxied = { "proxy-url": `https://127.0.0.1:${port}` };
      assert.equal(await listNamespaces(clusterAccess(kubeconfig({ ...proxied, "certificate-authority-data": bundle }))), "NamespaceList");
      await assert.rejects(
        listNamespaces(clusterAccess(kubeconfig(proxied))),
        /proxy https:\/\/127\.0\.0\.1:\d+ .*: cannot open a tunnel .*self-signed/,
      );
    } finally {
      front.close();
    }
  });

  describe("HTTPS_PROXY and NO_PROXY, with kubectl of the same build as the reference", () => {
    const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };
    after(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });
    const viaName = () => kubeconfig({ server: `https://vm:${server.port}`, "tls-server-name": "kubernetes" });
    const kubectlGet = async (file: string, env: Record<string, string>) => {
      const saved = { ...process.env };
      Object.assign(process.env, env);
      try {
        return await kubectl(["get", "--raw", "/api/v1/namespaces?limit=1"], { kubeconfig: file });
      } finally {
        for (const name of Object.keys(env)) {
          if (saved[name] === undefined) delete process.env[name];
          else process.env[name] = saved[name];
        }
      }
    };

    test("HTTPS_PROXY applies when the cluster has no proxy-url, for kubectl and for us alike", async () => {
      const file = viaName();
      const target = `vm:${server.port}`;
      let seen = connects(proxy.log(), target);
      const env = { HTTPS_PROXY: `127.0.0.1:${proxy.port}`, NO_PROXY: "" };
      const theirs = await kubectlGet(file, env);
      assert.equal(theirs.code, 0, theirs.stderr);
      assert.ok(connects(proxy.log(), target) > seen, "kubectl used HTTPS_PROXY");
      seen = connects(proxy.log(), target);
      Object.assign(process.env, env);
      const access = clusterAccess(file);
      assert.match(access.proxy ?? "", /^http:\/\/127\.0\.0\.1:\d+ \(HTTPS_PROXY\)$/);
      assert.equal(await listNamespaces(access), "NamespaceList");
      assert.ok(connects(proxy.log(), target) > seen, "we used HTTPS_PROXY");
    });

    test("NO_PROXY naming the server, and a loopback server, go direct (a dead HTTPS_PROXY would fail them otherwise)", async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      for (const [file, noProxy] of [
        [viaName(), "example.com,VM"],
        [viaName(), ".example.com,vm:1,10.0.0.0/8,vm"],
        [kubeconfig({}), ""], // 127.0.0.1: never proxied, as in Go
      ] as const) {
        const env = { HTTPS_PROXY: dead, NO_PROXY: noProxy };
        const theirs = await kubectlGet(file, env);
        assert.equal(theirs.code, 0, `kubectl with NO_PROXY=${noProxy}: ${theirs.stderr}`);
        Object.assign(process.env, env);
        const access = clusterAccess(file);
        assert.equal(access.proxy, undefined, `NO_PROXY=${noProxy}`);
        assert.equal(await listNamespaces(access), "NamespaceList");
      }
    });

    test("proxy-url wins over HTTPS_PROXY and NO_PROXY", async () => {
      Object.assign(process.env, { HTTPS_PROXY: `http://127.0.0.1:${await freePort()}`, NO_PROXY: "*" });
      const access = clusterAccess(kubeconfig({ "proxy-url": `http://127.0.0.1:${proxy.port}` }));
      assert.match(access.proxy ?? "", /proxy-url\)$/);
      assert.equal(await listNamespaces(access), "NamespaceList");
    });
  });
});
