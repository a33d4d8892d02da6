// A private Postfix instance (Debian's package) per test: its own config
// directory, queue and log, listening on 127.0.0.1 only. It plays the
// customer's mail server.
import { execFile } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, tempDir } from "./mail.js";
import { eventuallyTrue } from "./wait.js";

const execFileAsync = promisify(execFile);
const postfixCommand = existsSync("/usr/sbin/postfix") ? "/usr/sbin/postfix" : "postfix";

export interface Postfix {
  port: number;
  dir: string;
  log(): string;
  /** Number of messages still in the queue. */
  queued(): Promise<number>;
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

export async function startPostfix(settings: Record<string, string>, extraServices: string[] = []): Promise<Postfix> {
  const dir = tempDir("postfix");
  chmodSync(dir, 0o755);
  const port = await freePort();
  const main: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: join(dir, "queue"),
    data_directory: join(dir, "data"),
    mail_owner: "postfix",
    maillog_file: join(dir, "maillog"),
    maillog_file_prefixes: dir,
    inet_interfaces: "127.0.0.1",
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
  writeFileSync(join(dir, "main.cf"), Object.entries(main).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n");
  writeFileSync(join(dir, "master.cf"), [`127.0.0.1:${port} inet n - n - - smtpd`, ...services, ...extraServices].join("\n") + "\n");
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
  const entry = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postfix:"));
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
