// `bash hack/node.sh --import tsx bench/event-queue-heap.ts`: the heap 10,000 Events waiting keep, told as an
// address's reconcile tells its Ready Event during bench:operator's creation storm, kept as the queue keeps them now
// (what an Event says, operator/events.ts' EventQueue with its index and spam filter) and as whole Event bodies in
// an array (the queue before, without its spam filter's buckets).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { EventQueue } from "../operator/events.js";
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const n = 10_000;
const objects = Array.from({ length: n }, (_, i) => ({ name: `d0-a${i}`, namespace: `bench-0-${i % 200}`, uid: crypto.randomUUID() }));
const condition = { type: "Ready", status: "True", message: "the address is connected and verified both ways" };

function told(object: (typeof objects)[number]) {
  const now = new Date().toISOString();
  return {
    involvedObject: { apiVersion: "smtpconnector.dev/v1alpha1", kind: "SupportAddress", ...object },
    type: "Normal" as const,
    reason: "Ready",
    message: `${condition.type}=${condition.status}: ${condition.message}`.slice(0, 1024),
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

function perEvent(keep: () => unknown): number {
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept = keep();
  gc();
  gc();
  const bytes = (process.memoryUsage().heapUsed - before) / n;
  if (!kept) throw new Error("nothing kept");
  return bytes;
}

const queued = perEvent(() => {
  // Writes that never finish: every Event waits (two are being written).
  const queue = new EventQueue(() => new Promise<void>(() => undefined));
  for (const object of objects) queue.add(told(object));
  return queue;
});
const bodies = perEvent(() =>
  objects.map((object) => ({
    apiVersion: "v1",
    kind: "Event",
    metadata: { generateName: `${object.name}.`, namespace: object.namespace },
    ...told(object),
    source: { component: "smtp-connector" },
    reportingComponent: "smtpconnector.dev/operator",
    reportingInstance: "smtp-connector",
  })),
);
console.log(`queued as the EventQueue keeps them: ${queued.toFixed(0)} bytes per Event`);
console.log(`as whole Event bodies: ${bodies.toFixed(0)} bytes per Event`);
