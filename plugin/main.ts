// `kubectl smtpconnector`: a thin plugin over kubectl. Every change it makes is
// one a GitOps user would make by editing the resource (spec.inbound.credentials,
// the verify-requested-at annotation), written as a JSON patch that tests the
// resourceVersion it read, so a concurrent edit is never overwritten.
import type { SmtpDomain, SupportAddress } from "../crds/schema.js";

// Built-ins through process.getBuiltinModule, not import statements: the released file
// (hack/plugin-file.sh) then has no module syntax and runs wherever it is put. With an import,
// an extensionless file under a package.json saying "type": "commonjs" exits 0 having done
// nothing on Node 24.22 (nodejs/node#61104; later Nodes stop there with a SyntaxError).
const { execFileSync } = process.getBuiltinModule("node:child_process");
const { parseArgs } = process.getBuiltinModule("node:util");

const usage = `kubectl smtpconnector: see and change smtp-connector resources

  status [DOMAIN] [-A]            domains and their addresses: conditions, credential versions, certificate, DKIM
                                  (-A/--all-namespaces: every namespace, each line led by its namespace)
  rotate DOMAIN                   issue the next inbound credential version beside the current one
  revoke DOMAIN --version N       revoke a version (refused on the next AUTH); --force if none would stay Active
  verify ADDRESS... | --all       verify support addresses again now (annotation smtpconnector.dev/verify-requested-at)
  credentials DOMAIN [--version N]  print a version's username, password and client snippets (a secret!)

Flags: -n/--namespace, --context, --kubeconfig (passed to kubectl), -h/--help.
As with kubectl, -A ignores -n and takes no name.`;

class UsageError extends Error {}

function main(argv: string[]): void {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      namespace: { type: "string", short: "n" },
      "all-namespaces": { type: "boolean", short: "A", default: false },
      context: { type: "string" },
      kubeconfig: { type: "string" },
      version: { type: "string" },
      all: { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const [command, ...names] = positionals;
  if (values.help || !command) {
    console.log(usage);
    return;
  }
  const allNamespaces = values["all-namespaces"];
  if (allNamespaces) {
    // kubectl's own words for `kubectl get KIND NAME -A`.
    if (names.length > 0) throw new UsageError("a resource cannot be retrieved by name across all namespaces");
    // Every other command changes or prints one namespace's resources: one mistyped flag must not reach them all.
    if (command !== "status")
      throw new UsageError(`-A/--all-namespaces lists, so only status takes it; ${command} works in one namespace (-n)`);
  }
  const kube = new Kubectl([
    ...(values.kubeconfig ? ["--kubeconfig", values.kubeconfig] : []),
    ...(values.context ? ["--context", values.context] : []),
    // kubectl ignores --namespace under --all-namespaces; so does the plugin.
    ...(values.namespace && !allNamespaces ? ["--namespace", values.namespace] : []),
  ]);
  const version = values.version === undefined ? undefined : Number(values.version);
  if (version !== undefined && !(Number.isInteger(version) && version >= 1))
    throw new UsageError(`--version must be a positive integer, got ${values.version}`);
  switch (command) {
    case "status":
      return status(kube, names[0], allNamespaces);
    case "rotate":
      return rotate(kube, one(names, "rotate DOMAIN"));
    case "revoke":
      if (version === undefined) throw new UsageError("revoke DOMAIN --version N: which version?");
      return revoke(kube, one(names, "revoke DOMAIN --version N"), version, values.force);
    case "verify":
      if (!values.all && names.length === 0) throw new UsageError("verify ADDRESS... or verify --all");
      return verify(kube, values.all ? [] : names);
    case "credentials":
      return credentials(kube, one(names, "credentials DOMAIN"), version);
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

const one = (names: string[], form: string) => {
  if (names.length !== 1) throw new UsageError(`usage: kubectl smtpconnector ${form}`);
  return names[0]!;
};

class Kubectl {
  constructor(private readonly flags: string[]) {}

  run(args: string[], input?: string): string {
    try {
      return execFileSync(process.env.KUBECTL ?? "kubectl", [...this.flags, ...args], {
        encoding: "utf8",
        stdio: ["pipe", "pipe", "pipe"],
        ...(input ? { input } : {}),
      });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? "";
      throw new Error(stderr.trim().replace(/^error: /, "") || (error as Error).message);
    }
  }

  get<T>(resource: string, name?: string): T {
    return JSON.parse(this.run(["get", resource, ...(name ? [name] : []), "-o", "json"])) as T;
  }

  list<T>(resource: string, allNamespaces: boolean): T[] {
    return (JSON.parse(this.run(["get", resource, ...(allNamespaces ? ["--all-namespaces"] : []), "-o", "json"])) as { items: T[] }).items;
  }

  /** A JSON patch that applies only to the version read (resourceVersion test). */
  patch(resource: string, name: string, resourceVersion: string, operations: object[]): void {
    const patch = [{ op: "test", path: "/metadata/resourceVersion", value: resourceVersion }, ...operations];
    this.run(["patch", resource, name, "--type=json", "-p", JSON.stringify(patch)]);
  }
}

const conditionOf = (o: SmtpDomain | SupportAddress, type: string) => o.status?.conditions?.find((c) => c.type === type);

function status(kube: Kubectl, only: string | undefined, allNamespaces: boolean): void {
  const domains = only ? [kube.get<SmtpDomain>("smtpdomain", only)] : kube.list<SmtpDomain>("smtpdomains", allNamespaces);
  const addresses = kube.list<SupportAddress>("supportaddresses", allNamespaces);
  if (domains.length === 0) console.log(allNamespaces ? "No SmtpDomains in any namespace." : "No SmtpDomains in this namespace.");
  // Under -A every line, not only a domain's first, starts with the namespace, as kubectl's
  // NAMESPACE column does: `| grep team-a` then keeps a domain's whole story.
  const width = Math.max("NAMESPACE".length, ...domains.map((d) => (d.metadata.namespace ?? "").length)) + 3;
  if (allNamespaces && domains.length > 0) console.log(`${"NAMESPACE".padEnd(width)}STATUS`);
  for (const domain of domains) {
    const say = (line: string) => console.log(allNamespaces ? `${(domain.metadata.namespace ?? "").padEnd(width)}${line}` : line);
    const ready = conditionOf(domain, "Ready");
    say(
      `SmtpDomain ${domain.metadata.name} (${domain.spec.domain}): Ready=${ready?.status ?? "Unknown"}${ready && ready.status !== "True" ? ` ${ready.reason}: ${ready.message}` : ""}`,
    );
    for (const c of domain.status?.conditions ?? []) {
      if (c.type === "Ready" || c.type === "Reconciling" || c.type === "Stalled") continue;
      say(
        `  ${c.type.padEnd(20)} ${c.status.padEnd(6)} ${c.reason}${c.status !== "True" || c.reason === "ExpiringSoon" ? `: ${c.message}` : ""}`,
      );
    }
    if (domain.status?.relay?.endpoint) say(`  endpoint             ${domain.status.relay.endpoint}`);
    if (domain.status?.tls)
      say(
        `  certificate          ${domain.status.tls.issuedByOperator ? "operator-issued" : `from Secret ${domain.status.tls.secretName}`}, expires ${domain.status.tls.notAfter ?? "?"}`,
      );
    const nextCa = domain.status?.tls?.nextCA;
    if (nextCa)
      say(
        `  new CA               signs from ${nextCa.signsFrom} (SHA-256 ${nextCa.fingerprint}): customers with a copy of ca.crt must install the new one (both CAs) before then`,
      );
    if (domain.status?.dkim?.pending)
      say(`  DKIM pending         ${domain.status.dkim.pending} (publish the records in status.dkim.records)`);
    say("  credentials:");
    for (const c of domain.status?.credentials ?? []) {
      const parts = [
        `v${c.version}`,
        c.state,
        `Secret ${c.secretName}`,
        c.lastUsedAt ? `last used ${c.lastUsedAt}` : "never used",
        ...(c.expiresAt ? [`expires ${c.expiresAt}`] : []),
      ];
      say(`    ${parts.join("  ")}`);
    }
    // domainRef names a domain of the address's own namespace; under -A two namespaces may both have an example-com.
    const mine = addresses.filter(
      (a) => a.metadata.namespace === domain.metadata.namespace && a.spec.domainRef.name === domain.metadata.name,
    );
    say(mine.length > 0 ? "  addresses:" : "  addresses: none");
    for (const address of mine) {
      const states = ["InboundVerified", "OutboundVerified", "Ready"].map(
        (t) => `${t.replace("Verified", "")}=${conditionOf(address, t)?.status ?? "Unknown"}`,
      );
      say(`    ${address.spec.address}  ${states.join(" ")}`);
      for (const c of address.status?.conditions ?? []) {
        if (c.status === "False" && c.type !== "Ready" && c.type !== "Stalled") say(`      ${c.type} ${c.reason}: ${c.message}`);
      }
    }
  }
}

function rotate(kube: Kubectl, name: string): void {
  const domain = kube.get<SmtpDomain>("smtpdomain", name);
  const declared = domain.spec.inbound.credentials;
  const current = declared ?? [{ version: 1 }];
  const active = current.filter((c) => c.state !== "Revoked");
  if (active.length >= 2) {
    throw new Error(
      `${name} already has two active versions (${active.map((c) => c.version).join(", ")}): revoke the older one first (kubectl smtpconnector revoke ${name} --version ${active[0]!.version})`,
    );
  }
  // A number once revoked is never issued again, even after its entry left the spec.
  const next = Math.max(...current.map((c) => c.version), ...(domain.status?.revokedVersions ?? [])) + 1;
  kube.patch(
    "smtpdomain",
    name,
    domain.metadata.resourceVersion!,
    declared
      ? [{ op: "add", path: "/spec/inbound/credentials/-", value: { version: next } }]
      : [{ op: "add", path: "/spec/inbound/credentials", value: [...current, { version: next }] }],
  );
  console.log(`smtpdomain/${name}: credential version ${next} requested beside ${active.map((c) => c.version).join(", ")}.`);
  console.log(
    `Install it on the customer's server (kubectl smtpconnector credentials ${name} --version ${next}), then revoke the old one once status shows it unused.`,
  );
}

function revoke(kube: Kubectl, name: string, version: number, force: boolean): void {
  const domain = kube.get<SmtpDomain>("smtpdomain", name);
  const current = domain.spec.inbound.credentials ?? [{ version: 1 }];
  const index = current.findIndex((c) => c.version === version);
  if (index < 0) throw new Error(`${name} has no credential version ${version} (it has ${current.map((c) => c.version).join(", ")})`);
  if (current[index]!.state === "Revoked") {
    console.log(`smtpdomain/${name}: version ${version} is already revoked.`);
    return;
  }
  const stillActive = current.filter((c) => c.version !== version && c.state !== "Revoked");
  if (stillActive.length === 0 && !force) {
    throw new Error(
      `revoking version ${version} leaves ${name} with no active credential: the customer's server could not relay at all. Rotate first, or pass --force in an emergency`,
    );
  }
  const revoked = current.map((c) => (c.version === version ? { ...c, state: "Revoked" as const } : c));
  kube.patch("smtpdomain", name, domain.metadata.resourceVersion!, [{ op: "add", path: "/spec/inbound/credentials", value: revoked }]);
  console.log(`smtpdomain/${name}: version ${version} revoked; the relay refuses it on the next AUTH.`);
}

function verify(kube: Kubectl, requested: string[]): void {
  const addresses = kube.get<{ items: SupportAddress[] }>("supportaddresses").items;
  const chosen =
    requested.length === 0
      ? addresses
      : requested.map((r) => {
          const found = addresses.find((a) => a.metadata.name === r || a.spec.address.toLowerCase() === r.toLowerCase());
          if (!found) throw new Error(`no SupportAddress named or addressed ${r} in this namespace`);
          return found;
        });
  const at = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  for (const address of chosen) {
    kube.patch("supportaddress", address.metadata.name!, address.metadata.resourceVersion!, [
      { op: "add", path: "/metadata/annotations", value: { ...address.metadata.annotations, "smtpconnector.dev/verify-requested-at": at } },
    ]);
    console.log(
      `supportaddress/${address.metadata.name}: verification requested at ${at} (status.lastHandledVerifyRequest shows it once handled).`,
    );
  }
}

function credentials(kube: Kubectl, name: string, version?: number): void {
  const domain = kube.get<SmtpDomain>("smtpdomain", name);
  const versions = domain.status?.credentials ?? [];
  const chosen = version === undefined ? versions.filter((c) => c.state === "Active").at(-1) : versions.find((c) => c.version === version);
  if (!chosen)
    throw new Error(version === undefined ? `${name} has no active credential yet` : `${name} has no issued credential version ${version}`);
  const secret = kube.get<{ data?: Record<string, string> }>("secret", chosen.secretName);
  const text = (key: string) => Buffer.from(secret.data?.[key] ?? "", "base64").toString("utf8");
  console.error(
    `WARNING: this prints the password of inbound credential version ${chosen.version} of ${name}. Hand it to the customer's mail administrator over a secure channel; do not paste it into tickets or chats.`,
  );
  console.log(`version:  ${chosen.version} (${chosen.state})`);
  console.log(`endpoint: ${domain.status?.relay?.endpoint ?? "?"}`);
  console.log(`username: ${text("username")}`);
  console.log(`password: ${text("password")}`);
  for (const key of ["postfix-main.cf", "exim.conf", "exchange-connector.txt", "ca.crt"]) {
    if (secret.data?.[key]) console.log(`\n--- ${key}\n${text(key).trimEnd()}`);
  }
}

try {
  main(process.argv.slice(2));
} catch (error) {
  console.error(`kubectl smtpconnector: ${(error as Error).message}`);
  if (error instanceof UsageError) console.error(`\n${usage}`);
  process.exitCode = error instanceof UsageError ? 2 : 1;
}
