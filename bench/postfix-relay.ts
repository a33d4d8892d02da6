// Postfix as the authenticated relay most platform teams would deploy in its
// place: smtpd with Cyrus SASL over STARTTLS only (smtpd_tls_auth_only),
// relaying to the same next hop through its queue, which lives on the disk as
// it would on a pod's. Store-and-forward, so its rounds last until its queue is
// empty (bench/load.ts `drained`), and its CPU is that of the whole instance:
// master, every daemon alive now, and every one that exited (master's cutime).
//
// `beforeQueue`: the same instance (same SASL, TLS, sender checks and tuning)
// with `smtpd_proxy_filter` pointed at the next hop itself, Postfix's
// before-queue cut-through. smtpd then hands each transaction to the proxy
// instead of to cleanup: it opens a connection to the next hop at MAIL FROM,
// relays MAIL, RCPT and DATA as they arrive (`smtpd_proxy_options` empty:
// streamed, not buffered first) and gives the client the next hop's reply to
// the final dot; nothing is queued. That is the shape of ours (the client's
// answer is the next hop's), so its rate, CPU and latency compare without a
// queue's disk writes or a drain in the round. Where it is not the same: one
// next-hop connection per transaction (Postfix has no proxy connection pool;
// ours keeps connections open), the next hop must speak SMTP as a content
// filter would (smtp-sink does), and Postfix adds its Received: header as ours
// does. In production the proxy would be a filter that re-injects into a second
// smtpd; pointing it at the final next hop is the fastest Postfix can relay
// with a next-hop-dependent reply.
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { startSubmissionServer } from "../test/support/postfix.js";
import type { Target } from "./load.js";

const execFileAsync = promisify(execFile);

export async function startPostfixRelay(opts: {
  sinkPort: number;
  password: string;
  from: string;
  beforeQueue?: boolean;
}): Promise<{ target: Target; stop: () => Promise<void> }> {
  const user = "bench@example.com";
  const postfix = await startSubmissionServer({
    relayTo: opts.sinkPort,
    users: [{ username: user, password: opts.password, senders: [opts.from] }],
  });
  // Tuned as an operator of a busy relay would: daemons kept for the whole run, no per-connection process churn beyond max_use.
  await postfix.reconfigure({
    max_idle: "3600s",
    default_process_limit: "200",
    smtp_connection_cache_on_demand: "yes",
    ...(opts.beforeQueue ? { smtpd_proxy_filter: `127.0.0.1:${opts.sinkPort}`, smtpd_proxy_options: "" } : {}),
  });
  const master = Number(readFileSync(join(postfix.dir, "queue", "pid", "master.pid"), "utf8").trim());
  const instance = () => [master, ...children(master)];
  const target: Target = {
    name: opts.beforeQueue ? "postfix-bq" : "postfix",
    port: postfix.port,
    tls: true,
    auth: { user, pass: opts.password },
    cpu: () => {
      const own = instance()
        .map(stat)
        .filter((s) => s !== undefined);
      const waited = stat(master);
      return {
        user: own.reduce((sum, s) => sum + s.user, 0) + (waited?.childUser ?? 0),
        system: own.reduce((sum, s) => sum + s.system, 0) + (waited?.childSystem ?? 0),
      };
    },
    // Proportional set size: a dozen processes share libraries and the queue's page cache; RSS would count them each time.
    rss: () => instance().reduce((sum, pid) => sum + pssKb(pid), 0) / 1024,
    // Before-queue: every message was delivered when its client got the reply, so there is nothing to wait for.
    ...(opts.beforeQueue
      ? {}
      : {
          drained: async () => {
            for (;;) {
              const { stdout } = await execFileAsync("/usr/sbin/postqueue", ["-c", postfix.dir, "-j"]);
              if (stdout.trim() === "") return;
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          },
        }),
  };
  return { target, stop: () => postfix.stop() };
}

function children(parent: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s?.ppid === parent) pids.push(Number(name));
  }
  return pids;
}

/** utime, stime, cutime and cstime (clock ticks) and the parent, or undefined for a process gone meanwhile. */
function stat(pid: number): { ppid: number; user: number; system: number; childUser: number; childSystem: number } | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return {
      ppid: Number(fields[1]),
      user: Number(fields[11]),
      system: Number(fields[12]),
      childUser: Number(fields[13]),
      childSystem: Number(fields[14]),
    };
  } catch {
    return undefined;
  }
}

function pssKb(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
