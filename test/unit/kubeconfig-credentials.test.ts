// Credentials a kubeconfig user gets from a program or a legacy auth-provider, as client-go gets
// them: exec plugins run as kubectl runs them (command relative to the kubeconfig or on PATH, args,
// env, KUBERNETES_EXEC_INFO, never interactive), their credential kept until it expires or the
// server refuses it, their output validated, their failures named with the installHint, their
// standard error logged with nothing credential-shaped; oidc's id-token as the bearer token; gcp
// and azure refused with the exec plugin that replaces them. The real API server: test/apiserver/exec-credentials.test.ts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import { stringify } from "yaml";
import { createLogger } from "../../lib/log.js";
import { clusterAccess, type AccessOptions } from "../../operator/kube/access.js";
import { redact } from "../../operator/kube/credentials.js";
import { tempDir } from "../support/mail.js";

const v1 = "client.authentication.k8s.io/v1";

/** A kubeconfig in its own directory whose user is `user`; the plugin scripts go in `bin/` beside it. */
function kubeconfigWith(
  user: Record<string, unknown> | ((dir: string) => Record<string, unknown>),
  cluster: Record<string, unknown> = {},
): { dir: string; file: string } {
  const dir = tempDir("kubeconfig-cred");
  mkdirSync(join(dir, "bin"));
  const file = join(dir, "config");
  writeFileSync(
    file,
    stringify({
      "current-context": "c",
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
      clusters: [
        {
          name: "k",
          cluster: {
            server: "https://127.0.0.1:1/base",
            "certificate-authority-data": Buffer.from("not a CA").toString("base64"),
            ...cluster,
          },
        },
      ],
      users: [{ name: "u", user: typeof user === "function" ? user(dir) : user }],
    }),
  );
  return { dir, file };
}

/** A shell script: it records each run (and its environment) in `runs` and `env`, then does `body`. */
function plugin(dir: string, name: string, body: string): string {
  const path = join(dir, "bin", name);
  writeFileSync(path, `#!/bin/sh\necho run >> "${dir}/runs"\nenv > "${dir}/env"\nprintf '%s\\n' "$@" > "${dir}/args"\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const credentialJson = (status: Record<string, unknown>, apiVersion = v1) => JSON.stringify({ apiVersion, kind: "ExecCredential", status });
const printing = (json: string) => `cat <<'EOF'\n${json}\nEOF`;
const runs = (dir: string) => readFileSync(join(dir, "runs"), "utf8").split("\n").filter(Boolean).length;

function capturedLog(): { log: ReturnType<typeof createLogger>; lines: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (c: Buffer) => (text += c.toString()));
  return { log: createLogger("test", { level: "debug", stream }), lines: () => text };
}

function clock(start = Date.parse("2026-01-01T00:00:00Z")) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const access = (file: string, options: AccessOptions = {}) => clusterAccess(file, undefined, options);

describe("exec credential plugins", () => {
  test("a relative command runs from the kubeconfig's directory with its args, env and KUBERNETES_EXEC_INFO (the cluster only with provideClusterInfo)", async () => {
    for (const provideClusterInfo of [true, false]) {
      const { dir, file } = kubeconfigWith(
        {
          exec: {
            apiVersion: v1,
            command: "./bin/get-token",
            args: ["--cluster", "prod east"],
            env: [{ name: "PLUGIN_REGION", value: "eu-west-1" }],
            interactiveMode: "Never",
            provideClusterInfo,
          },
        },
        { "tls-server-name": "api.internal", extensions: [{ name: "client.authentication.k8s.io/exec", extension: { audience: "smtp" } }] },
      );
      plugin(dir, "get-token", printing(credentialJson({ token: "plugin-token" })));
      // From another working directory: the path is the kubeconfig's, not ours.
      const credentials = await access(file).credentials();
      assert.equal(credentials.token, "plugin-token");
      assert.deepEqual(readFileSync(join(dir, "args"), "utf8").split("\n").filter(Boolean), ["--cluster", "prod east"]);
      const env = readFileSync(join(dir, "env"), "utf8");
      assert.match(env, /^PLUGIN_REGION=eu-west-1$/m);
      const info = JSON.parse(/^KUBERNETES_EXEC_INFO=(.*)$/m.exec(env)![1]!) as {
        apiVersion: string;
        kind: string;
        spec: { interactive: boolean; cluster?: Record<string, unknown> };
      };
      assert.equal(info.apiVersion, v1);
      assert.equal(info.kind, "ExecCredential");
      assert.equal(info.spec.interactive, false);
      if (provideClusterInfo) {
        assert.deepEqual(info.spec.cluster, {
          server: "https://127.0.0.1:1/base",
          "tls-server-name": "api.internal",
          "certificate-authority-data": Buffer.from("not a CA").toString("base64"),
          config: { audience: "smtp" },
        });
      } else assert.equal(info.spec.cluster, undefined);
    }
  });

  test("a bare command is looked up on PATH (the plugin's env PATH too); v1beta1 defaults to IfAvailable and is run without a terminal", async () => {
    const { dir, file } = kubeconfigWith((dir) => ({
      exec: {
        apiVersion: "client.authentication.k8s.io/v1beta1",
        command: "aws-like",
        env: [{ name: "PATH", value: `${join(dir, "bin")}:/usr/bin:/bin` }],
      },
    }));
    plugin(
      dir,
      "aws-like",
      `[ -t 0 ] && exit 9\n${printing(credentialJson({ token: "beta-token" }, "client.authentication.k8s.io/v1beta1"))}`,
    );
    assert.equal((await access(file).credentials()).token, "beta-token");
  });

  test("the credential is kept until its expirationTimestamp, then the plugin runs again; concurrent requests share one run", async () => {
    const { dir, file } = kubeconfigWith({ exec: { apiVersion: v1, command: "./bin/p", interactiveMode: "IfAvailable" } });
    plugin(dir, "p", printing(credentialJson({ token: "t", expirationTimestamp: "2026-01-01T00:10:00Z" })));
    const time = clock();
    const cluster = access(file, { now: time.now });
    const [first] = await Promise.all([cluster.credentials(), cluster.credentials(), cluster.credentials()]);
    assert.equal(runs(dir), 1, "three requests at once, one run");
    time.advance(9 * 60_000);
    assert.equal((await cluster.credentials()).credential, first.credential);
    assert.equal(runs(dir), 1, "not expired yet");
    time.advance(60_000);
    await cluster.credentials();
    assert.equal(runs(dir), 2, "expired: run again");
  });

  test("a credential without expirationTimestamp is kept until the server refuses it (401): then the plugin runs once more", async () => {
    const { dir, file } = kubeconfigWith({ exec: { apiVersion: v1, command: "./bin/p", interactiveMode: "Never" } });
    plugin(
      dir,
      "p",
      `n=$(wc -l < "${dir}/runs")\n${printing(credentialJson({ token: "token-RUN" }))
        .replace("RUN", "$n")
        .replace("<<'EOF'", "<<EOF")}`,
    );
    const cluster = access(file);
    const first = await cluster.credentials();
    assert.equal(first.token, "token-1");
    assert.equal((await cluster.credentials()).token, "token-1");
    assert.equal(cluster.unauthorized(first), true, "worth a retry");
    // Two requests that both got the 401 drop the credential once, not twice.
    cluster.unauthorized(first);
    assert.equal((await cluster.credentials()).token, "token-2");
    assert.equal(runs(dir), 2);
  });

  test("a client certificate from the plugin goes on the TLS agent, a new certificate on a new agent", async () => {
    const pair = certificatePair();
    const { dir, file } = kubeconfigWith({ exec: { apiVersion: v1, command: "./bin/p", interactiveMode: "Never" } });
    plugin(dir, "p", printing(credentialJson({ clientCertificateData: pair.cert, clientKeyData: pair.key })));
    const cluster = access(file);
    const first = await cluster.credentials();
    assert.equal(first.token, undefined);
    assert.equal(first.agent.options.cert, pair.cert);
    assert.equal(first.agent.options.key, pair.key);
    assert.equal((await cluster.credentials()).agent, first.agent, "one agent while the certificate stays");
    const next = certificatePair();
    plugin(dir, "p", printing(credentialJson({ clientCertificateData: next.cert, clientKeyData: next.key })));
    cluster.unauthorized(first);
    const second = await cluster.credentials();
    assert.notEqual(second.agent, first.agent);
    assert.equal(second.agent.options.cert, next.cert);
  });

  test("credentials written in the file win over the plugin, as in client-go", async () => {
    const { dir, file } = kubeconfigWith({ token: "static", exec: { apiVersion: v1, command: "./bin/p", interactiveMode: "Never" } });
    plugin(dir, "p", "exit 1");
    assert.equal((await access(file).credentials()).token, "static");
  });

  test("refused when loaded: interactiveMode Always, v1 without interactiveMode, v1alpha1, no command, exec with auth-provider; basic auth, a socks5 proxy-url", () => {
    const load =
      (exec: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      () =>
        access(kubeconfigWith({ exec, ...extra }).file);
    assert.throws(
      load({ apiVersion: v1, command: "kubelogin", interactiveMode: "Always" }),
      /user u: exec: interactiveMode Always: kubelogin needs a terminal, and the operator never has one/,
    );
    assert.throws(
      load({ apiVersion: v1, command: "kubelogin" }),
      /interactiveMode is required with client\.authentication\.k8s\.io\/v1 \(Never or IfAvailable\)/,
    );
    assert.throws(load({ apiVersion: "client.authentication.k8s.io/v1alpha1", command: "x" }), /v1alpha1 was removed in Kubernetes 1\.24/);
    assert.throws(load({ apiVersion: v1, interactiveMode: "Never" }), /exec: command is required/);
    assert.throws(
      load({ apiVersion: v1, command: "x", interactiveMode: "Never", env: [{ name: "A" }] }),
      /env must be a list of \{name, value\} strings/,
    );
    assert.throws(
      load({ apiVersion: v1, command: "x", interactiveMode: "Never" }, { "auth-provider": { name: "oidc" } }),
      /has both exec and auth-provider/,
    );
    assert.throws(
      () => access(kubeconfigWith({ username: "admin", password: "pw" }).file),
      /user u: basic auth \(username\/password\) was removed from the API server in Kubernetes 1\.19/,
    );
    assert.throws(
      () => access(kubeconfigWith({ token: "t" }, { "proxy-url": "socks5://proxy:1080" }).file),
      /cluster k: proxy-url: SOCKS proxies \(socks5:\/\/\) are not supported by the operator, only http:\/\/ and https:\/\/ proxies/,
    );
  });

  const hint = "Install it: https://example.com/get-token";
  const failing = async (body: string, options: AccessOptions = {}, command = "./bin/p") => {
    const { dir, file } = kubeconfigWith({ exec: { apiVersion: v1, command, interactiveMode: "Never", installHint: hint } });
    plugin(dir, "p", body);
    return access(file, options).credentials();
  };

  test("a plugin that fails, is missing, hangs or prints a bad ExecCredential is an error naming it and its installHint", async () => {
    await assert.rejects(
      failing("echo 'denied' >&2; exit 3"),
      (e: Error) => e.message === `exec plugin ./bin/p: exited with code 3 (its standard error is in the log)\n${hint}`,
    );
    await assert.rejects(
      failing("", {}, "no-such-plugin-anywhere"),
      (e: Error) => e.message === `exec plugin no-such-plugin-anywhere: not found (looked up on PATH)\n${hint}`,
    );
    await assert.rejects(failing("", {}, "./bin/missing"), /exec plugin \.\/bin\/missing: not found \(\/.*\/bin\/missing\)\nInstall it/);
    await assert.rejects(
      failing("exec sleep 30", { execTimeoutMs: 300 }),
      /exec plugin \.\/bin\/p: gave no credential within 0.3 s and was stopped\nInstall it/,
    );
    await assert.rejects(
      failing("echo eyJsecret-bare-token"),
      (e: Error) =>
        /^exec plugin \.\/bin\/p: its output \(\d+ bytes\) is not JSON; an ExecCredential object is expected\nInstall it/.test(e.message) &&
        !e.message.includes("eyJ"),
    );
    const bad: [Record<string, unknown>, RegExp][] = [
      [
        { apiVersion: "client.authentication.k8s.io/v1beta1", kind: "ExecCredential", status: { token: "t" } },
        /has apiVersion "client.authentication.k8s.io\/v1beta1", but the kubeconfig asks for client.authentication.k8s.io\/v1/,
      ],
      [{ apiVersion: v1, kind: "Secret", status: { token: "t" } }, /has kind "Secret", not ExecCredential/],
      [{ apiVersion: v1, kind: "ExecCredential" }, /has no status/],
      [{ apiVersion: v1, kind: "ExecCredential", status: {} }, /has neither a token nor clientCertificateData and clientKeyData/],
      [{ apiVersion: v1, kind: "ExecCredential", status: { token: 5 } }, /status.token is not a string/],
      [
        { apiVersion: v1, kind: "ExecCredential", status: { clientCertificateData: certificatePair().cert } },
        /has only one of clientCertificateData and clientKeyData/,
      ],
      [
        { apiVersion: v1, kind: "ExecCredential", status: { clientCertificateData: "x", clientKeyData: "y" } },
        /status.clientCertificateData is not a PEM certificate/,
      ],
      [
        {
          apiVersion: v1,
          kind: "ExecCredential",
          status: { clientCertificateData: certificatePair().cert, clientKeyData: certificatePair().key },
        },
        /status.clientKeyData is not the key of status.clientCertificateData/,
      ],
      [
        { apiVersion: v1, kind: "ExecCredential", status: { token: "t", expirationTimestamp: "tomorrow" } },
        /status.expirationTimestamp "tomorrow" is not an RFC 3339 time/,
      ],
    ];
    for (const [output, message] of bad) {
      await assert.rejects(
        failing(printing(JSON.stringify(output))),
        (e: Error) =>
          message.test(e.message) && e.message.startsWith("exec plugin ./bin/p: its ExecCredential ") && e.message.endsWith(hint),
        `${JSON.stringify(output)}`,
      );
    }
  });

  test("the plugin's standard error reaches the log with its credential and anything credential-shaped blanked", async () => {
    const { log, lines } = capturedLog();
    const { dir, file } = kubeconfigWith({ exec: { apiVersion: v1, command: "./bin/p", interactiveMode: "Never" } });
    const token = "k8s-aws-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_QWN0aW9u";
    plugin(
      dir,
      "p",
      `echo "refreshing session for role admin; AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH" >&2\necho "got ${token}" >&2\n${printing(credentialJson({ token }))}`,
    );
    assert.equal((await access(file, { log }).credentials()).token, token);
    const logged = lines();
    assert.match(logged, /"message":"exec plugin wrote to standard error"/);
    assert.match(logged, /refreshing session for role admin; \[redacted\]/);
    assert.ok(!logged.includes(token) && !logged.includes("IQoJb3JpZ2lu"), logged);
  });

  test("redact blanks PEM blocks, JWTs and long token-like words, and keeps prose", () => {
    const pair = certificatePair();
    assert.equal(redact(`key:\n${pair.key.trim()}\ndone`), "key:\n[redacted PEM]\ndone");
    assert.equal(redact("id_token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl ok"), "id_token=[redacted JWT] ok");
    assert.equal(
      redact("error: the server has asked for the client to provide credentials"),
      "error: the server has asked for the client to provide credentials",
    );
    assert.equal(redact("secret abc", ["abc"]), "secret [redacted]");
  });
});

describe("auth-provider", () => {
  const jwt = (claims: Record<string, unknown>) => `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.c2ln`;

  test("oidc: the id-token is the bearer token until it expires; then a clear error (the refresh-token is not used)", async () => {
    const exp = Date.parse("2026-01-01T01:00:00Z") / 1000;
    const idToken = jwt({ iss: "https://idp.example", exp });
    const time = clock();
    const cluster = access(
      kubeconfigWith({
        "auth-provider": {
          name: "oidc",
          config: { "client-id": "k", "id-token": idToken, "refresh-token": "r", "idp-issuer-url": "https://idp.example" },
        },
      }).file,
      { now: time.now },
    );
    const first = await cluster.credentials();
    assert.equal(first.token, idToken);
    assert.equal(cluster.unauthorized(first), false, "a fixed token is not worth a retry");
    time.advance(60 * 60_000);
    await assert.rejects(
      cluster.credentials(),
      /user u: auth-provider oidc id-token expired at 2026-01-01T01:00:00.000Z, and the operator does not refresh it; log in again .*kubelogin/,
    );
  });

  test("oidc without an id-token, or with one that is not a JWT, is refused when loaded", () => {
    assert.throws(
      () => access(kubeconfigWith({ "auth-provider": { name: "oidc", config: { "refresh-token": "r" } } }).file),
      /auth-provider oidc has no id-token; log in again/,
    );
    assert.throws(
      () => access(kubeconfigWith({ "auth-provider": { name: "oidc", config: { "id-token": "opaque" } } }).file),
      /auth-provider oidc id-token is not a JWT/,
    );
  });

  test("gcp and azure were removed in Kubernetes 1.26: refused, pointing at the exec plugin that replaced each; others refused", () => {
    const load = (name: string) => () => access(kubeconfigWith({ "auth-provider": { name, config: {} } }).file);
    assert.throws(load("gcp"), /auth-provider gcp was removed from Kubernetes in 1\.26: use the exec plugin gke-gcloud-auth-plugin/);
    assert.throws(load("azure"), /auth-provider azure was removed from Kubernetes in 1\.26: use the exec plugin kubelogin/);
    assert.throws(load("keystone"), /auth-provider keystone is not supported \(only oidc is\); use an exec plugin/);
  });
});

/** A fresh self-signed certificate and its key, from OpenSSL. */
function certificatePair(): { cert: string; key: string } {
  const dir = tempDir("exec-cert");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      "/CN=exec-plugin",
      "-days",
      "1",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
    ],
    { stdio: "ignore" },
  );
  return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") };
}
