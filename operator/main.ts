// `npm run operator -- --kubeconfig FILE`: the operator outside a cluster (in
// a cluster it uses its ServiceAccount). Health and metrics on --metrics-port.
import http from "node:http";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { clusterAccess, type ClusterAccess } from "./kube/access.js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { createLogger } from "../relay/ops/log.js";
import { defaultControlUrl } from "./address/verification-io.js";
import { Controller } from "./controller.js";
import { defaultCaSecret } from "./domain/certificate.js";
import { parseDuration } from "./domain/credentials.js";
import { apiLeaseStore, LeaderElector, leaderTimings } from "./leader.js";
import { leaseName } from "./rbac.js";

const usage =
  "usage: operator [--kubeconfig FILE] [--metrics-port 8080] [--relay-image IMAGE] [--relay-host-suffix SUFFIX] [--system-domains a.example,b.example] [--verification-sender verify@helpdesk.example] [--verification-smtp host:port] [--relay-control-url https://{name}-relay-internal.{namespace}.svc:8443] [--relay-control-endpoints pods|url] [--dns-resolver IP[:port]] [--ca-secret NAMESPACE/NAME] [--certificate-duration 2160h] [--certificate-renew-before 720h] [--leader-elect [--leader-election-namespace NS] [--lease-duration-seconds 15]]";

function options() {
  try {
    const { values } = parseArgs({
      options: {
        kubeconfig: { type: "string" },
        "metrics-port": { type: "string", default: "8080" },
        "relay-image": { type: "string", default: process.env.SMTPC_RELAY_IMAGE ?? "ghcr.io/smtp-connector/smtp-connector:0.1.0" },
        "relay-host-suffix": { type: "string", default: process.env.SMTPC_RELAY_HOST_SUFFIX ?? "relay.smtp-connector.local" },
        "system-domains": { type: "string", default: process.env.SMTPC_SYSTEM_DOMAINS ?? "" },
        "verification-sender": { type: "string", default: process.env.SMTPC_VERIFICATION_SENDER ?? "" },
        "verification-smtp": { type: "string", default: process.env.SMTPC_VERIFICATION_SMTP ?? "" },
        "dns-resolver": { type: "string", default: process.env.SMTPC_DNS_RESOLVER ?? "" },
        "relay-control-url": { type: "string", default: process.env.SMTPC_RELAY_CONTROL_URL ?? defaultControlUrl },
        // pods: every ready relay pod (EndpointSlices), the URL only while none is known; url: the URL alone
        // (an operator outside the cluster, which cannot reach pod addresses).
        "relay-control-endpoints": { type: "string", default: process.env.SMTPC_RELAY_CONTROL_ENDPOINTS ?? "pods" },
        "ca-secret": { type: "string", default: process.env.SMTPC_CA_SECRET ?? `${process.env.POD_NAMESPACE ?? defaultCaSecret.namespace}/${defaultCaSecret.name}` },
        "certificate-duration": { type: "string", default: "2160h" },
        "certificate-renew-before": { type: "string", default: "720h" },
        "leader-elect": { type: "boolean", default: false },
        "leader-election-namespace": { type: "string", default: process.env.POD_NAMESPACE ?? "smtp-connector-system" },
        "lease-duration-seconds": { type: "string", default: "15" },
      },
      strict: true,
    });
    const port = Number(values["metrics-port"]);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--metrics-port must be a port number, got ${values["metrics-port"]}`);
    const systemDomains = values["system-domains"].split(",").map((d) => d.trim().toLowerCase()).filter(Boolean);
    const leaseSeconds = Number(values["lease-duration-seconds"]);
    if (!(leaseSeconds >= 2 && leaseSeconds <= 300)) throw new Error(`--lease-duration-seconds must be between 2 and 300, got ${values["lease-duration-seconds"]}`);
    const sender = values["verification-sender"] || `verify@${systemDomains[0] ?? "smtp-connector.invalid"}`;
    if (!/^[^@\s]+@[a-z0-9.-]+$/.test(sender)) throw new Error(`--verification-sender must be an address such as verify@helpdesk.example, got ${sender}`);
    let smtp: { host: string; port: number } | undefined;
    if (values["verification-smtp"]) {
      const match = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\]):([0-9]{1,5})$/.exec(values["verification-smtp"]);
      if (!match || Number(match[2]) > 65535) throw new Error(`--verification-smtp must be host:port, got ${values["verification-smtp"]}`);
      smtp = { host: match[1]!.replace(/^\[|\]$/g, ""), port: Number(match[2]) };
    }
    const dnsResolver = values["dns-resolver"];
    if (dnsResolver && !/^([0-9.]+|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?$/.test(dnsResolver)) throw new Error(`--dns-resolver must be an IP address with an optional port, such as 10.96.0.10:53, got ${dnsResolver}`);
    if (!/^https:\/\//.test(values["relay-control-url"])) throw new Error(`--relay-control-url must be an https URL template (the control API is HTTPS only), got ${values["relay-control-url"]}`);
    const endpoints = values["relay-control-endpoints"];
    if (endpoints !== "pods" && endpoints !== "url") throw new Error(`--relay-control-endpoints must be pods or url, got ${endpoints}`);
    const ca = /^([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/.exec(values["ca-secret"]);
    if (!ca) throw new Error(`--ca-secret must be NAMESPACE/NAME of a Secret, got ${values["ca-secret"]}`);
    const duration = (flag: "certificate-duration" | "certificate-renew-before") => {
      try {
        return parseDuration(values[flag]);
      } catch {
        throw new Error(`--${flag} must be a duration such as 2160h or 90m, got ${values[flag]}`);
      }
    };
    const certificates = { durationMs: duration("certificate-duration"), renewBeforeMs: duration("certificate-renew-before") };
    if (certificates.durationMs < 10_000) throw new Error(`--certificate-duration must be at least 10s, got ${values["certificate-duration"]}`);
    if (certificates.renewBeforeMs >= certificates.durationMs) throw new Error("--certificate-renew-before must be shorter than --certificate-duration");
    return {
      caSecret: { namespace: ca[1]!, name: ca[2]! },
      certificates,
      dnsResolver,
      verification: { sender, ...(smtp ? { smtp } : {}), controlUrl: values["relay-control-url"], perPod: endpoints === "pods" },
      kubeconfig: values.kubeconfig,
      port,
      relayImage: values["relay-image"],
      relayHostSuffix: values["relay-host-suffix"],
      systemDomains,
      leaderElect: values["leader-elect"],
      leaseNamespace: values["leader-election-namespace"],
      leaseMs: leaseSeconds * 1000,
    };
  } catch (error) {
    console.error(`operator: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
}

const opts = options();
const log = createLogger("operator");
let access: ClusterAccess;
try {
  access = clusterAccess(opts.kubeconfig);
} catch (error) {
  console.error(`operator: ${(error as Error).message}`);
  process.exit(2);
}

const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "smtpc_operator_process_" });
const reconciles = new Counter({ name: "smtpc_operator_reconciles_total", help: "Reconciles by kind and result.", labelNames: ["kind", "result"], registers: [registry] });
const duration = new Histogram({ name: "smtpc_operator_reconcile_seconds", help: "Reconcile duration.", labelNames: ["kind"], registers: [registry] });
const controller = new Controller(access, {
  settings: {
    relayImage: opts.relayImage,
    relayHostSuffix: opts.relayHostSuffix,
    systemDomains: opts.systemDomains,
    caSecret: opts.caSecret,
    operatorNamespace: opts.leaseNamespace,
    certificates: opts.certificates,
    ...(opts.dnsResolver ? { dnsResolver: opts.dnsResolver } : {}),
  },
  log,
  systemDomains: opts.systemDomains,
  verification: opts.verification,
  onReconcile: (kind, result, seconds) => {
    reconciles.inc({ kind, result });
    duration.observe({ kind }, seconds);
  },
});
new Gauge({ name: "smtpc_operator_queue_depth", help: "Keys waiting in the work queue.", registers: [registry], collect() {
  this.set(controller.queue.depth);
} });
new Gauge({ name: "smtpc_operator_api_errors", help: "API requests that failed since start, by HTTP status (network: no answer).", labelNames: ["code"], registers: [registry], collect() {
  for (const [code, count] of controller.cluster.apiErrors) this.set({ code }, count);
} });
new Gauge({ name: "smtpc_operator_watch_relists", help: "Informer relists since start, by reason (Expired: 410 Gone; Error: the watch failed).", labelNames: ["reason"], registers: [registry], collect() {
  for (const [reason, count] of controller.relists) this.set({ reason }, count);
} });
new Gauge({ name: "smtpc_operator_leader", help: "1 while this replica holds the leader Lease (or runs without leader election).", registers: [registry], collect() {
  this.set(elector ? (elector.isLeader ? 1 : 0) : 1);
} });
new Gauge({ name: "smtpc_operator_api_writes", help: "API writes made by reconciles since start (Lease renewals not counted).", registers: [registry], collect() {
  this.set(controller.cluster.writes);
} });

// The resources' conditions and the rotation overlap, from the informer caches at each scrape: what the
// chart's alerts watch (no kube-state-metrics needed). Labels are bounded by the account limits.
new Gauge({
  name: "smtpc_operator_condition",
  help: "1 for each condition of each SmtpDomain and SupportAddress, with its status and reason.",
  labelNames: ["kind", "namespace", "name", "type", "status", "reason"],
  registers: [registry],
  collect() {
    this.reset();
    const { domains, addresses } = controller.snapshot();
    for (const [kind, objects] of [["SmtpDomain", domains], ["SupportAddress", addresses]] as const) {
      for (const object of objects) {
        for (const c of object.status?.conditions ?? []) {
          this.set({ kind, namespace: object.metadata.namespace ?? "", name: object.metadata.name ?? "", type: c.type, status: c.status, reason: c.reason }, 1);
        }
      }
    }
  },
});
new Gauge({
  name: "smtpc_operator_rotation_overlap_seconds",
  help: "Seconds since the newest inbound credential version was issued, while more than one version is Active (a rotation in progress); absent otherwise.",
  labelNames: ["namespace", "name"],
  registers: [registry],
  collect() {
    this.reset();
    for (const domain of controller.snapshot().domains) {
      const active = (domain.status?.credentials ?? []).filter((c) => c.state === "Active");
      const newest = active.map((c) => Date.parse(c.createdAt ?? "")).filter(Number.isFinite).sort((a, b) => b - a)[0];
      if (active.length > 1 && newest !== undefined) this.set({ namespace: domain.metadata.namespace ?? "", name: domain.metadata.name ?? "" }, Math.max(0, (Date.now() - newest) / 1000));
    }
  },
});

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

const start = async () => {
  try {
    await controller.start();
    ready = true;
    log.info("operator started", { server: access.server.origin });
  } catch (error) {
    log.error("operator failed to start", { error: (error as Error).message });
    process.exit(1);
  }
};

// With leader election only the Lease holder reconciles; a standby is ready (healthy) but idle.
const elector = opts.leaderElect
  ? new LeaderElector(apiLeaseStore(controller.cluster, opts.leaseNamespace, leaseName), { namespace: opts.leaseNamespace, name: leaseName, identity: `${hostname()}-${process.pid}`, ...leaderTimings(opts.leaseMs) }, log)
  : undefined;
if (elector) {
  ready = true;
  elector.run(
    () => void start(),
    // Another replica may already act: stop at once, the Deployment restarts us as a standby.
    () => process.exit(1),
  );
} else {
  await start();
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    ready = false;
    log.info("signal received, stopping", { signal });
    void controller.queue
      .idle()
      .then(() => controller.stop())
      .then(() => elector?.stop())
      .then(() => server.close(() => process.exit(0)));
  });
}
