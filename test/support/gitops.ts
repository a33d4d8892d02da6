// How GitOps tools judge our objects, computed by their own code
// (hack/gitops-check: kstatus from sigs.k8s.io/cli-utils, and Argo CD's Lua VM
// running gitops/argocd/health.lua).
import { execFileSync } from "node:child_process";

export interface GitOpsVerdict {
  name: string;
  kstatus: "InProgress" | "Failed" | "Current" | "Terminating" | "NotFound" | "Unknown";
  kstatusMessage: string;
  health: "Healthy" | "Progressing" | "Degraded" | "Suspended" | "Missing" | "Unknown";
  healthMessage: string;
}

let binary: string | undefined;

export function gitopsVerdicts(objects: object[]): GitOpsVerdict[] {
  binary ??= execFileSync("bash", ["hack/gitops-check/build.sh"], { encoding: "utf8" }).trim();
  const out = execFileSync(binary, ["gitops/argocd/health.lua"], { input: JSON.stringify(objects), encoding: "utf8" });
  return out
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as GitOpsVerdict);
}
