// Installs the project's CRDs (crds/*.yaml) on the run's control plane once
// per process and waits until the API server serves them.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { eventually, kubectl } from "./kube.js";

const crdDir = fileURLToPath(new URL("../../crds/", import.meta.url));
let installed: Promise<void> | undefined;

export function installCRDs(): Promise<void> {
  installed ??= (async () => {
    const apply = await kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=smtpc-tests", "-f", join(crdDir)]);
    if (apply.code !== 0) throw new Error(`installing CRDs failed: ${apply.stderr}`);
    const wait = await kubectl([
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      "crd/smtpdomains.smtpconnector.dev",
      "crd/supportaddresses.smtpconnector.dev",
    ]);
    if (wait.code !== 0) throw new Error(`CRDs not established: ${wait.stderr}`);
    // Established comes before the watch cache is ready (lists answer 429 until then).
    await eventually("the custom resources to be listable", async () => {
      const list = await kubectl(["get", "smtpdomains,supportaddresses", "--all-namespaces"]);
      return list.code === 0 ? true : undefined;
    });
  })();
  return installed;
}
