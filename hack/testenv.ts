// `npm run testenv -- <command> ...`: builds the local control plane when the
// cached binary is missing (hack/testenv/build.sh), then runs it.
import { spawn } from "node:child_process";
import { testenvBinary } from "../test/support/controlplane.js";

const binary = testenvBinary();
const child = spawn(binary, process.argv.slice(2), { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => {
  process.exit(code ?? (signal ? 1 : 0));
});
