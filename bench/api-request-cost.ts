// `bash hack/node.sh --import tsx bench/api-request-cost.ts [--count N]`: what each kind of request the operator
// makes while 10,000 addresses converge costs the API server and etcd, in CPU milliseconds per request, on the
// local control plane. `bench:operator` shows that the control plane's CPU is what convergence waits for; this says
// which requests spend it. N SupportAddresses in one namespace (made first, not counted), then, 8 in flight as the
// operator's queue sends them, for each address: its status as the operator writes it by server-side apply; the
// same status as a JSON merge patch (the cheaper write the operator does not use); the Event a new address gets;
// and a GET. Prints `figure api_cpu_ms_per_<kind> <ms> ms`.
import https from "node:https";
import { parseArgs } from "node:util";
import { startControlPlane } from "../test/support/controlplane.js";
import { installCRDs } from "../test/support/crds.js";
import { apiUrl, clusterAccess, type ClusterAccess } from "../operator/kube/access.js";
import { descendantCpuSeconds } from "./proc.js";

const { values } = parseArgs({ options: { count: { type: "string", default: "2000" } } });
const count = Number(values.count);
const namespace = "cost";
const api = `/apis/smtpconnector.dev/v1alpha1/namespaces/${namespace}/supportaddresses`;

const contentTypes: Record<string, string> = {
  APPLY: "application/apply-patch+yaml",
  MERGE: "application/merge-patch+json",
  POST: "application/json",
};

/** One request, with the content type its kind needs (APPLY and MERGE are PATCHes). */
async function send(access: ClusterAccess, kind: string, path: string, body?: string): Promise<void> {
  const { agent, token } = await access.credentials();
  const method = kind === "APPLY" || kind === "MERGE" ? "PATCH" : kind;
  const contentType = contentTypes[kind];
  await new Promise<void>((resolve, reject) => {
    const req = https.request(
      apiUrl(access.server, path),
      {
        method,
        agent,
        headers: {
          accept: "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined && contentType ? { "content-type": contentType, "content-length": Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () =>
          (res.statusCode ?? 0) >= 300 ? reject(new Error(`${kind} ${path}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`)) : resolve(),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** `count` requests, 8 in flight (the operator's queue runs 8 reconciles at once). */
async function each(access: ClusterAccess, make: (i: number) => [kind: string, path: string, body?: string]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = next++; i < count; i = next++) await send(access, ...make(i));
    }),
  );
}

const condition = (type: string, status: string, reason: string, message: string) => ({
  type,
  status,
  reason,
  message,
  observedGeneration: 1,
  lastTransitionTime: "2026-12-01T23:00:00Z",
});
const status = (i: number) => ({
  observedGeneration: 1,
  conditions: [
    condition("DomainReady", "False", "DomainNotReady", `SmtpDomain d0 is not Ready: the relay has no available replica yet (${i % 7})`),
    condition("InboundVerified", "Unknown", "VerificationPending", "no verification has completed yet"),
    condition("OutboundVerified", "Unknown", "VerificationPending", "no verification has completed yet"),
    condition("Ready", "False", "DomainNotReady", `SmtpDomain d0 is not Ready: the relay has no available replica yet (${i % 7})`),
    condition("Reconciling", "True", "Progressing", "SmtpDomain d0 is not Ready"),
  ],
});

async function main(): Promise<void> {
  const plane = await startControlPlane();
  try {
    process.env.SMTPC_KUBECONFIG = plane.kubeconfig;
    await installCRDs();
    const access = clusterAccess(plane.kubeconfig);
    await send(
      access,
      "POST",
      "/api/v1/namespaces",
      JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }),
    );
    const address = (i: number) => ({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { name: `a${i}`, namespace },
      spec: {
        address: `a${i}@cost.example`,
        domainRef: { name: "d0" },
        outbound: { host: "smtp.example.com", credentialsSecretRef: { name: "outbound" } },
      },
    });
    await each(access, (i) => ["APPLY", `${api}/a${i}?fieldManager=bench&force=true`, JSON.stringify(address(i))]);
    const kinds: [string, (i: number) => [string, string, string?]][] = [
      [
        "status_apply",
        (i) => [
          "APPLY",
          `${api}/a${i}/status?fieldManager=smtp-connector&force=true`,
          JSON.stringify({ ...address(i), spec: undefined, status: status(i) }),
        ],
      ],
      // The same status again, changed (one condition's message), as a merge patch under another manager.
      [
        "status_merge_patch",
        (i) => ["MERGE", `${api}/a${i}/status?fieldManager=smtp-connector-merge`, JSON.stringify({ status: status(i + 1) })],
      ],
      [
        "event_post",
        (i) => [
          "POST",
          `/api/v1/namespaces/${namespace}/events`,
          JSON.stringify({
            apiVersion: "v1",
            kind: "Event",
            metadata: { generateName: `a${i}.`, namespace },
            involvedObject: { apiVersion: "smtpconnector.dev/v1alpha1", kind: "SupportAddress", name: `a${i}`, namespace },
            type: "Normal",
            reason: "DomainNotReady",
            message: "SmtpDomain d0 is not Ready",
            source: { component: "smtp-connector" },
            firstTimestamp: new Date().toISOString(),
            lastTimestamp: new Date().toISOString(),
            count: 1,
          }),
        ],
      ],
      ["get", (i) => ["GET", `${api}/a${i}`]],
    ];
    for (const [kind, make] of kinds) {
      const before = descendantCpuSeconds();
      const started = Date.now();
      await each(access, make);
      const cpu = descendantCpuSeconds() - before;
      console.error(`${kind}: ${count} requests in ${((Date.now() - started) / 1000).toFixed(1)} s, control plane ${cpu.toFixed(1)} s CPU`);
      console.log(`figure api_cpu_ms_per_${kind} ${((cpu * 1000) / count).toFixed(2)} ms`);
    }
  } finally {
    await plane.stop();
  }
}

await main();
