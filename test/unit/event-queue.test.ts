// Events off the reconcile's path (operator/events.ts): a bounded queue drained by two writers, dropped and
// counted when full, an Event like one waiting counted on it, a per-object spam filter with a bounded memory,
// retries of a busy API server, a flush with a deadline and a close after it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EventQueue, type EventBody, type EventDrop } from "../../operator/events.js";

function event(name: string, reason = "Issued", type: "Normal" | "Warning" = "Normal", message = reason): EventBody {
  const at = "2026-12-01T12:00:00.000Z";
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { generateName: `${name}.`, namespace: "ns" },
    involvedObject: { apiVersion: "smtpconnector.dev/v1alpha1", kind: "SupportAddress", name, namespace: "ns", uid: `uid-${name}` },
    type,
    reason,
    message,
    source: { component: "smtp-connector" },
    reportingComponent: "smtpconnector.dev/operator",
    reportingInstance: "smtp-connector",
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
  };
}

/** A write the test lets finish, one at a time. */
function heldWrites() {
  const started: { event: EventBody; finish: (error?: Error) => void }[] = [];
  const write = (e: EventBody) =>
    new Promise<void>((resolve, reject) => started.push({ event: e, finish: (error) => (error ? reject(error) : resolve()) }));
  return { started, write };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test("add never waits for the API server; two writes at a time; every Event written in order", async () => {
  const { started, write } = heldWrites();
  const queue = new EventQueue(write);
  for (let i = 0; i < 5; i++) queue.add(event(`a${i}`));
  assert.equal(started.length, 2, "two writers");
  assert.equal(queue.depth, 3);
  const written: string[] = [];
  while (written.length < 5) {
    const next = started.shift();
    if (!next) {
      await tick();
      continue;
    }
    written.push(next.event.involvedObject.name);
    next.finish();
  }
  assert.deepEqual(written, ["a0", "a1", "a2", "a3", "a4"]);
  assert.equal(await queue.flush(1_000), true);
});

test("a full queue drops the Event and counts it, without blocking", () => {
  const drops: EventDrop[] = [];
  const queue = new EventQueue(heldWrites().write, { capacity: 3, writers: 1, onDrop: (why) => drops.push(why) });
  for (let i = 0; i < 6; i++) queue.add(event(`a${i}`));
  assert.equal(queue.depth, 3, "one being written, three waiting");
  assert.deepEqual(drops, ["QueueFull", "QueueFull"]);
});

test("full, a Warning takes the place of the oldest Normal waiting; a Warning finds no room among Warnings", () => {
  const drops: string[] = [];
  const queue = new EventQueue(heldWrites().write, { capacity: 3, writers: 1, onDrop: (why, e) => drops.push(`${why} ${e.reason}`) });
  queue.add(event("a0", "Writing"));
  queue.add(event("a1", "Issued"));
  queue.add(event("a2", "Ready"));
  queue.add(event("a3", "Verified"));
  assert.deepEqual(drops, []);
  queue.add(event("a4", "ReconcileFailed", "Warning"));
  assert.deepEqual(drops, ["QueueFull Issued"], "the oldest Normal waiting made room");
  queue.add(event("a5", "SecretModified", "Warning"));
  queue.add(event("a6", "DriftRepaired", "Warning"));
  assert.deepEqual(drops, ["QueueFull Issued", "QueueFull Ready", "QueueFull Verified"]);
  queue.add(event("a7", "Lockout", "Warning"));
  queue.add(event("a8", "Issued"));
  assert.deepEqual(drops.slice(3), ["QueueFull Lockout", "QueueFull Issued"], "only Warnings wait: nothing more has room");
  assert.equal(queue.depth, 3);
});

test("an Event the full queue has no room for spends none of its object's tokens", async () => {
  const drops: string[] = [];
  const { started, write } = heldWrites();
  const queue = new EventQueue(write, { capacity: 1, writers: 1, burst: 2, now: () => 0, onDrop: (why) => drops.push(why) });
  queue.add(event("filler"));
  queue.add(event("filler2"));
  for (let i = 0; i < 5; i++) queue.add(event("storm"));
  assert.deepEqual(drops, ["QueueFull", "QueueFull", "QueueFull", "QueueFull", "QueueFull"]);
  // Drained, the storm's object still has both its tokens: its next Event is written, not held back as spam.
  while (started.length > 0 || queue.depth > 0) {
    started.shift()?.finish();
    await tick();
  }
  queue.add(event("storm"));
  assert.equal(drops.length, 5);
  assert.equal(started.at(-1)?.event.involvedObject.name, "storm");
});

test("one object tells at most the burst at once, then one per refill period; others are not held back", () => {
  let now = 0;
  const drops: string[] = [];
  const queue = new EventQueue(() => Promise.resolve(), {
    burst: 25,
    refillMs: 300_000,
    now: () => now,
    onDrop: (why, e) => drops.push(`${why} ${e.involvedObject.name}`),
  });
  // Each told differently: the same Event again would be counted on the one waiting.
  for (let i = 0; i < 30; i++) queue.add(event("flapping", "Issued", "Normal", `version ${i}`));
  assert.equal(drops.length, 5);
  assert.ok(drops.every((d) => d === "Spam flapping"));
  queue.add(event("quiet"));
  assert.equal(drops.length, 5, "another object's Event passes");
  now += 299_000;
  queue.add(event("flapping", "Issued", "Normal", "version 30"));
  assert.equal(drops.length, 6, "not yet a token back");
  now += 1_000;
  queue.add(event("flapping", "Issued", "Normal", "version 31"));
  assert.equal(drops.length, 6, "one token back after 5 minutes");
});

test("a 429, a 5xx or no answer is tried again; a refusal is dropped and counted", async () => {
  const drops: EventDrop[] = [];
  const failure = (code: number | string) => Object.assign(new Error(`failed: ${code}`), { code });
  const answers: (Error | undefined)[] = [failure(429), failure(503), failure("ECONNRESET"), undefined, failure(422)];
  let calls = 0;
  const queue = new EventQueue(
    () => {
      const answer = answers[calls++];
      return answer ? Promise.reject(answer) : Promise.resolve();
    },
    { writers: 1, retryDelaysMs: [0, 0, 0], onDrop: (why) => drops.push(why) },
  );
  queue.add(event("a"));
  queue.add(event("b"));
  assert.equal(await queue.flush(5_000), true);
  assert.equal(calls, 5, "a: three transient failures then written; b: refused once");
  assert.deepEqual(drops, ["Failed"]);
});

test("flush waits for what is queued, and gives up at its deadline", async () => {
  const { started, write } = heldWrites();
  const queue = new EventQueue(write);
  queue.add(event("a"));
  assert.equal(await queue.flush(50), false, "the write still runs at the deadline");
  const flushed = queue.flush(5_000);
  started[0]!.finish();
  assert.equal(await flushed, true);
});

test("a creation storm of 10,000 objects, one Event each, is held while two writers are busy: none dropped", () => {
  const drops: EventDrop[] = [];
  const { started, write } = heldWrites();
  const queue = new EventQueue(write, { onDrop: (why) => drops.push(why) });
  for (let i = 0; i < 10_000; i++)
    queue.add(event(`a${i}`, "Ready", "Normal", "Ready=True: the address is connected and verified both ways"));
  assert.deepEqual(drops, [], "at 1,000 Events the old queue dropped the rest");
  assert.equal(started.length, 2);
  assert.equal(queue.depth, 9_998);
});

test("the queue is bounded in message characters too", () => {
  const drops: string[] = [];
  const queue = new EventQueue(heldWrites().write, {
    capacityCharacters: 250,
    writers: 1,
    onDrop: (why, e) => drops.push(`${why} ${e.involvedObject.name}`),
  });
  const long = "x".repeat(100);
  for (let i = 0; i < 4; i++) queue.add(event(`a${i}`, "Issued", "Normal", long));
  assert.deepEqual(drops, ["QueueFull a3"], "one being written, 200 characters waiting: no room for 100 more");
  queue.add(event("short", "Issued", "Normal", "y".repeat(50)));
  assert.equal(drops.length, 1, "50 more fit");
  // A Warning takes the place of as many of the oldest Normals as its message needs.
  queue.add(event("warn", "ReconcileFailed", "Warning", "z".repeat(200)));
  assert.deepEqual(drops.slice(1), ["QueueFull a1", "QueueFull a2"]);
  assert.equal(queue.depth, 2, "short and warn");
});

test("an Event like one waiting (object, type, reason, message) is counted on it; one being written is not changed", async () => {
  const drops: EventDrop[] = [];
  const { started, write } = heldWrites();
  const queue = new EventQueue(write, { writers: 1, capacity: 2, burst: 3, now: () => 0, onDrop: (why) => drops.push(why) });
  queue.add(event("a", "Failing", "Warning"));
  queue.add(event("a", "Failing", "Warning"));
  queue.add({ ...event("a", "Failing", "Warning"), lastTimestamp: "2026-12-01T12:00:05.000Z" });
  queue.add(event("a", "Failing", "Warning", "another message"));
  // Full (two waiting) and the object's three tokens spent: only counting on the one waiting still tells it.
  for (let i = 0; i < 5; i++) queue.add({ ...event("a", "Failing", "Warning"), lastTimestamp: "2026-12-01T12:00:10.000Z" });
  assert.deepEqual(drops, [], "neither QueueFull nor Spam");
  assert.equal(queue.depth, 2);
  while (started.length < 3) {
    started.at(-1)!.finish();
    await tick();
  }
  assert.deepEqual(
    started.map(({ event: e }) => [e.message, e.count, e.firstTimestamp, e.lastTimestamp]),
    [
      ["Failing", 1, "2026-12-01T12:00:00.000Z", "2026-12-01T12:00:00.000Z"],
      ["Failing", 7, "2026-12-01T12:00:00.000Z", "2026-12-01T12:00:10.000Z"],
      ["another message", 1, "2026-12-01T12:00:00.000Z", "2026-12-01T12:00:00.000Z"],
    ],
  );
  started.at(-1)!.finish();
  assert.equal(await queue.flush(1_000), true);
});

test("the spam filter keeps a bucket for at most spamFilterObjects objects, the least recently told let go first", () => {
  const drops: string[] = [];
  const queue = new EventQueue(() => Promise.resolve(), {
    burst: 1,
    spamFilterObjects: 3,
    now: () => 0,
    onDrop: (why, e) => drops.push(`${why} ${e.involvedObject.name}`),
  });
  queue.add(event("flapping", "Issued", "Normal", "1"));
  queue.add(event("a"));
  queue.add(event("b"));
  queue.add(event("flapping", "Issued", "Normal", "2"));
  assert.deepEqual(drops, ["Spam flapping"]);
  // Told again just now, flapping's bucket is the one kept while new objects come.
  queue.add(event("c"));
  queue.add(event("d"));
  queue.add(event("flapping", "Issued", "Normal", "3"));
  assert.deepEqual(drops, ["Spam flapping", "Spam flapping"]);
  assert.equal(queue.spamFilterSize, 3);
  // A storm of new objects: the old filter kept one bucket each until they had refilled (5 minutes) and 1,000 more were told.
  const storm = new EventQueue(() => Promise.resolve(), { now: () => 0 });
  for (let i = 0; i < 10_000; i++) storm.add(event(`s${i}`));
  assert.equal(storm.spamFilterSize, 4_096);
});

test("closed, the queue writes nothing more: what waits, what is told and a retry waiting are dropped (Closed), no timer left", async () => {
  const drops: string[] = [];
  let calls = 0;
  const queue = new EventQueue(
    () => {
      calls++;
      return Promise.reject(Object.assign(new Error("busy"), { code: 503 }));
    },
    { writers: 1, retryDelaysMs: [60_000], onDrop: (why, e) => drops.push(`${why} ${e.involvedObject.name}`) },
  );
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  const before = timers();
  queue.add(event("a"));
  queue.add(event("b"));
  await tick();
  assert.equal(calls, 1, "a failed once and waits a minute for its retry");
  assert.equal(timers(), before + 1);
  queue.close();
  queue.add(event("c"));
  await tick();
  assert.deepEqual(drops.sort(), ["Closed a", "Closed b", "Closed c"]);
  assert.equal(timers(), before, "the retry's timer is gone");
  assert.equal(await queue.flush(1_000), true);
  assert.equal(calls, 1, "a was not tried again");
  assert.equal(queue.unwritten, 0);
});

test("close without an onDrop ends (it took nothing out of the queue, and spun)", () => {
  const queue = new EventQueue(heldWrites().write, { capacity: 10, writers: 1 });
  for (let i = 0; i < 30; i++) queue.add(event(`c${i}`));
  queue.close();
  assert.equal(queue.depth, 0);
});

test("a Warning storm in a full queue takes the oldest Normals in order, wherever they wait and as writes move them", async () => {
  const writes = heldWrites();
  const drops: string[] = [];
  const queue = new EventQueue(writes.write, {
    capacity: 6,
    writers: 1,
    onDrop: (why, e) => drops.push(`${why} ${e.involvedObject.name}`),
  });
  queue.add(event("w0", "Failed", "Warning")); // being written
  for (const name of ["w1", "w2", "w3"]) queue.add(event(name, "Failed", "Warning"));
  for (const name of ["n1", "n2", "n3"]) queue.add(event(name));
  queue.add(event("w4", "Failed", "Warning"));
  assert.deepEqual(drops, ["QueueFull n1"]);
  // Two writes finish: the Warnings before the Normals move up, and two places free.
  writes.started[0]!.finish();
  await tick();
  writes.started[1]!.finish();
  await tick();
  for (const name of ["w5", "w6", "w7", "w8"]) queue.add(event(name, "Failed", "Warning"));
  assert.deepEqual(drops, ["QueueFull n1", "QueueFull n2", "QueueFull n3"], "the Normals, now nearer the head");
  queue.add(event("n4"));
  queue.add(event("w9", "Failed", "Warning"));
  assert.deepEqual(drops.slice(3), ["QueueFull n4", "QueueFull w9"], "full of Warnings: no room for either");
  writes.started[2]!.finish();
  await tick();
  queue.add(event("n5"));
  queue.add(event("w10", "Failed", "Warning"));
  assert.deepEqual(drops.slice(5), ["QueueFull n5"]);
  const written = writes.started.map((s) => s.event.involvedObject.name);
  assert.deepEqual(written, ["w0", "w1", "w2", "w3"]);
});
