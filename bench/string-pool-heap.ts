// `bash hack/node.sh --import tsx bench/string-pool-heap.ts`: the heap 10,000 cached SupportAddresses keep, each
// parsed from its own JSON text as a list page or watch event is, shaped as bench:operator's addresses are while they
// wait for their domain (five conditions), without and with the informers' StringPool (operator/kube/intern.ts).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { StringPool } from "../operator/kube/intern.js";
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const cond = (type: string, status: string, reason: string, message: string, t: string) => ({
  type,
  status,
  reason,
  message,
  observedGeneration: 1,
  lastTransitionTime: t,
});
function text(n: number, a: number): string {
  const ns = `bench-0-${n}`,
    t = `2026-12-01T23:${String(10 + (n % 40)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}Z`;
  const domainMsg = `SmtpDomain d0 is not Ready: the relay Deployment d0-relay has no available replica yet (0 of 1 ready)`;
  return JSON.stringify({
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SupportAddress",
    metadata: {
      name: `d0-a${a}`,
      namespace: ns,
      uid: `5f0c${n}-${a}-4e2b-9d7a-${Math.random().toString(16).slice(2, 14)}`,
      resourceVersion: String(100000 + n * 50 + a),
      generation: 1,
      creationTimestamp: t,
    },
    spec: {
      address: `a${a}@d0.${ns}.example`,
      domainRef: { name: "d0" },
      outbound: { host: "smtp.example.com", port: 587, tls: "StartTLS", credentialsSecretRef: { name: "outbound" } },
    },
    status: {
      observedGeneration: 1,
      conditions: [
        cond("DomainReady", "False", "DomainNotReady", domainMsg, t),
        cond("InboundVerified", "Unknown", "VerificationPending", "no verification has completed yet", t),
        cond("OutboundVerified", "Unknown", "VerificationPending", "no verification has completed yet", t),
        cond("Ready", "False", "DomainNotReady", domainMsg, t),
        cond("Reconciling", "True", "Progressing", domainMsg, t),
      ],
    },
  });
}
function measure(pool?: StringPool): number {
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept: unknown[] = [];
  for (let n = 0; n < 200; n++)
    for (let a = 0; a < 50; a++) {
      const o = JSON.parse(text(n, a));
      kept.push(pool ? pool.intern(o) : o);
    }
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  // Still referenced here, so the collection above could not take them.
  if (kept.length !== 10_000) throw new Error(`${kept.length} objects made`);
  return (after - before) / 2 ** 20;
}
const plain = measure();
const pool = new StringPool();
const pooled = measure(pool);
console.log(`figure string_pool_heap_plain_mb ${plain.toFixed(1)} MB`);
console.log(`figure string_pool_heap_pooled_mb ${pooled.toFixed(1)} MB`);
console.error(`10,000 addresses cached: ${plain.toFixed(1)} MB plain, ${pooled.toFixed(1)} MB with the pool (${pool.size} strings pooled)`);
