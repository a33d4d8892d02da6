// `npm run operator -- --kubeconfig FILE`: the operator outside a cluster (in
// a cluster it uses its ServiceAccount). Health and metrics on --metrics-port.
import http from "node:http";
import { parseArgs } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { createLogger } from "../relay/ops/log.js";
import { Controller } from "./controller.js";

const usage = "usage: operator [--kubeconfig FILE] [--metrics-port 8080] [--relay-image IMAGE] [--relay-host-suffix SUFFIX] [--system-domains a.example,b.example]";

function options() {
  try {
    const { values } = parseArgs({
      options: {
        kubeconfig: { type: "string" },
        "metrics-port": { type: "string", default: "8080" },
        "relay-image": { type: "string", default: process.env.SMTPC_RELAY_IMAGE ?? "ghcr.io/smtp-connector/smtp-connector:0.1.0" },
        "relay-host-suffix": { type: "string", default: process.env.SMTPC_RELAY_HOST_SUFFIX ?? "relay.smtp-connector.local" },
        "system-domains": { type: "string", default: process.env.SMTPC_SYSTEM_DOMAINS ?? "" },
      },
      strict: true,
    });
    const port = Number(values["metrics-port"]);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--metrics-port must be a port number, got ${values["metrics-port"]}`);
    const systemDomains = values["system-domains"].split(",").map((d) => d.trim().toLowerCase()).filter(Boolean);
    return { kubeconfig: values.kubeconfig, port, relayImage: values["relay-image"], relayHostSuffix: values["relay-host-suffix"], systemDomains };
  } catch (error) {
    console.error(`operator: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const opts = options();
const log = createLogger("operator");
const config = new k8s.KubeConfig();
if (opts.kubeconfig) config.loadFromFile(opts.kubeconfig);
else config.loadFromDefault();

const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "smtpc_operator_process_" });
const reconciles = new Counter({ name: "smtpc_operator_reconciles_total", help: "Reconciles by kind and result.", labelNames: ["kind", "result"], registers: [registry] });
const duration = new Histogram({ name: "smtpc_operator_reconcile_seconds", help: "Reconcile duration.", labelNames: ["kind"], registers: [registry] });
const controller = new Controller(config, {
  settings: { relayImage: opts.relayImage, relayHostSuffix: opts.relayHostSuffix },
  log,
  systemDomains: opts.systemDomains,
  onReconcile: (kind, result, seconds) => {
    reconciles.inc({ kind, result });
    duration.observe({ kind }, seconds);
  },
});
new Gauge({ name: "smtpc_operator_queue_depth", help: "Keys waiting in the work queue.", registers: [registry], collect() {
  this.set(controller.queue.depth);
} });
new Gauge({ name: "smtpc_operator_api_writes", help: "API writes made since start.", registers: [registry], collect() {
  this.set(controller.cluster.writes);
} });

let ready = false;
const server = http.createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/healthz") res.writeHead(200).end("ok\n");
  else if (path === "/readyz") res.writeHead(ready ? 200 : 503).end(ready ? "ready\n" : "not ready\n");
  else if (path === "/metrics") {
    registry.metrics().then((body) => res.writeHead(200, { "content-type": registry.contentType }).end(body), () => res.writeHead(500).end());
  } else res.writeHead(404).end();
});
server.listen(opts.port);

try {
  await controller.start();
  ready = true;
  log.info("operator started", { server: config.getCurrentCluster()?.server });
} catch (error) {
  log.error("operator failed to start", { error: (error as Error).message });
  process.exit(1);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    ready = false;
    log.info("signal received, stopping", { signal });
    void controller
      .queue.idle()
      .then(() => controller.stop())
      .then(() => server.close(() => process.exit(0)));
  });
}
