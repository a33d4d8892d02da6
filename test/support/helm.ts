// helm, built from the Go module proxy by hack/helm/build.sh (cached), run
// against the test's control plane with a private helm home.
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { connect } from "./kube.js";
import { tempDir } from "./mail.js";

const execFileAsync = promisify(execFile);
let binary: string | undefined;

export async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  binary ??= execFileSync("bash", ["hack/helm/build.sh"], { encoding: "utf8" }).trim();
  const { kubeconfigPath } = await connect();
  const home = tempDir("helm");
  try {
    const { stdout, stderr } = await execFileAsync(binary, [...args, "--kubeconfig", kubeconfigPath], {
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, HELM_CACHE_HOME: `${home}/cache`, HELM_CONFIG_HOME: `${home}/config`, HELM_DATA_HOME: `${home}/data` },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}
