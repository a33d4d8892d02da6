// The one-command demo: a private local control plane, the API installed, the
// examples applied, and what kubectl shows. Stops everything again at the end.
// The operator, relay and a test email join here as they land.
import { fileURLToPath } from "node:url";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { kubectl } from "../test/support/kube.js";

const examples = fileURLToPath(new URL("../examples/", import.meta.url));

async function show(args: string[]): Promise<void> {
  console.log(`$ kubectl ${args.join(" ")}`);
  const result = await kubectl(args);
  process.stdout.write(result.stdout + result.stderr + "\n");
  if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed`);
}

const started = Date.now();
console.log("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...");
const plane = await startControlPlane();
process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
try {
  console.log(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s; kubeconfig: ${plane.kubeconfig}\n`);
  await show(["version"]);
  await installCRDs();
  await show(["get", "crds"]);
  await show(["apply", "--server-side", "-f", examples]);
  await show(["get", "smtpconnector", "-n", "acme-helpdesk"]);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await plane.stop();
  console.log("control plane stopped");
}
