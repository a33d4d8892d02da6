// The relay's HTTP endpoints: /healthz (liveness), /readyz (readiness),
// /metrics (Prometheus).
//
// Liveness is answered by the event loop and by nothing else: a probe that
// gets no answer within its timeout means the process is stuck, and a restart
// helps. It never looks at a dependency (the next hop, the customer's server,
// the API server): failing it for one would turn that outage into a crash
// loop of every relay pod, dropping the sessions they hold.
// Readiness says whether this pod can serve what its config says (Relay.readiness).
import http from "node:http";
import type { Registry } from "prom-client";

export interface Readiness {
  ready: boolean;
  /** Why not ready, and what a ready relay wants known (no secret: anyone in the cluster may read it). */
  detail: string[];
}

export interface HealthSource {
  readiness(): Readiness;
}

export function createOpsServer(registry: Registry, health: HealthSource): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const { ready, detail } = health.readiness();
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end([ready ? "ready" : "not ready", ...detail].join("\n") + "\n");
    } else if (path === "/metrics") {
      registry.metrics().then(
        (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
}
