// Haraka set up as an authenticated cut-through relay, for the side-by-side
// benchmark: plugins tls, auth/flat_file, rcpt_to.in_host_list and
// queue/smtp_forward with enable_outbound=true (or authenticated mail would go
// to Haraka's own queue), one process (nodes=0), and TCP_NODELAY on its
// sockets so it runs at its best. Installed from npm into a cache directory on
// first use, never into the project.
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { freePort, portOpen, stopChild } from "../test/support/mail.js";

const harakaVersion = "3.3.4";

function harakaHome(): string {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "smtp-connector", `haraka-${harakaVersion}`);
  if (!existsSync(join(dir, "node_modules", "Haraka", "bin", "haraka"))) {
    mkdirSync(dir, { recursive: true });
    console.error(`installing Haraka ${harakaVersion} into ${dir}`);
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefix", dir, `Haraka@${harakaVersion}`], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  return join(dir, "node_modules", "Haraka");
}

export async function startHaraka(opts: {
  dir: string;
  tls: { certFile: string; keyFile: string };
  sinkPort: number;
  user: string;
  password: string;
}): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const home = harakaHome();
  const root = join(opts.dir, "haraka");
  const config = join(root, "config");
  mkdirSync(join(root, "plugins"), { recursive: true });
  mkdirSync(config, { recursive: true });
  const port = await freePort();
  // Haraka's defaults first (connection.ini and friends), then ours on top.
  for (const name of readdirSync(join(home, "config"))) copyFileSync(join(home, "config", name), join(config, name));
  const files: Record<string, string> = {
    "smtp.ini": `listen=127.0.0.1:${port}\nnodes=0\n`,
    plugins: "nodelay\ntls\nauth/flat_file\nrcpt_to.in_host_list\nqueue/smtp_forward\n",
    "tls.ini": `key=${opts.tls.keyFile}\ncert=${opts.tls.certFile}\n`,
    "auth_flat_file.ini": `[core]\nmethods=PLAIN\n\n[users]\n${opts.user}=${opts.password}\n`,
    host_list: "example.com\n",
    "smtp_forward.ini": `host=127.0.0.1\nport=${opts.sinkPort}\nenable_outbound=true\nenable_tls=false\n`,
    "log.ini": "[main]\nlevel=warn\n",
    me: "haraka.bench\n",
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(config, name), content);
  writeFileSync(
    join(root, "plugins", "nodelay.js"),
    [
      "// TCP_NODELAY on every socket, the forwarding leg included (Haraka does not set it there).",
      "const net = require('node:net');",
      "const connect = net.Socket.prototype.connect;",
      "net.Socket.prototype.connect = function (...args) { this.setNoDelay(true); return connect.apply(this, args); };",
      "exports.hook_connect_init = function (next, connection) { connection.client?.setNoDelay?.(true); next(); };",
      "// No DNS on these machines: skip the reverse lookup Haraka makes for every connection.",
      "exports.hook_lookup_rdns = function (next) { next(OK, 'client.bench'); };",
      "",
    ].join("\n"),
  );
  const child = spawn(process.execPath, [join(home, "bin", "haraka"), "-c", root], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  const deadline = Date.now() + 20_000;
  while (!(await portOpen(port))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`Haraka did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { port, pid: child.pid!, stop: () => stopChild(child) };
}
