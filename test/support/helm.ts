// helm, built from the Go module proxy by hack/helm/build.sh (cached), run
// against the test's control plane with a private helm home — or, for
// rendering alone (helm template needs no cluster), with no cluster at all.
import { execFile, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { connect } from "./kube.js";
import { tempDir } from "./mail.js";

const execFileAsync = promisify(execFile);
let binary: string | undefined;

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function helmBinary(): string {
  binary ??= execFileSync("bash", ["hack/helm/build.sh"], { encoding: "utf8" }).trim();
  return binary;
}

async function run(args: string[]): Promise<HelmResult> {
  const home = tempDir("helm");
  try {
    const { stdout, stderr } = await execFileAsync(helmBinary(), args, {
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, HELM_CACHE_HOME: `${home}/cache`, HELM_CONFIG_HOME: `${home}/config`, HELM_DATA_HOME: `${home}/data` },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** helm against the test's control plane. */
export async function helm(args: string[]): Promise<HelmResult> {
  const { kubeconfigPath } = await connect();
  return run([...args, "--kubeconfig", kubeconfigPath]);
}

let offlineKubeconfig: string | undefined;

/**
 * helm with no cluster: template, lint, package. Its kubeconfig names port 1 on loopback, where nothing
 * listens: with none, helm would fall back to localhost:8080, which may be another test's server.
 */
export async function helmOffline(args: string[]): Promise<HelmResult> {
  if (!offlineKubeconfig) {
    offlineKubeconfig = `${tempDir("helm-offline")}/kubeconfig`;
    writeFileSync(
      offlineKubeconfig,
      "apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: none, user: {}}]\ncontexts: [{name: none, context: {cluster: none, user: none}}]\ncurrent-context: none\n",
    );
  }
  return run([...args, "--kubeconfig", offlineKubeconfig]);
}
