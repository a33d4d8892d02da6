// `npm run testenv -- up --node [--dir DIR]`: the local control plane with a
// real node beside it (hack/node/node.ts), the project's image imported into
// its containerd. Prints one JSON line when pods can run:
//   {"event":"ready","kubeconfig":...,"node":...,"image":...,"seconds":...}
// SIGTERM or SIGINT stops the node, then the control plane, and leaves nothing
// on the host; so does the control plane exiting on its own (exit code 1).
// One node per machine: while one runs, another exits 3 naming its PID; what a
// SIGKILLed one left (processes, host state) the next one removes first.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { claimNode, nodeIp, startNode, type RunningNode } from "./node.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const started = Date.now();
const args = process.argv.slice(2);
const dirFlag = args.indexOf("--dir");
const dir = dirFlag >= 0 && args[dirFlag + 1] ? resolve(args[dirFlag + 1]!) : mkdtempSync(join(tmpdir(), "smtpc-cluster-"));
const ownDir = dirFlag < 0;
const passOn = args.filter((_, i) => i !== dirFlag && i !== dirFlag + 1 && args[i] !== "--node");
mkdirSync(dir, { recursive: true });
const log = (line: string) => console.error(`node: ${line}`);

interface Prepared {
  nodeBinary: string;
  kubeRouter: string;
  testenvBinary: string;
  pauseArchive: string;
  image: { image: string; archive: string };
}
const prepared = JSON.parse(
  execFileSync("bash", [join(repoRoot, "hack/node/prepare.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
    .trim()
    .split("\n")
    .pop()!,
) as Prepared;

// The node's address first: the API server listens there, where pods reach it. One node per machine: a
// node running already is named and refused; one whose supervisor was killed is cleaned up first.
const claim = await claimNode(join(dir, "node"), { ...(ownDir ? { clusterDir: dir } : {}), log }).catch((error: unknown) => {
  log(error instanceof Error ? error.message : String(error));
  if (ownDir) rmSync(dir, { recursive: true, force: true });
  process.exit(3);
});
// --stop-with-parent: should this process be SIGKILLed, the control plane stops by itself (and the next node
// kills it all the same: its PID is in the claim).
const plane = spawn(
  prepared.testenvBinary,
  ["up", "--node", "--stop-with-parent", "--address", nodeIp, "--dir", join(dir, "cp"), ...passOn],
  { stdio: ["ignore", "pipe", "inherit"] },
);
claim.record("control plane", plane.pid);
let node: RunningNode | undefined;
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await (node ? node.stop() : claim.release()).catch((error: unknown) => log(`teardown: ${String(error)}`));
  if (plane.exitCode === null && plane.signalCode === null) {
    const exited = new Promise((done) => plane.once("exit", done));
    plane.kill("SIGTERM");
    await exited;
  }
  // Kept after a failure: the logs are the finding.
  if (ownDir && code === 0) rmSync(dir, { recursive: true, force: true });
  else if (code !== 0) log(`state and logs kept in ${dir}`);
  process.exit(code);
};
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void stop(0));
plane.once("exit", (code) => {
  if (!stopping) {
    log(`the control plane exited (${code}); stopping the node`);
    void stop(1);
  }
});

const kubeconfig = await new Promise<string>((done) => {
  let out = "";
  plane.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    for (const line of out.split("\n")) {
      if (!line.startsWith("{")) continue;
      const event = JSON.parse(line) as { event?: string; kubeconfig?: string };
      if (event.event === "ready" && event.kubeconfig) done(event.kubeconfig);
    }
  });
});
try {
  node = await startNode(
    {
      kubeconfig,
      testenvBinary: prepared.testenvBinary,
      nodeBinary: prepared.nodeBinary,
      kubeRouter: prepared.kubeRouter,
      images: [prepared.pauseArchive, prepared.image.archive],
      dir: join(dir, "node"),
      log,
    },
    claim,
  );
} catch (error) {
  log(String(error));
  await stop(1);
}
if (!stopping) {
  console.log(
    JSON.stringify({
      event: "ready",
      kubeconfig,
      node: node!.name,
      image: prepared.image.image,
      testenv: prepared.testenvBinary,
      seconds: (Date.now() - started) / 1000,
    }),
  );
}
