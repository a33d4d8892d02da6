// The cache that keeps DNS answers and relay reports between reconciles.
import assert from "node:assert/strict";
import { test } from "node:test";
import { TimedCache } from "../../operator/timed-cache.js";

test("an answer is reused within its lifetime, asked again after it, and a failure is never kept", async () => {
  const cache = new TimedCache<number>();
  let calls = 0;
  const load = () => Promise.resolve(++calls);
  assert.equal(await cache.get("k", 1_000, load, 0), 1);
  assert.equal(await cache.get("k", 1_000, load, 999), 1);
  assert.equal(await cache.get("k", 1_000, load, 1_000), 2);
  assert.equal(await cache.get("other", 1_000, load, 1_000), 3);
  await assert.rejects(cache.get("bad", 1_000, () => Promise.reject(new Error("down")), 0));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await cache.get("bad", 1_000, load, 1), 4, "the failure was not cached");
});
