// The relay process's probes, as the kubelet reads them: readiness says the
// pod can serve what its config says (every listener bound, the certificate
// loaded, not draining); liveness only that the process answers. Neither
// depends on the next hop; a refused reload leaves the relay serving (and
// ready with) the config in force, whatever was wrong with the new one.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, test } from "node:test";
import type { RelayConfig } from "../../relay/contract/config.js";
import { eventuallyTrue } from "../support/wait.js";
import {
  randomPassword,
  relayConfig,
  selfSignedCertificate,
  startSmtpSink,
  stopChild,
  swaksAuth,
  tempDir,
  writeRelayConfig,
  type SmtpSink,
} from "../support/mail.js";
import { exampleDomain, RawSmtp } from "../support/relay.js";

const password = randomPassword();
const user = "example.com-v1";

describe("the relay's readiness and liveness", () => {
  let dir: string;
  let sink: SmtpSink;
  let config: RelayConfig;
  let file: string;
  let child: ChildProcess;
  let logs = "";
  let tls: { certFile: string; keyFile: string };
  const health = () => `http://127.0.0.1:${config.listeners.health.port}`;
  const probe = async (path: "/readyz" | "/healthz") => {
    const response = await fetch(`${health()}${path}`);
    return { status: response.status, body: await response.text() };
  };
  const send = (subject: string) => swaksAuth(config.listeners.starttls!.port, { user, password }, ["--header", `Subject: ${subject}`]);
  /** The certificate the implicit-TLS listener presents now. */
  const presented = () =>
    new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: "127.0.0.1", port: config.listeners.implicitTls!.port, rejectUnauthorized: false }, () => {
        resolve(socket.getPeerX509Certificate()!.fingerprint256);
        socket.destroy();
      });
      socket.once("error", reject);
    });
  const reloads = async (result: string) =>
    Number(
      new RegExp(`smtpc_relay_config_reloads_total\\{result="${result}"\\} (\\d+)`).exec(
        await (await fetch(`${health()}/metrics`)).text(),
      )?.[1] ?? 0,
    );

  before(async () => {
    dir = tempDir("relay-probes");
    sink = await startSmtpSink();
    tls = await selfSignedCertificate(dir);
    config = await relayConfig({ dir, tls, sinkPort: sink.port, domains: [exampleDomain(password)] });
    file = join(dir, "relay.yaml");
    writeRelayConfig(file, config);
    child = spawn(process.execPath, ["--import", "tsx", "relay/main.ts", "--config", file], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (c: Buffer) => (logs += c.toString()));
    await eventuallyTrue(
      "the relay to be ready",
      async () => (await fetch(`${health()}/readyz`).catch(() => undefined))?.status === 200,
      20_000,
    );
  });
  after(async () => {
    await stopChild(child);
    await sink.stop();
  });

  test("ready once its listeners are bound, saying when its config was loaded; alive", async () => {
    const ready = await probe("/readyz");
    assert.equal(ready.status, 200);
    assert.match(ready.body, /^ready\nconfig loaded at \d{4}-\d\d-\d\dT[\d:.]+Z\n$/);
    assert.equal((await probe("/healthz")).status, 200);
  });

  test("the next hop down: mail is deferred (451), and the relay stays ready and alive", async () => {
    await sink.stop();
    const deferred = await send("while the next hop is down");
    assert.notEqual(deferred.code, 0);
    assert.match(deferred.output, /\b4\d\d 4\.\d\.\d+ /, deferred.output);
    assert.equal((await probe("/readyz")).status, 200, "readiness does not depend on the next hop");
    assert.equal((await probe("/healthz")).status, 200, "liveness does not depend on the next hop");
    sink = await startSmtpSink();
    config.domains[0]!.delivery.smtp!.port = sink.port;
    writeRelayConfig(file, config);
    await eventuallyTrue("delivery through the new next hop", async () => (await send("next hop back")).code === 0, 20_000);
  });

  test("a config reload refused (invalid file, then a certificate that does not match its key): still serving, still ready, saying so; a good reload clears it", async () => {
    const before = await presented();
    const refused = await reloads("Invalid");
    writeFileSync(file, "version: smtpconnector.dev/relay-config/v1\nhostname: [\n");
    await eventuallyTrue("the invalid file refused", async () => (await reloads("Invalid")) > refused, 20_000);
    let ready = await probe("/readyz");
    assert.equal(ready.status, 200, ready.body);
    assert.match(ready.body, /a config reload was refused at \S+ \(the log says why\); serving the config loaded before it/);
    assert.equal((await send("after an invalid reload")).code, 0);

    // The config back, then a certificate file replaced by another certificate whose key is not the one beside it.
    writeRelayConfig(file, config);
    await eventuallyTrue("the good config applied", async () => !(await probe("/readyz")).body.includes("refused"), 20_000);
    const other = await selfSignedCertificate(tempDir("relay-probes-other"), "other.test");
    const beforeCert = await reloads("Invalid");
    copyFileSync(other.certFile, tls.certFile);
    await eventuallyTrue("the mismatched certificate refused", async () => (await reloads("Invalid")) > beforeCert, 20_000);
    assert.equal(child.exitCode, null, `the relay exited: ${logs.split("\n").slice(-5).join("\n")}`);
    ready = await probe("/readyz");
    assert.equal(ready.status, 200, ready.body);
    assert.match(ready.body, /a config reload was refused/);
    assert.equal(await presented(), before, "the listeners keep the certificate in force");
    assert.equal((await send("after a mismatched certificate")).code, 0);
    assert.match(logs, /config reload refused, keeping the current config/);
  });

  test("SIGTERM: not ready while open sessions finish, alive all the while; exit 0", async () => {
    const open = await RawSmtp.connect(config.listeners.starttls!.port);
    await open.reply();
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    await eventuallyTrue("not ready while draining", async () => (await probe("/readyz")).status === 503, 10_000);
    const draining = await probe("/readyz");
    assert.match(draining.body, /^not ready\ndraining: shutting down\n/);
    assert.equal((await probe("/healthz")).status, 200);
    open.close();
    assert.equal(await exited, 0);
  });
});
