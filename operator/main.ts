// `npm run operator -- --kubeconfig FILE`: the operator outside a cluster (in
// a cluster it uses its ServiceAccount). Health and metrics on --metrics-port.
import http from "node:http";
import { hostname } from "node:os";
import { apiRequests, clusterAccess, type ClusterAccess } from "./kube/access.js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type GaugeConfiguration } from "prom-client";
import { createLogger } from "../lib/log.js";
import { Controller } from "./controller.js";
import { eventDrops } from "./events.js";
import { helpText, parseFlags } from "./flags.js";
import { apiLeaseStore, LeaderElector, leaderTimings } from "./leader.js";

function options() {
  try {
    const parsed = parseFlags(process.argv.slice(2));
    if (parsed.help) {
      process.stdout.write(helpText());
      process.exit(0);
    }
    return parsed;
  } catch (error) {
    console.error(`operator: ${(error as Error).message}\n(operator --help lists every flag)`);
    process.exit(2);
  }
}

const opts = options();
const log = createLogger("operator");
let access: ClusterAccess;
try {
  // The log takes an exec plugin's standard error, with credential-shaped words blanked.
  access = clusterAccess(opts.kubeconfig, opts.context, { log });
  if (access.proxy) log.info(`reaching the API server ${access.server.host} through the proxy ${access.proxy}`);
} catch (error) {
  console.error(`operator: ${(error as Error).message}`);
  process.exit(2);
}

const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "smtpc_operator_process_" });
const reconciles = new Counter({
  name: "smtpc_operator_reconciles_total",
  help: "Reconciles by kind and result.",
  labelNames: ["kind", "result"],
  registers: [registry],
});
const duration = new Histogram({
  name: "smtpc_operator_reconcile_seconds",
  help: "Reconcile duration.",
  labelNames: ["kind"],
  registers: [registry],
});
const eventsDropped = new Counter({
  name: "smtpc_operator_events_dropped_total",
  help: "Events not written, by why: QueueFull (more waiting than the queue holds: 20,000 or 2,000,000 characters of messages), Spam (one object telling more than 25 at once, then one per 5 min), Failed (the API server refused it, or a retry did not pass), Closed (told, waiting or between retries when the operator stopped).",
  labelNames: ["why"],
  registers: [registry],
});
// Every why from the start, at 0: a series that appears only at its first drop has no rate() before it.
for (const why of eventDrops) eventsDropped.inc({ why }, 0);
const controller = new Controller(access, {
  settings: {
    relayImage: opts.relayImage,
    relayHostSuffix: opts.relayHostSuffix,
    allowedHostnameSuffixes: opts.allowedHostnameSuffixes,
    ...(opts.relayPodTemplate ? { relayPodTemplate: opts.relayPodTemplate } : {}),
    relayLimitCaps: opts.relayLimitCaps,
    systemDomains: opts.systemDomains,
    caSecret: opts.caSecret,
    operatorNamespace: opts.leaseNamespace,
    certificates: opts.certificates,
    ...(opts.dnsResolver ? { dnsResolver: opts.dnsResolver } : {}),
    forwarded: opts.forwarded,
  },
  log,
  systemDomains: opts.systemDomains,
  limits: opts.limits,
  ...(opts.watchNamespaces ? { namespaces: opts.watchNamespaces } : {}),
  verification: opts.verification,
  onReconcile: (kind, result, seconds) => {
    reconciles.inc({ kind, result });
    duration.observe({ kind }, seconds);
  },
  onEventDropped: (why) => eventsDropped.inc({ why }),
});
new Gauge({
  name: "smtpc_operator_queue_depth",
  help: "Keys waiting in the work queue.",
  registers: [registry],
  collect() {
    this.set(controller.queue.depth);
  },
});
new Gauge({
  name: "smtpc_operator_events_unwritten",
  help: "Events waiting in the Event queue or being written (0 once it has drained).",
  registers: [registry],
  collect() {
    this.set(controller.events.unwritten);
  },
});
new Gauge({
  name: "smtpc_operator_api_errors",
  help: "API requests that failed since start, by HTTP status (network: no answer). Event writes are counted apart: smtpc_operator_event_api_errors.",
  labelNames: ["code"],
  registers: [registry],
  collect() {
    for (const [code, count] of controller.cluster.apiErrors) this.set({ code }, count);
  },
});
new Gauge({
  name: "smtpc_operator_event_api_errors",
  help: "Event writes (POST) that failed since start, by HTTP status (network: no answer), each retry counted: Event throttling apart from the reconciles' (smtpc_operator_api_errors).",
  labelNames: ["code"],
  registers: [registry],
  collect() {
    for (const [code, count] of controller.cluster.eventApiErrors) this.set({ code }, count);
  },
});
new Gauge({
  name: "smtpc_operator_watch_relists",
  help: "Informer relists since start, by reason (Expired: the resourceVersion expired, 410 Gone; a watch that fails otherwise resumes where it was, uncounted).",
  labelNames: ["reason"],
  registers: [registry],
  collect() {
    for (const [reason, count] of controller.relists) this.set({ reason }, count);
  },
});
new Gauge({
  name: "smtpc_operator_leader",
  help: "1 while this replica holds the leader Lease (or runs without leader election).",
  registers: [registry],
  collect() {
    this.set(elector ? (elector.isLeader ? 1 : 0) : 1);
  },
});
new Gauge({
  name: "smtpc_operator_api_requests",
  help: "API requests made since start (reads, writes, Lease renewals, watches), by verb.",
  labelNames: ["verb"],
  registers: [registry],
  collect() {
    for (const [verb, count] of apiRequests) this.set({ verb }, count);
  },
});
new Gauge({
  name: "smtpc_operator_cached_secrets",
  help: "Secrets the operator caches: in full (its own and the ones domains and addresses name) and as metadata only (all others).",
  labelNames: ["form"],
  registers: [registry],
  collect() {
    const census = controller.secrets.census();
    this.set({ form: "full" }, census.full.length);
    this.set({ form: "metadata" }, census.metadataOnly);
  },
});
new Gauge({
  name: "smtpc_operator_string_pool_entries",
  help: "Distinct strings the informers' caches share one copy of (operator/kube/intern.ts).",
  registers: [registry],
  collect() {
    this.set(controller.strings.size);
  },
});
new Gauge({
  name: "smtpc_operator_string_pool_resets",
  help: "Times since start the informers' string pool started again, a bound reached (20,000 strings or 2,000,000 characters).",
  registers: [registry],
  collect() {
    this.set(controller.strings.resets);
  },
});
new Gauge({
  name: "smtpc_operator_api_writes",
  help: "API writes made by reconciles since start (Lease renewals not counted).",
  registers: [registry],
  collect() {
    this.set(controller.cluster.writes);
  },
});

/**
 * A gauge whose series are made at each scrape and let go after it. A Gauge keeps every series it was
 * set (labels and their hash key) until the next scrape: at 10,000 addresses some 57,000 condition
 * series, tens of MB held for nothing and rebuilt each time.
 */
class ScrapedGauge<T extends string> extends Gauge<T> {
  constructor(
    configuration: GaugeConfiguration<T>,
    private readonly series: () => Awaited<ReturnType<Gauge<T>["get"]>>["values"],
  ) {
    super(configuration);
  }

  override async get(): ReturnType<Gauge<T>["get"]> {
    return { ...(await super.get()), values: this.series() };
  }
}

// The resources' conditions and the rotation overlap, from the informer caches at each scrape: what the
// chart's alerts watch (no kube-state-metrics needed). Labels are bounded by the account limits.
new ScrapedGauge(
  {
    name: "smtpc_operator_condition",
    help: "1 for each condition of each SmtpDomain and SupportAddress, with its status and reason.",
    labelNames: ["kind", "namespace", "name", "type", "status", "reason"],
    registers: [registry],
  },
  () => {
    const { domains, addresses } = controller.snapshot();
    const series = [];
    for (const [kind, objects] of [
      ["SmtpDomain", domains],
      ["SupportAddress", addresses],
    ] as const) {
      for (const object of objects) {
        for (const c of object.status?.conditions ?? []) {
          series.push({
            value: 1,
            labels: {
              kind,
              namespace: object.metadata.namespace ?? "",
              name: object.metadata.name ?? "",
              type: c.type,
              status: c.status,
              reason: c.reason,
            },
          });
        }
      }
    }
    return series;
  },
);
new Gauge({
  name: "smtpc_operator_rotation_overlap_seconds",
  help: "Seconds since the newest inbound credential version was issued, while more than one version is Active (a rotation in progress); absent otherwise.",
  labelNames: ["namespace", "name"],
  registers: [registry],
  collect() {
    this.reset();
    for (const domain of controller.snapshot().domains) {
      const active = (domain.status?.credentials ?? []).filter((c) => c.state === "Active");
      const newest = active
        .map((c) => Date.parse(c.createdAt ?? ""))
        .filter(Number.isFinite)
        .sort((a, b) => b - a)[0];
      if (active.length > 1 && newest !== undefined)
        this.set(
          { namespace: domain.metadata.namespace ?? "", name: domain.metadata.name ?? "" },
          Math.max(0, (Date.now() - newest) / 1000),
        );
    }
  },
});

// Liveness (/healthz) is the event loop answering, nothing else: an API server that is down must not restart
// the operator (its informers reconnect on their own; a crash loop would only add relists).
// Readiness (/readyz): without leader election, the informers have synced. With it, the leader is ready once
// its informers have synced; a standby once it has read the Lease (it reaches the API server with its
// ServiceAccount's rights), not only once it leads: a rollout waits for the new pod's readiness before
// stopping the old leader, so a standby that had to lead to be ready would stall every upgrade.
let synced = false;
let stopping = false;
const readiness = (): { ready: boolean; why: string } => {
  if (stopping) return { ready: false, why: "stopping" };
  if (!elector) return synced ? { ready: true, why: "informers synced" } : { ready: false, why: "informers not synced yet" };
  if (elector.isLeader)
    return synced ? { ready: true, why: "leader; informers synced" } : { ready: false, why: "leader; informers not synced yet" };
  return elector.observedLease
    ? { ready: true, why: "standby; the Lease was read" }
    : { ready: false, why: "standby; the Lease not read yet (the API server not reached)" };
};
/** One metric's exposition text, empty for a name that is not registered. */
const metricText = async (name: string): Promise<string> =>
  registry.getSingleMetric(name) ? `${await registry.getSingleMetricAsString(name)}\n` : "";
const server = http.createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/healthz") res.writeHead(200).end("ok\n");
  else if (path === "/readyz") {
    const { ready, why } = readiness();
    res.writeHead(ready ? 200 : 503).end(`${ready ? "ready" : "not ready"}: ${why}\n`);
  } else if (path === "/metrics") {
    // `?name=<metric>` (repeatable): those metrics alone. At 10,000 addresses the whole text is some 57,000
    // condition series (8.5 MB) made for each scrape; a client polling for one counter should not cost that.
    const only = new URL(req.url ?? "/", "http://operator").searchParams.getAll("name");
    const body = only.length > 0 ? Promise.all(only.map((name) => metricText(name))).then((texts) => texts.join("")) : registry.metrics();
    body.then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  } else res.writeHead(404).end();
});
// A port in use (another operator, a second `npm run operator`) is a one-line error, not a stack trace.
server.once("error", (error: NodeJS.ErrnoException) => {
  const why =
    error.code === "EADDRINUSE" ? "it is in use by another process" : error.code === "EACCES" ? "permission denied" : error.message;
  console.error(`operator: cannot listen on --metrics-port ${opts.port}: ${why}; choose another port with --metrics-port`);
  process.exit(2);
});
server.listen(opts.port);

const start = async () => {
  try {
    await controller.start();
    synced = true;
    log.info("operator started", { server: access.server.origin, namespaces: opts.watchNamespaces ?? "all" });
  } catch (error) {
    log.error("operator failed to start", { error: (error as Error).message });
    process.exit(1);
  }
};

// With leader election only the Lease holder reconciles; a standby is idle (and ready once it has read the Lease).
const elector = opts.leaderElect
  ? new LeaderElector(
      apiLeaseStore(controller.cluster, opts.leaseNamespace, opts.leaseName),
      { namespace: opts.leaseNamespace, name: opts.leaseName, identity: `${hostname()}-${process.pid}`, ...leaderTimings(opts.leaseMs) },
      log,
    )
  : undefined;
if (elector) {
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
    stopping = true;
    log.info("signal received, stopping", { signal });
    void controller.queue
      .idle()
      .then(() => controller.stop())
      .then(() => elector?.stop())
      .then(() => server.close(() => process.exit(0)));
  });
}
