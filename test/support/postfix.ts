// A private Postfix instance (Debian's package) per test: its own config
// directory, queue and log, listening on 127.0.0.1 (or one address given, e.g.
// the node's, which pods reach). It plays the customer's mail server.
import { execFile } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { freePort, selfSignedCertificate, tempDir } from "./mail.js";
import { eventuallyTrue } from "./wait.js";

const execFileAsync = promisify(execFile);
const postfixCommand = existsSync("/usr/sbin/postfix") ? "/usr/sbin/postfix" : "postfix";

export interface Postfix {
  port: number;
  dir: string;
  log(): string;
  /** Number of messages still in the queue. */
  queued(): Promise<number>;
  /** Changes main.cf settings and reloads, as an admin would (postconf -e; postfix reload). */
  reconfigure(settings: Record<string, string>): Promise<void>;
  /** Asks the queue manager to retry deferred mail now (postqueue -f). */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

// The services of Debian's master.cf that a relaying instance needs, none chrooted.
const services = [
  "pickup    unix  n - n 60   1 pickup",
  "cleanup   unix  n - n -    0 cleanup",
  "qmgr      unix  n - n 300  1 qmgr",
  "tlsmgr    unix  - - n 1000? 1 tlsmgr",
  "rewrite   unix  - - n -    - trivial-rewrite",
  "bounce    unix  - - n -    0 bounce",
  "defer     unix  - - n -    0 bounce",
  "trace     unix  - - n -    0 bounce",
  "verify    unix  - - n -    1 verify",
  "flush     unix  n - n 1000? 0 flush",
  "proxymap  unix  - - n -    - proxymap",
  "smtp      unix  - - n -    - smtp",
  "relay     unix  - - n -    - smtp",
  "showq     unix  n - n -    - showq",
  "error     unix  - - n -    - error",
  "retry     unix  - - n -    - error",
  "discard   unix  - - n -    - discard",
  "local     unix  - n n -    - local",
  "lmtp      unix  - - n -    - lmtp",
  "anvil     unix  - - n -    1 anvil",
  "scache    unix  - - n -    1 scache",
  "postlog   unix-dgram n - n - 1 postlogd",
];

export async function startPostfix(
  settings: Record<string, string>,
  extraServices: string[] = [],
  files: Record<string, string> = {},
  listenPort?: number,
  listenAddress = "127.0.0.1",
): Promise<Postfix> {
  const dir = tempDir("postfix");
  chmodSync(dir, 0o755);
  const port = listenPort ?? (await freePort());
  const main: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: join(dir, "queue"),
    data_directory: join(dir, "data"),
    mail_owner: "postfix",
    maillog_file: join(dir, "maillog"),
    maillog_file_prefixes: dir,
    inet_interfaces: listenAddress === "127.0.0.1" ? listenAddress : `127.0.0.1, ${listenAddress}`,
    inet_protocols: "ipv4",
    myhostname: "mx.customer.test",
    mydestination: "",
    mynetworks: "127.0.0.0/8",
    smtpd_relay_restrictions: "permit_mynetworks, reject_unauth_destination",
    smtp_dns_support_level: "disabled",
    biff: "no",
    minimal_backoff_time: "2s",
    maximal_backoff_time: "4s",
    queue_run_delay: "2s",
    ...settings,
  };
  writeFileSync(
    join(dir, "main.cf"),
    Object.entries(main)
      .map(([k, v]) => `${k} = ${v}`)
      .join("\n") + "\n",
  );
  writeFileSync(join(dir, "master.cf"), [`${listenAddress}:${port} inet n - n - - smtpd`, ...services, ...extraServices].join("\n") + "\n");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true, mode: 0o755 });
    writeFileSync(join(dir, path), content, { mode: 0o644 });
  }
  mkdirSync(join(dir, "queue"));
  mkdirSync(join(dir, "data"));
  const { uid, gid } = postfixUser();
  chownSync(join(dir, "data"), uid, gid);
  await run(["-c", dir, "check"]);
  await run(["-c", dir, "start"]);
  await eventuallyTrue("Postfix to listen", () => readLog(dir).includes("daemon started"), 10_000);
  return {
    port,
    dir,
    log: () => readLog(dir),
    reconfigure: async (changes: Record<string, string>) => {
      await execFileAsync("/usr/sbin/postconf", ["-c", dir, "-e", ...Object.entries(changes).map(([k, v]) => `${k}=${v}`)]);
      await run(["-c", dir, "reload"]);
    },
    flush: async () => {
      await execFileAsync("/usr/sbin/postqueue", ["-c", dir, "-f"]).catch(() => undefined);
    },
    queued: async () => {
      const { stdout } = await execFileAsync("/usr/sbin/postqueue", ["-c", dir, "-j"]).catch(() => ({ stdout: "" }));
      return stdout.split("\n").filter((l) => l.trim().startsWith("{")).length;
    },
    stop: async () => {
      await run(["-c", dir, "stop"]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function postfixUser(): { uid: number; gid: number } {
  const entry = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postfix:"));
  if (!entry) throw new Error("no postfix user: install Debian's postfix package (hack/setup.sh does)");
  const [, , uid, gid] = entry.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, "maillog"), "utf8");
  } catch {
    return "";
  }
}

async function run(args: string[]): Promise<void> {
  try {
    await execFileAsync(postfixCommand, args);
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`postfix ${args.join(" ")} failed: ${e.stderr ?? ""}${e.stdout ?? ""}${e.message}`);
  }
}

/** How the customer's Postfix forwards the support domain to the relay. */
export type Forwarding = (
  | { domain: string; relayPort: number; username: string; password: string }
  /**
   * The snippet from the credentials Secret (postfix-main.cf), used as it is,
   * with only what a test must change: the relay's address (no DNS here, so
   * [relayHost]:587 becomes [127.0.0.1]:relayPort) and where ca.crt is saved.
   */
  | { domain: string; relayPort: number; snippet: string; relayHost: string; caPem?: string }
  /**
   * Forwarded mode (a cloud mail service's forwarding): the domain's mail goes to the relay's forwarded listener
   * as MTAs deliver, without AUTH, TLS when offered, the recipient unchanged.
   */
  | { domain: string; relayPort: number; withoutAuth: true }
) & {
  /** Where the relay listens (default 127.0.0.1): a relay pod's IP on a real node. */
  relayAddress?: string;
};

/**
 * How the customer's IT team forwards example.com, from the credentials Secret: its postfix-main.cf snippet and
 * ca.crt, relay.helpdesk.example.net reached at `relayAddress` (127.0.0.1 unless told) on `relayPort`.
 */
export function secretForwarding(credentials: { data?: Record<string, string> }, relayPort: number, relayAddress?: string): Forwarding {
  const text = (key: string) => Buffer.from(credentials.data?.[key] ?? "", "base64").toString();
  return {
    domain: "example.com",
    ...(relayAddress ? { relayAddress } : {}),
    relayPort,
    snippet: text("postfix-main.cf"),
    relayHost: "relay.helpdesk.example.net",
    caPem: text("ca.crt"),
  };
}

function forwarding(f: Forwarding, dir: string): Record<string, string> {
  const relay = `[${f.relayAddress ?? "127.0.0.1"}]:${f.relayPort}`;
  const common = {
    // Anyone may send to the domain (it is an MX); only logged-in users elsewhere.
    smtpd_tls_security_level: "may",
    smtpd_relay_restrictions: "permit_sasl_authenticated, reject_unauth_destination",
    relay_domains: f.domain,
    transport_maps: `inline:{ ${f.domain}=smtp:${relay} }`,
    // Logs "Verified TLS connection established" (or Trusted/Untrusted/Anonymous): tests read how the relay was checked.
    smtp_tls_loglevel: "1",
  };
  if ("snippet" in f) {
    const caFile = join(dir, "smtp-connector-ca.crt");
    if (f.caPem) writeFileSync(caFile, f.caPem, { mode: 0o644 });
    const settings: Record<string, string> = {};
    for (const line of f.snippet.split("\n")) {
      const match = /^([a-z_]+)\s*=\s*(.*)$/.exec(line.trim());
      if (!match) continue;
      settings[match[1]!] = match[2]!.split(`[${f.relayHost}]:587`).join(relay).split("/etc/postfix/smtp-connector-ca.crt").join(caFile);
    }
    return { ...common, ...settings };
  }
  if ("withoutAuth" in f) return { ...common, smtp_tls_security_level: "may" };
  return {
    ...common,
    smtp_sasl_auth_enable: "yes",
    smtp_sasl_password_maps: `inline:{ ${relay}=${f.username}:${f.password} }`,
    smtp_sasl_security_options: "noanonymous",
    smtp_sasl_tls_security_options: "noanonymous",
    smtp_tls_policy_maps: `inline:{ ${relay}=encrypt }`,
  };
}

export interface SubmissionUser {
  username: string;
  password: string;
  /** Envelope senders this login may use (Postfix refuses any other: reject_sender_login_mismatch). */
  senders: string[];
}

/**
 * A private Postfix as the customer's submission server: STARTTLS required,
 * then SASL AUTH (Cyrus, sasldb) required, each login bound to its senders,
 * relaying everything to `relayTo` (smtp-sink in tests). Its certificate is
 * self-signed for 127.0.0.1; `certFile` is the CA a client must trust.
 */
export async function startSubmissionServer(opts: {
  relayTo: number;
  users: SubmissionUser[];
  implicitTls?: boolean;
  /**
   * Also the domain's MX: mail for `domain`, from anyone, is relayed to the
   * relay with SASL over TLS (as the client snippets tell a customer to).
   */
  forward?: Forwarding;
  /** A port chosen beforehand (e.g. one already handed to the operator); a free one otherwise. */
  port?: number;
  /** Where it listens, 127.0.0.1 by default; its certificate names it too (a pod reaches the node's address). */
  listenAddress?: string;
}): Promise<Postfix & { certFile: string }> {
  const sasl = tempDir("sasl");
  chmodSync(sasl, 0o755);
  const tls = await selfSignedCertificate(
    sasl,
    "mx.customer.test",
    [],
    opts.listenAddress && opts.listenAddress !== "127.0.0.1" ? [opts.listenAddress] : [],
  );
  const db = join(sasl, "sasldb2");
  for (const user of opts.users) {
    const [name, realm] = user.username.split("@");
    await new Promise<void>((resolve, reject) => {
      const child = execFile("saslpasswd2", ["-f", db, "-p", "-c", ...(realm ? ["-u", realm] : []), name!], (error) =>
        error ? reject(new Error(`saslpasswd2 failed: ${error.message}`)) : resolve(),
      );
      child.stdin?.end(user.password);
    });
  }
  const { uid, gid } = postfixUser();
  // No users (an MX only): no database; SASL then refuses every login.
  if (opts.users.length > 0) {
    chownSync(db, uid, gid);
    chmodSync(db, 0o640);
  }
  const logins = opts.users.flatMap((u) => u.senders.map((s) => `${s}=${u.username}`)).join(", ");
  const postfix = await startPostfix(
    {
      mynetworks: "",
      smtpd_tls_cert_file: tls.certFile,
      smtpd_tls_key_file: tls.keyFile,
      smtpd_tls_security_level: "encrypt",
      smtpd_tls_wrappermode: opts.implicitTls ? "yes" : "no",
      smtpd_tls_auth_only: "yes",
      smtpd_sasl_auth_enable: "yes",
      smtpd_sasl_type: "cyrus",
      smtpd_sasl_path: "smtpd",
      smtpd_sasl_security_options: "noanonymous",
      smtpd_sasl_authenticated_header: "yes",
      // An empty inline map fails every lookup ("Temporary lookup failure"): an MX without users has none.
      ...(logins ? { smtpd_sender_login_maps: `inline:{ ${logins} }`, smtpd_sender_restrictions: "reject_sender_login_mismatch" } : {}),
      smtpd_relay_restrictions: "permit_sasl_authenticated, reject",
      relayhost: `[127.0.0.1]:${opts.relayTo}`,
      smtp_tls_security_level: "none",
      ...(opts.forward ? forwarding(opts.forward, sasl) : {}),
    },
    [],
    // Debian's Postfix reads its Cyrus configuration from <config dir>/sasl/<smtpd_sasl_path>.conf.
    { "sasl/smtpd.conf": `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: ${db}\n` },
    opts.port,
    opts.listenAddress,
  );
  return {
    ...postfix,
    certFile: tls.certFile,
    stop: async () => {
      await postfix.stop();
      rmSync(sasl, { recursive: true, force: true });
    },
  };
}
