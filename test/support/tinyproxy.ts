// Debian's tinyproxy on loopback, a real HTTP proxy nobody here wrote, for the kubeconfig proxy tests:
// its log (LogLevel Connect) shows each CONNECT it was asked for.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, portOpen, stopChild, tempDir } from "./mail.js";
import { eventuallyTrue } from "./wait.js";

export interface Tinyproxy {
  port: number;
  /** Everything it logged so far. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * `connectPorts`: the only ports it tunnels to (tinyproxy's ConnectPort; none listed: any);
 * `basicAuth`: the user and password it demands (407 without them).
 */
export async function startTinyproxy(
  options: { connectPorts?: number[]; basicAuth?: { user: string; password: string } } = {},
): Promise<Tinyproxy> {
  const dir = tempDir("tinyproxy");
  const port = await freePort();
  const config = join(dir, "tinyproxy.conf");
  writeFileSync(
    config,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Timeout 30",
      "LogLevel Connect",
      "MaxClients 20",
      "Allow 127.0.0.1",
      ...(options.connectPorts ?? []).map((p) => `ConnectPort ${p}`),
      ...(options.basicAuth ? [`BasicAuth ${options.basicAuth.user} ${options.basicAuth.password}`] : []),
      "",
    ].join("\n"),
  );
  // -d: in the foreground, logging to standard output.
  const child = spawn("tinyproxy", ["-d", "-c", config], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  await eventuallyTrue(`tinyproxy on port ${port} (${output})`, async () => {
    if (child.exitCode !== null) throw new Error(`tinyproxy exited: ${output}`);
    return portOpen(port);
  });
  return { port, log: () => output, stop: () => stopChild(child) };
}
