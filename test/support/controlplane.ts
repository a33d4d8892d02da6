// One real control plane (etcd + kube-apiserver + kube-controller-manager from
// hack/testenv) per test run. hack/with-controlplane.ts starts it once and
// passes its kubeconfig to every test file in SMTPC_KUBECONFIG; a test file run
// on its own starts a private one that stops when the file's process exits.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Path of the control-plane binary, built and cached on first use. */
export function testenvBinary(): string {
  if (process.env.SMTPC_TESTENV_BIN) return process.env.SMTPC_TESTENV_BIN;
  const out = execFileSync("bash", [join(repoRoot, "hack/testenv/build.sh")], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  const binary = out.trim().split("\n").pop() ?? "";
  if (!existsSync(binary)) throw new Error(`hack/testenv/build.sh printed no binary path (got "${out}")`);
  process.env.SMTPC_TESTENV_BIN = binary;
  return binary;
}

export interface ControlPlane {
  kubeconfig: string;
  dir: string;
  binary: string;
  /** Sends SIGTERM, waits for the exit and removes the directory; resolves to the exit code. */
  stop(): Promise<number | null>;
  /** Stops it when this process exits, without holding the process open. */
  detach(): void;
  /**
   * Kills kube-apiserver (SIGKILL) and starts it again, etcd kept; with
   * `compact`, etcd is first compacted to its current revision so every
   * resourceVersion clients hold has expired (their next watch gets 410 Gone).
   * Resolves once the new API server is ready.
   */
  restartApiServer(options?: { compact?: boolean }): Promise<void>;
}

/** Starts a control plane in a fresh directory and resolves once the API server is ready. */
export async function startControlPlane(options: { timeoutMs?: number } = {}): Promise<ControlPlane> {
  const binary = testenvBinary();
  const dir = mkdtempSync(join(tmpdir(), "smtpc-testenv-"));
  const child = spawn(binary, ["up", "--dir", dir, "--stop-with-parent"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const kubeconfig = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`control plane not ready after ${options.timeoutMs ?? 120_000} ms; logs in ${dir}\n${stderr}`));
    }, options.timeoutMs ?? 120_000);
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      for (const line of out.split("\n")) {
        const ready = parseReady(line);
        if (ready) {
          clearTimeout(timer);
          resolve(ready);
        }
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited with ${code} before it was ready; logs in ${dir}\n${stderr}`));
    });
  });
  return {
    kubeconfig,
    dir,
    binary,
    stop: () => stopControlPlane(child, dir),
    restartApiServer: ({ compact = false } = {}) =>
      new Promise<void>((resolve, reject) => {
        let out = "";
        const onData = (chunk: Buffer) => {
          out += chunk.toString();
          if (!out.split("\n").some((line) => line.includes('"event":"apiserver-restarted"'))) return;
          child.stdout?.off("data", onData);
          child.off("exit", onExit);
          resolve();
        };
        const onExit = (code: number | null) =>
          reject(new Error(`the control plane exited (${code}) while restarting kube-apiserver; logs in ${dir}\n${stderr}`));
        child.stdout?.on("data", onData);
        child.once("exit", onExit);
        child.kill(compact ? "SIGUSR2" : "SIGUSR1");
      }),
    detach: () => {
      // Let the test process exit on its own; take the control plane down with it.
      child.unref();
      child.stdout?.destroy();
      child.stderr?.destroy();
      process.once("exit", () => {
        child.kill("SIGTERM");
      });
    },
  };
}

function parseReady(line: string): string | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const event = JSON.parse(line) as { event?: unknown; kubeconfig?: unknown };
    return event.event === "ready" && typeof event.kubeconfig === "string" ? event.kubeconfig : undefined;
  } catch {
    return undefined;
  }
}

async function stopControlPlane(child: ChildProcess, dir: string): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
  return child.exitCode;
}

let shared: Promise<{ kubeconfig: string; binary: string }> | undefined;

/**
 * The control plane of this test run: the one named by SMTPC_KUBECONFIG, or a
 * private one for this test file, stopped when the file's process exits (the
 * binary also stops by itself when its parent goes away, --stop-with-parent).
 */
export function controlPlane(): Promise<{ kubeconfig: string; binary: string }> {
  shared ??= (async () => {
    const kubeconfig = process.env.SMTPC_KUBECONFIG;
    if (kubeconfig) return { kubeconfig, binary: testenvBinary() };
    const plane = await startControlPlane();
    plane.detach();
    return plane;
  })();
  return shared;
}
