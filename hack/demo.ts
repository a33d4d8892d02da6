// The one-command demo. It starts a private control plane, shows what runs on
// it, and stops everything again. Later steps of the product (operator, relay,
// an example domain and a test email) join here as they land.
import { kubectl } from "../test/support/kube.js";
import { startControlPlane } from "../test/support/controlplane.js";

const started = Date.now();
console.log("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...");
const plane = await startControlPlane();
process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
try {
  console.log(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s; kubeconfig: ${plane.kubeconfig}\n`);
  for (const args of [["version"], ["get", "namespaces"]]) {
    console.log(`$ kubectl ${args.join(" ")}`);
    const result = await kubectl(args);
    process.stdout.write(result.stdout + result.stderr);
    if (result.code !== 0) process.exitCode = 1;
    console.log();
  }
} finally {
  await plane.stop();
  console.log("control plane stopped");
}
