// `kubectl smtpconnector`, found by kubectl on PATH as a plugin, against the
// real control plane and operator: status tells the story; rotate, revoke and
// verify make exactly the edits a GitOps user would; credentials warns; -A lists
// every namespace as kubectl does.
import assert from "node:assert/strict";
import { execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type * as k8s from "@kubernetes/client-node";
import { e2eClients, startOperatorCommand, inboundOnlyAddress } from "../support/e2e.js";
import { applyManifests, connect, eventually, freshNamespace, readSmtpDomain, readSupportAddress } from "../support/kube.js";
import { smtpDomainManifest } from "../support/manifests.js";
import { stopChild, tlsSecretManifest } from "../support/mail.js";

const execFileAsync = promisify(execFile);
/** The domain the plugin is shown: its relay certificate from the Secret relay-tls (tlsSecretManifest), not the operator's CA. */
const pluginDomain = { delivery: { host: "127.0.0.1", port: 2525 }, relay: { tls: { secretName: "relay-tls" } } };

describe("kubectl smtpconnector", () => {
  let operator: ChildProcess;
  let core: k8s.CoreV1Api;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    ({ core, custom } = await e2eClients());
    operator = await startOperatorCommand();
  });
  after(() => stopChild(operator));

  /**
   * kubectl itself (the symlink, so it acts as kubectl and looks plugins up on PATH), with bin/ on PATH;
   * or, given `installed`, with only that directory, Node and kubectl on PATH and run from there.
   */
  async function plugin(args: string[], installed?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const { kubeconfigPath, binary } = await connect();
    const kubectl = resolve(dirname(binary), "kubectl");
    const env = installed
      ? { PATH: [installed, dirname(process.execPath), dirname(binary)].join(":"), KUBECONFIG: kubeconfigPath, HOME: installed }
      : { ...process.env, PATH: `${resolve("bin")}:${dirname(binary)}:${process.env.PATH ?? ""}`, KUBECONFIG: kubeconfigPath };
    try {
      const { stdout, stderr } = await execFileAsync(kubectl, ["smtpconnector", ...args], {
        env,
        ...(installed ? { cwd: installed } : {}),
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  test("status, rotate, revoke, verify and credentials, as a platform engineer uses them", async (t) => {
    const namespace = await freshNamespace(t, "plugin");
    const domainOf = async () => readSmtpDomain(custom, namespace);
    await applyManifests(await tlsSecretManifest(namespace), smtpDomainManifest(namespace, pluginDomain), ...inboundOnlyAddress(namespace));
    await eventually("version 1 issued", async () => ((await domainOf()).status?.activeVersions === "1" ? true : undefined));

    const shown = await plugin(["status", "-n", namespace]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /SmtpDomain example-com \(example\.com\): Ready=False/);
    assert.match(shown.stdout, /CertificateReady\s+True\s+Valid/);
    assert.match(shown.stdout, /v1 {2}Active {2}Secret example-com-inbound-v1 {2}never used/);
    assert.match(shown.stdout, /support@example\.com {2}Inbound=\S+ Outbound=\S+ Ready=False/);

    // Rotate: the same edit as adding {version: 2} to spec.inbound.credentials.
    const rotated = await plugin(["rotate", "example-com", "-n", namespace]);
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /credential version 2 requested beside 1/);
    const declared = async () => (await domainOf()).spec.inbound.credentials?.map((c) => `${c.version}:${c.state ?? "Active"}`);
    assert.deepEqual(await declared(), ["1:Active", "2:Active"]);
    await eventually("version 2 issued", async () => ((await domainOf()).status?.activeVersions === "1,2" ? true : undefined));
    const again = await plugin(["rotate", "example-com", "-n", namespace]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already has two active versions \(1, 2\): revoke the older one first/);

    // Credentials: printed with a warning on stderr, never without.
    const printed = await plugin(["credentials", "example-com", "--version", "2", "-n", namespace]);
    assert.equal(printed.code, 0, printed.stderr);
    const secret = await core.readNamespacedSecret({ namespace, name: "example-com-inbound-v2" });
    assert.ok(printed.stdout.includes(`password: ${Buffer.from(secret.data!.password!, "base64").toString()}`));
    assert.match(printed.stdout, /--- postfix-main\.cf/);
    assert.match(printed.stderr, /^WARNING: this prints the password of inbound credential version 2/);

    // Revoke: version 1 revoked; revoking the last active one needs --force.
    const revoked = await plugin(["revoke", "example-com", "--version", "1", "-n", namespace]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.deepEqual(await declared(), ["1:Revoked", "2:Active"]);
    const last = await plugin(["revoke", "example-com", "--version", "2", "-n", namespace]);
    assert.equal(last.code, 1);
    assert.match(last.stderr, /leaves example-com with no active credential.*--force/);
    assert.deepEqual(await declared(), ["1:Revoked", "2:Active"], "nothing changed");

    // Verify: the annotation a GitOps user would set.
    const verified = await plugin(["verify", "--all", "-n", namespace]);
    assert.equal(verified.code, 0, verified.stderr);
    const address = await readSupportAddress(custom, namespace);
    assert.match(address.metadata.annotations?.["smtpconnector.dev/verify-requested-at"] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    // Mistakes get a message and the usage.
    const unknown = await plugin(["explode"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command explode[\s\S]*rotate DOMAIN/);
    const missing = await plugin(["verify", "nobody@example.com", "-n", namespace]);
    assert.match(missing.stderr, /no SupportAddress named or addressed nobody@example\.com/);
  });

  test("status -A: every namespace, each line led by its own; a name, or a command that changes things, refused", async (t) => {
    const teamA = await freshNamespace(t, "plugin-a");
    const teamB = await freshNamespace(t, "plugin-b");
    // One name (example-com) in both namespaces: an address must show under its own namespace's domain only.
    const domain = (namespace: string, dnsName: string) => smtpDomainManifest(namespace, { ...pluginDomain, domain: dnsName });
    await applyManifests(
      domain(teamA, "example.com"),
      ...inboundOnlyAddress(teamA),
      domain(teamB, "example.org"),
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "help-smtp", namespace: teamB },
        stringData: { username: "help@example.org", password: "x" },
      },
      {
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SupportAddress",
        metadata: { name: "help", namespace: teamB },
        spec: {
          address: "help@example.org",
          domainRef: { name: "example-com" },
          outbound: { host: "smtp.example.org", credentialsSecretRef: { name: "help-smtp" } },
        },
      },
    );

    // kubectl ignores -n under -A; so does the plugin.
    for (const args of [
      ["status", "-A"],
      ["status", "--all-namespaces", "-n", teamA],
    ]) {
      const shown = await plugin(args);
      assert.equal(shown.code, 0, shown.stderr);
      const [header, ...lines] = shown.stdout.trimEnd().split("\n");
      assert.match(header!, /^NAMESPACE {3,}STATUS$/, args.join(" "));
      const width = header!.indexOf("STATUS");
      for (const line of lines) assert.match(line.slice(0, width), /^[a-z0-9-]+ +$/, `every line starts in the NAMESPACE column: ${line}`);
      const of = (namespace: string) =>
        lines
          .filter((l) => l.slice(0, width).trimEnd() === namespace)
          .map((l) => l.slice(width))
          .join("\n");
      assert.match(of(teamA), /^SmtpDomain example-com \(example\.com\): Ready=/m);
      assert.match(of(teamA), /^ {4}support@example\.com {2}Inbound=\S+ Outbound=\S+ Ready=/m);
      assert.doesNotMatch(of(teamA), /example\.org/, `${teamB}'s address is not listed under ${teamA}'s example-com`);
      assert.match(of(teamB), /^SmtpDomain example-com \(example\.org\): Ready=/m);
      assert.match(of(teamB), /^ {4}help@example\.org {2}Inbound=/m);
      assert.doesNotMatch(of(teamB), /support@example\.com/);
    }

    for (const args of [
      ["status", "example-com", "-A"],
      ["rotate", "example-com", "-A"],
    ]) {
      const named = await plugin(args);
      assert.equal(named.code, 2, args.join(" "));
      assert.match(named.stderr, /a resource cannot be retrieved by name across all namespaces/);
    }
    const everywhere = await plugin(["verify", "--all", "-A"]);
    assert.equal(everywhere.code, 2);
    assert.match(everywhere.stderr, /only status takes it; verify works in one namespace \(-n\)/);
    const address = await readSupportAddress(custom, teamA);
    assert.equal(address.metadata.annotations?.["smtpconnector.dev/verify-requested-at"], undefined, "nothing was asked to verify");
  });

  test("the release's one file, alone in a directory with Node and kubectl, is the plugin", async (t) => {
    const namespace = await freshNamespace(t, "plugin-file");
    await applyManifests(smtpDomainManifest(namespace, pluginDomain));
    const dir = mkdtempSync(join(tmpdir(), "smtpc-plugin-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // What hack/release.sh ships; it refuses a plugin that imports more than Node's built-ins.
    await execFileAsync("bash", ["hack/plugin-file.sh", join(dir, "kubectl-smtpconnector"), "0.0.0-test"]);
    assert.deepEqual(readdirSync(dir), ["kubectl-smtpconnector"]);
    assert.equal(readFileSync(join(dir, "kubectl-smtpconnector"), "utf8").split("\n")[1], "// kubectl-smtpconnector 0.0.0-test");

    const everywhere = await plugin(["status", "-A"], dir);
    assert.equal(everywhere.code, 0, everywhere.stderr);
    assert.match(everywhere.stdout, new RegExp(`^${namespace} +SmtpDomain example-com \\(example\\.com\\): Ready=`, "m"));
    // Put beside a package.json of either type, the file still runs: it has no module syntax to
    // misread (with an import, "commonjs" made Node 24.22 exit 0 having printed nothing).
    for (const type of [undefined, "commonjs", "module"]) {
      if (type) writeFileSync(join(dir, "package.json"), JSON.stringify({ type }));
      const shown = await plugin(["status", "-n", namespace], dir);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, /^SmtpDomain example-com \(example\.com\): Ready=/m, `beside package.json type ${type ?? "(none)"}`);
    }
  });
});
