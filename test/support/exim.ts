// A private Exim 4 as the customer's MX, configured from the credentials
// Secret's exim.conf snippet (hack/exim/fetch.sh provides the binary). It runs
// in a mount namespace of its own whose /etc/hosts maps the relay's host name
// to 127.0.0.1, so the snippet's route and certificate name check work as
// written; only the port (the test relay's) and the CA file's path change, and
// the router may send to the local host.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, cpSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { freePort, stopChild, tempDir } from "./mail.js";
import { eventuallyTrue } from "./wait.js";
import { portOpen } from "./mail.js";

export interface Exim {
  port: number;
  log(): string;
  stop(): Promise<void>;
}

/** The snippet's parts, by the section its "# --- in the ... section" markers name. */
function sections(snippet: string): Record<"routers" | "transports" | "authenticators", string> {
  const out = { routers: "", transports: "", authenticators: "" };
  let current: keyof typeof out | undefined;
  for (const line of snippet.split("\n")) {
    const marker = /^# --- in the (routers|transports|authenticators) section/.exec(line);
    if (marker) current = marker[1] as keyof typeof out;
    else if (current && !line.startsWith("#")) out[current] += `${line}\n`;
  }
  return out;
}

export async function startExim(opts: {
  domain: string;
  snippet: string;
  relayHost: string;
  relayPort: number;
  caPem?: string;
}): Promise<Exim> {
  const cached = execFileSync("bash", ["hack/exim/fetch.sh"], { encoding: "utf8" }).trim();
  const dir = tempDir("exim");
  // Exim drops to its own user (the config is not a trusted one) and re-execs itself for every
  // delivery: the binary must be where that user can read it (the cache is under root's home).
  const binary = join(dir, "exim4");
  cpSync(cached, binary);
  chmodSync(binary, 0o755);
  chmodSync(dir, 0o755);
  const port = await freePort();
  for (const sub of ["spool", "log"]) mkdirSync(join(dir, sub));
  const caFile = join(dir, "smtp-connector-ca.crt");
  if (opts.caPem) writeFileSync(caFile, opts.caPem, { mode: 0o644 });
  const hosts = join(dir, "hosts");
  writeFileSync(hosts, `127.0.0.1 localhost\n127.0.0.1 ${opts.relayHost}\n`);
  const snippet = opts.snippet
    .split(`${opts.relayHost}::587`)
    .join(`${opts.relayHost}::${opts.relayPort}`)
    .replace(/^ {2}port = 587$/m, `  port = ${opts.relayPort}`)
    .split("/etc/exim4/smtp-connector-ca.crt")
    .join(caFile);
  const parts = sections(snippet);
  const config = [
    "primary_hostname = mx.customer.test",
    `exim_path = ${binary}`,
    "keep_environment =",
    `spool_directory = ${dir}/spool`,
    `log_file_path = ${dir}/log/%slog`,
    `daemon_smtp_ports = ${port}`,
    "local_interfaces = 127.0.0.1",
    "tls_advertise_hosts =",
    "host_lookup =",
    "rfc1413_hosts =",
    `domainlist relay_to_domains = ${opts.domain}`,
    "acl_smtp_rcpt = acl_check_rcpt",
    "begin acl",
    "acl_check_rcpt:",
    "  accept domains = +relay_to_domains",
    "  deny message = relaying not permitted",
    "begin routers",
    // Here the relay is on this very host, which Exim otherwise treats as a routing loop.
    parts.routers.replace(/^ {2}driver = manualroute$/m, "  driver = manualroute\n  self = send"),
    "begin transports",
    parts.transports,
    "begin retry",
    "* * F,1h,2s",
    "begin authenticators",
    parts.authenticators,
  ].join("\n");
  const configFile = join(dir, "exim.conf");
  writeFileSync(configFile, config);
  const uid = Number(execFileSync("id", ["-u", "Debian-exim"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "Debian-exim"], { encoding: "utf8" }).trim());
  for (const path of [dir, join(dir, "spool"), join(dir, "log")]) chownSync(path, uid, gid);
  const child: ChildProcess = spawn(
    "unshare",
    [
      "--mount",
      "sh",
      "-c",
      'mount --bind "$0" /etc/hosts && exec "$@"',
      hosts,
      binary,
      "-C",
      configFile,
      "-bdf",
      "-q2s",
      "-oX",
      String(port),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  const log = () => {
    try {
      return readFileSync(join(dir, "log", "mainlog"), "utf8");
    } catch {
      return "";
    }
  };
  await eventuallyTrue(`exim listening (${stderr})`, () => portOpen(port), 10_000);
  return { port, log, stop: () => stopChild(child) };
}
