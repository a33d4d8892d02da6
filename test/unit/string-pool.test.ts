// The informers' string pool (operator/kube/intern.ts): cached objects share one copy of each repeated text.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { StringPool } from "../../operator/kube/intern.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** An address as the API server sends it: every object parsed from its own text, as a list page or a watch event is. */
function parsedAddress(i: number, message: string): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { name: `a${i}`, namespace: "helpdesk-one", uid: `uid-${i}`, resourceVersion: String(1000 + i) },
      spec: { address: `support-${i}@helpdesk-one.example`, domainRef: { name: "d0" } },
      status: {
        conditions: [
          { type: "DomainReady", status: "False", reason: "DomainNotReady", message, lastTransitionTime: "2026-12-01T23:00:00Z" },
        ],
      },
    }),
  ) as Record<string, unknown>;
}

/** Heap bytes that `make()`'s result keeps alive, after full collections. */
function retained(make: () => unknown): { bytes: number; kept: unknown } {
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept = make();
  gc();
  gc();
  return { bytes: process.memoryUsage().heapUsed - before, kept };
}

describe("StringPool", () => {
  test("2,000 cached objects with one 1 KB condition message keep one copy of it, not 2,000", () => {
    const message = `SmtpDomain d0 is not Ready: ${"the relay has no ready pod; ".repeat(80)}`.slice(0, 1_000);
    const count = 2_000;
    const separate = retained(() => Array.from({ length: count }, (_, i) => parsedAddress(i, message)));
    const pool = new StringPool();
    const shared = retained(() => Array.from({ length: count }, (_, i) => pool.intern(parsedAddress(i, message))));
    // Each object's own copy of the message (1,000 one-byte characters) is what the pool saves.
    assert.ok(
      separate.bytes - shared.bytes > count * 700,
      `interned ${shared.bytes} bytes, not interned ${separate.bytes}: not ~${count} KB fewer`,
    );
    assert.equal(((shared.kept as Record<string, any>[])[1]!.status.conditions[0] as { message: string }).message, message);
    assert.ok(separate.kept && shared.kept);
  });

  test("values are kept as they were, at any depth; uid, resourceVersion and address (one per object) stay out of the pool", () => {
    const pool = new StringPool();
    const objects = Array.from({ length: 500 }, (_, i) => parsedAddress(i, "SmtpDomain d0 is not Ready"));
    const copies = structuredClone(objects);
    for (const o of objects) pool.intern(o);
    assert.deepEqual(objects, copies);
    // apiVersion, kind, namespace, the domain's name, the condition's five texts, and the 500 names: no uid,
    // resourceVersion or address.
    assert.equal(pool.size, 9 + 500);
  });

  test("never holds more than its bound: past it the pool starts again", () => {
    const pool = new StringPool(100);
    for (let i = 0; i < 1_000; i++) pool.intern({ message: `attempt ${i} failed` });
    assert.ok(pool.size <= 100, `${pool.size} strings held`);
    const held = pool.size;
    pool.intern({ certificate: "x".repeat(2_000) });
    assert.equal(pool.size, held, "a string over maxLength is not pooled");
  });

  test("never holds more than 2,000,000 characters: objects with long distinct texts, made and deleted, leave at most that", () => {
    const pool = new StringPool();
    // 20,000 objects (the entry bound) each with its own 1 KB annotation, as a tenant making and deleting
    // SupportAddresses could send: none of them is kept, only what the pool holds of them.
    const { bytes } = retained(() => {
      for (let i = 0; i < 20_000; i++) {
        const text = JSON.stringify({ metadata: { annotations: { note: `${i} ${"x".repeat(1_000)}` } } });
        pool.intern(JSON.parse(text) as unknown);
      }
    });
    // One-byte strings: ~2 MB of characters and their headers, not the 20 MB the entry bound alone allowed.
    assert.ok(bytes < 6 * 2 ** 20, `${(bytes / 2 ** 20).toFixed(1)} MiB kept by the pool`);
    assert.ok(pool.characters <= 2_000_000, `${pool.characters} characters held`);
    assert.ok(pool.resets >= 9, `${pool.resets} resets`);
  });
});
