// Which proxy a kubeconfig's cluster is reached through, as client-go decides it: proxy-url (http://,
// https://; SOCKS refused), else HTTPS_PROXY unless NO_PROXY (Go's rules) or a loopback server exempts
// it; and the cluster fields refused or warned about when loaded (http:// servers,
// insecure-skip-tls-verify), and the user's impersonation fields. The tunnel itself runs against tinyproxy: test/apiserver/kubeconfig-proxy.test.ts.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { stringify } from "yaml";
import { createLogger } from "../../lib/log.js";
import { clusterAccess, type AccessOptions } from "../../operator/kube/access.js";
import { parseProxy, proxyFromEnvironment } from "../../operator/kube/proxy.js";
import { tempDir } from "../support/mail.js";

const dir = tempDir("kubeconfig-proxy");
let n = 0;
function load(cluster: Record<string, unknown>, options: AccessOptions = {}, user: Record<string, unknown> = { token: "t" }) {
  const file = join(dir, `config-${++n}`);
  writeFileSync(
    file,
    stringify({
      "current-context": "c",
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
      clusters: [{ name: "k", cluster: { server: "https://api.example.com:6443", ...cluster } }],
      users: [{ name: "u", user }],
    }),
  );
  return clusterAccess(file, undefined, options);
}

const api = new URL("https://api.example.com:6443");
const proxied = (environment: NodeJS.ProcessEnv, server = api) => proxyFromEnvironment(server, environment)?.display;

describe("kubeconfig proxies", () => {
  test("proxy-url: http:// and https://, its login as Proxy-Authorization basic and never in what is shown", () => {
    const proxy = parseProxy("http://ops:p%40ss@proxy.example.com:3128", "proxy-url", true);
    assert.equal(proxy.display, "http://proxy.example.com:3128");
    assert.equal(proxy.authorization, `Basic ${Buffer.from("ops:p@ss").toString("base64")}`);
    assert.equal(proxy.url.href, "http://proxy.example.com:3128/");
    assert.equal(parseProxy("https://proxy.example.com", "proxy-url", true).authorization, undefined);
    const access = load({ "proxy-url": "http://ops:p%40ss@proxy.example.com:3128" });
    assert.match(access.proxy ?? "", /^http:\/\/proxy\.example\.com:3128 \(kubeconfig .*: cluster k: proxy-url\)$/);
    assert.doesNotMatch(access.proxy ?? "", /ops|p%40ss/);
  });

  test("proxy-url refused: SOCKS, other schemes, no scheme, not a string; the value (it may hold a password) is not quoted", () => {
    assert.throws(
      () => load({ "proxy-url": "socks5://u:pw@proxy:1080" }),
      /cluster k: proxy-url: SOCKS proxies \(socks5:\/\/\) are not supported/,
    );
    assert.throws(
      () => load({ "proxy-url": "ftp://proxy:21" }),
      /proxy-url: unsupported proxy scheme ftp:\/\/ \(http:\/\/ and https:\/\/ are supported\)/,
    );
    assert.throws(() => load({ "proxy-url": "proxy:3128" }), /proxy-url needs a scheme: http:\/\/host:port or https:\/\/host:port/);
    assert.throws(
      () => load({ "proxy-url": "http://u:secret@[x" }),
      (e: Error) => /is not a URL/.test(e.message) && !e.message.includes("secret"),
    );
    assert.throws(() => load({ "proxy-url": 3128 }), /proxy-url must be a URL such as http:\/\/proxy\.example\.com:3128/);
  });

  test("HTTPS_PROXY (then https_proxy) for an https server; a bare host:port means http://; HTTP_PROXY does not count", () => {
    assert.equal(proxied({ HTTPS_PROXY: "proxy:3128" }), "http://proxy:3128");
    assert.equal(proxied({ https_proxy: "https://proxy" }), "https://proxy");
    assert.equal(proxied({ HTTPS_PROXY: "http://a:1", https_proxy: "http://b:1" }), "http://a:1");
    assert.equal(proxied({ HTTP_PROXY: "http://a:1" }), undefined);
    assert.throws(() => proxied({ HTTPS_PROXY: "socks5://proxy:1080" }), /HTTPS_PROXY: SOCKS proxies/);
  });

  test("NO_PROXY as Go reads it: *, names and their subdomains, .suffix, *.suffix, ports, IPs, CIDRs; loopback never proxied", () => {
    const env = (noProxy: string) => ({ HTTPS_PROXY: "http://proxy:3128", NO_PROXY: noProxy });
    const direct = (noProxy: string, server = api) => proxied(env(noProxy), server) === undefined;
    assert.equal(direct("*"), true);
    assert.equal(direct("example.com"), true);
    assert.equal(direct(" other.org , API.EXAMPLE.COM "), true);
    assert.equal(direct(".example.com"), true);
    assert.equal(direct("*.example.com"), true);
    assert.equal(direct(".api.example.com"), false, "a leading dot matches subdomains only");
    assert.equal(direct("xample.com"), false);
    assert.equal(direct("api.example.com:6443"), true);
    assert.equal(direct("api.example.com:443"), false);
    assert.equal(direct("", new URL("https://10.1.2.3")), false);
    assert.equal(direct("10.0.0.0/8", new URL("https://10.1.2.3")), true);
    assert.equal(direct("10.1.2.3:443", new URL("https://10.1.2.3")), true);
    assert.equal(direct("192.168.0.0/16,10.1.2.4", new URL("https://10.1.2.3")), false);
    assert.equal(direct("fd00::/8", new URL("https://[fd00::1]:6443")), true);
    assert.equal(direct("[fd00::1]:6443", new URL("https://[fd00::1]:6443")), true);
    assert.equal(direct("10.0.0.0/8", new URL("https://[fd00::1]:6443")), false);
    for (const loopback of ["https://127.0.0.1:6443", "https://127.9.9.9", "https://localhost:6443", "https://[::1]:6443"])
      assert.equal(direct("", new URL(loopback)), true, loopback);
    assert.equal(proxied({ https_proxy: "http://proxy:3128", no_proxy: "example.com" }), undefined);
  });

  test("a cluster without proxy-url takes HTTPS_PROXY when loaded; with proxy-url the environment does not count", () => {
    const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };
    try {
      Object.assign(process.env, { HTTPS_PROXY: "http://env-proxy:3128", NO_PROXY: "" });
      assert.equal(load({}).proxy, "http://env-proxy:3128 (HTTPS_PROXY)");
      assert.match(load({ "proxy-url": "http://own:3128" }).proxy ?? "", /^http:\/\/own:3128 /);
      process.env.NO_PROXY = "*";
      assert.equal(load({}).proxy, undefined);
      assert.match(load({ "proxy-url": "http://own:3128" }).proxy ?? "", /^http:\/\/own:3128 /);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe("kubeconfig cluster TLS fields", () => {
  test("an http:// server is refused (the token would go in clear), and so is a server that is not a URL", () => {
    assert.throws(
      () => load({ server: "http://127.0.0.1:8080" }),
      /cluster k: server http:\/\/127\.0\.0\.1:8080 is not https:\/\/; the operator talks to the API server over TLS only/,
    );
    assert.throws(() => load({ server: "api.example.com" }), /cluster k: server api\.example\.com is not a URL/);
  });

  test("insecure-skip-tls-verify: warned about in the log at load; together with a certificate-authority refused, as client-go does", () => {
    const stream = new PassThrough();
    let text = "";
    stream.on("data", (c: Buffer) => (text += c.toString()));
    load({ "insecure-skip-tls-verify": true }, { log: createLogger("test", { level: "debug", stream }) });
    assert.match(
      text,
      /warn.*insecure-skip-tls-verify: the API server's certificate is not checked, so anyone on the path to api\.example\.com:6443 can read the operator's credentials/,
    );
    assert.throws(
      () => load({ "insecure-skip-tls-verify": true, "certificate-authority-data": Buffer.from("ca").toString("base64") }),
      /insecure-skip-tls-verify with a certificate-authority; remove one/,
    );
    assert.throws(() => load({ "tls-server-name": 7 }), /cluster k: tls-server-name must be a host name/);
  });
});

describe("kubeconfig files", () => {
  test("certificate-authority, client-certificate and client-key files are relative to the kubeconfig's directory", async () => {
    mkdirSync(join(dir, "pki"), { recursive: true });
    for (const name of ["ca", "cert", "key"]) writeFileSync(join(dir, "pki", `${name}.pem`), `${name} pem`);
    const access = load(
      { "certificate-authority": "pki/ca.pem" },
      {},
      { "client-certificate": "pki/cert.pem", "client-key": "pki/key.pem" },
    );
    const { agent } = await access.credentials();
    assert.deepEqual(agent.options.ca, Buffer.from("ca pem"));
    assert.equal(agent.options.cert, "cert pem");
    assert.equal(agent.options.key, "key pem");
  });

  test("no kubeconfig anywhere and not in a pod: an error saying what to give (client-node would try http://localhost:8080)", () => {
    const saved = {
      HOME: process.env.HOME,
      KUBECONFIG: process.env.KUBECONFIG,
      KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST,
    };
    try {
      process.env.HOME = tempDir("kubeconfig-home");
      delete process.env.KUBECONFIG;
      delete process.env.KUBERNETES_SERVICE_HOST;
      assert.throws(() => clusterAccess(), /no --kubeconfig given and not running in a cluster \(KUBERNETES_SERVICE_HOST is not set\)/);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe("kubeconfig user fields", () => {
  const user = (fields: Record<string, unknown>) => load({}, {}, { token: "t", ...fields });
  test("as, as-uid, as-groups, as-user-extra become client-go's Impersonate-* headers (the extra key percent-encoded)", () => {
    assert.equal(user({}).headers, undefined);
    assert.deepEqual(
      user({ as: "jane", "as-uid": "42", "as-groups": ["a", "b"], "as-user-extra": { "scopes.example/x y": ["r", "w"] } }).headers,
      {
        "impersonate-user": "jane",
        "impersonate-uid": "42",
        "impersonate-group": ["a", "b"],
        "impersonate-extra-scopes.example%2Fx%20y": ["r", "w"],
      },
    );
  });

  test("refused when loaded: impersonation fields of the wrong shape, groups without as, and client-node's token-file", () => {
    assert.throws(() => user({ as: 7 }), /user u: as must be a user name/);
    assert.throws(() => user({ as: "jane", "as-groups": "admins" }), /as-groups must be a list of group names/);
    assert.throws(() => user({ as: "jane", "as-user-extra": { k: "v" } }), /as-user-extra must map keys to lists of strings/);
    assert.throws(
      () => user({ "as-groups": ["system:masters"] }),
      /as-groups, as-uid and as-user-extra need as \(the user to impersonate\)/,
    );
    assert.throws(
      () => load({}, {}, { "token-file": "/t" }),
      /token-file is not a kubeconfig field \(client-node's spelling\); kubectl's is tokenFile/,
    );
  });
});
