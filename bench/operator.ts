// `npm run bench:operator`: how fast the operator converges and how quiet it is
// afterwards, on the real local control plane, with the operator command under
// its chart RBAC (compiled, as the image runs it). Two shapes, each in a fresh namespace set:
//   small  1 namespace, 4 domains × 50 addresses (200 addresses)
//   large  20 namespaces, 1 domain × 50 addresses each (1,000 addresses)
// Prints a table, then `figure <name> <value> <unit>` lines. BENCH_NODE_FLAGS passes
// flags to the operator process (e.g. heap limits) to compare memory settings.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { kubectl } from "../test/support/kube.js";
import { freePort, stopChild } from "../test/support/mail.js";
import { operatorKubeconfig } from "../test/support/operator-rbac.js";

const { values } = parseArgs({ options: { idle: { type: "string", default: "60" } } });
const idleSeconds = Number(values.idle);

interface Shape {
  name: string;
  namespaces: number;
  domainsPerNamespace: number;
  addressesPerDomain: number;
}

function manifests(shape: Shape, run: string): object[] {
  const out: object[] = [];
  for (let n = 0; n < shape.namespaces; n++) {
    const namespace = `bench-${run}-${n}`;
    out.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } });
    out.push({ apiVersion: "v1", kind: "Secret", metadata: { name: "outbound", namespace }, stringData: { username: "u", password: "p" } });
    for (let d = 0; d < shape.domainsPerNamespace; d++) {
      const domain = `d${d}.${namespace}.example`;
      out.push({
        apiVersion: "smtpconnector.dev/v1alpha1",
        kind: "SmtpDomain",
        metadata: { name: `d${d}`, namespace },
        spec: { domain, inbound: { delivery: { smtp: { host: "ingest.helpdesk.svc", port: 25, tls: "None" } } }, relay: { replicas: 1 } },
      });
      for (let a = 0; a < shape.addressesPerDomain; a++) {
        out.push({
          apiVersion: "smtpconnector.dev/v1alpha1",
          kind: "SupportAddress",
          metadata: { name: `d${d}-a${a}`, namespace },
          spec: { address: `a${a}@${domain}`, domainRef: { name: `d${d}` }, outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } } },
        });
      }
    }
  }
  return out;
}

async function converged(shape: Shape, run: string): Promise<boolean> {
  const domains = await kubectl(["get", "smtpdomains", "-A", "-l", "", "-o", "jsonpath={range .items[*]}{.metadata.namespace} {.status.addresses} {.status.observedGeneration}{\"\\n\"}{end}"]);
  const mine = domains.stdout.split("\n").filter((l) => l.startsWith(`bench-${run}-`));
  if (mine.length !== shape.namespaces * shape.domainsPerNamespace) return false;
  if (!mine.every((l) => l.split(" ")[1] === String(shape.addressesPerDomain))) return false;
  const addresses = await kubectl(["get", "supportaddresses", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace} {.status.observedGeneration}{\"\\n\"}{end}"]);
  const done = addresses.stdout.split("\n").filter((l) => l.startsWith(`bench-${run}-`) && l.split(" ")[1] !== "");
  return done.length === shape.namespaces * shape.domainsPerNamespace * shape.addressesPerDomain;
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(text.split("\n").find((l) => l.startsWith(`${name} `))?.split(" ")[1] ?? NaN);
}

const rssMb = (pid: number) => Number(readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))!.split(/\s+/)[1]) / 1024;

async function main(): Promise<void> {
  const plane = await startControlPlane();
  process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
  const results: Record<string, number>[] = [];
  try {
    await installCRDs();
    const port = await freePort();
    const operator = spawn(process.execPath, [...(process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean), "dist/operator/main.js", "--kubeconfig", await operatorKubeconfig(), "--metrics-port", String(port)], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, LOG_LEVEL: "warn" },
    });
    try {
      for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 200));
      const shapes: Shape[] = [
        { name: "small", namespaces: 1, domainsPerNamespace: 4, addressesPerDomain: 50 },
        { name: "large", namespaces: 20, domainsPerNamespace: 1, addressesPerDomain: 50 },
      ];
      for (const [i, shape] of shapes.entries()) {
        const run = `${i}`;
        const objects = manifests(shape, run);
        const writesBefore = await metric(port, "smtpc_operator_api_writes");
        const started = Date.now();
        const applied = await kubectl(["apply", "--server-side", "-f", "-"], { input: objects.map((o) => stringify(o)).join("---\n") });
        if (applied.code !== 0) throw new Error(applied.stderr);
        while (!(await converged(shape, run))) {
          if (Date.now() - started > 600_000) throw new Error(`${shape.name}: not converged after 10 minutes`);
          await new Promise((r) => setTimeout(r, 250));
        }
        // Every status is there; converged means the operator has also stopped writing (3 s without a write).
        let lastWrites = await metric(port, "smtpc_operator_api_writes");
        let lastChange = Date.now();
        while (Date.now() - lastChange < 3_000) {
          await new Promise((r) => setTimeout(r, 250));
          const now = await metric(port, "smtpc_operator_api_writes");
          if (now !== lastWrites) {
            lastWrites = now;
            lastChange = Date.now();
          }
        }
        const seconds = (lastChange - started) / 1000;
        const writes = (await metric(port, "smtpc_operator_api_writes")) - writesBefore;
        const idleBefore = await metric(port, "smtpc_operator_api_writes");
        await new Promise((r) => setTimeout(r, idleSeconds * 1000));
        const idleWrites = (await metric(port, "smtpc_operator_api_writes")) - idleBefore;
        const custom = shape.namespaces * shape.domainsPerNamespace * (1 + shape.addressesPerDomain);
        results.push({ addresses: custom - shape.namespaces * shape.domainsPerNamespace, seconds, writes, writesPerObject: writes / custom, idleWrites, rssMb: rssMb(operator.pid!) });
      }
    } finally {
      await stopChild(operator);
    }
  } finally {
    await plane.stop();
  }
  console.log(["shape", "addresses", "converge s", "writes", "writes/object", `idle ${idleSeconds}s writes`, "RSS MB"].map((c) => c.padStart(16)).join(""));
  for (const [i, r] of results.entries()) {
    console.log([i === 0 ? "small" : "large", r.addresses, r.seconds!.toFixed(1), r.writes, r.writesPerObject!.toFixed(2), r.idleWrites, r.rssMb!.toFixed(0)].map((c) => String(c).padStart(16)).join(""));
  }
  const [small, large] = results as [Record<string, number>, Record<string, number>];
  console.log("");
  console.log(`figure converge_200_addresses ${small.seconds!.toFixed(1)} s`);
  console.log(`figure converge_1000_addresses ${large.seconds!.toFixed(1)} s`);
  console.log(`figure writes_per_object ${large.writesPerObject!.toFixed(2)} writes`);
  console.log(`figure idle_writes ${small.idleWrites! + large.idleWrites!} writes`);
  console.log(`figure operator_rss ${Math.max(small.rssMb!, large.rssMb!).toFixed(0)} MB`);
}

await main();
