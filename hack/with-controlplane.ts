// Runs a command with one shared control plane: starts it, exports its
// kubeconfig as SMTPC_KUBECONFIG (and KUBECONFIG), runs the command, stops it —
// also when the command fails or the run is interrupted.
import { spawn } from "node:child_process";
import { startControlPlane } from "../test/support/controlplane.js";

const [command, ...args] = process.argv.slice(2);
if (!command) {
  console.error("usage: with-controlplane.ts COMMAND [ARGS...]");
  process.exit(2);
}
const started = Date.now();
const plane = await startControlPlane();
console.error(`control plane ready in ${((Date.now() - started) / 1000).toFixed(1)}s (${plane.kubeconfig})`);
const child = spawn(command, args, {
  stdio: "inherit",
  env: { ...process.env, SMTPC_KUBECONFIG: plane.kubeconfig, KUBECONFIG: plane.kubeconfig, SMTPC_TESTENV_BIN: plane.binary },
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => child.kill(signal));
}
const code = await new Promise<number>((resolve) => {
  child.on("exit", (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
});
await plane.stop();
process.exit(code);
