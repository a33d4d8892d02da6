// When a reconcile the API server answered 429 is tried again: the backoff, or Retry-After when it asks for
// more (flow control says 1 s; an admission webhook's rate limit may say more), never past 30 s.
import assert from "node:assert/strict";
import { test } from "node:test";
import { maxRetryAfterMs, throttledRetryMs } from "../../operator/controller.js";

const now = Date.parse("2026-12-01T12:00:00Z");

test("without Retry-After, or a shorter one, the backoff: 1, 2, 4, 8, 16 s and up to a second of jitter", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((attempt) => throttledRetryMs(attempt, undefined, now, 0)),
    [1_000, 2_000, 4_000, 8_000, 16_000],
  );
  assert.equal(throttledRetryMs(3, "1", now, 0), 4_000, "flow control's Retry-After: 1 does not shorten the backoff");
  assert.equal(throttledRetryMs(1, undefined, now, 0.999), 1_999);
});

test("a longer Retry-After is waited for, as seconds or as an HTTP date, at most 30 s", () => {
  assert.equal(throttledRetryMs(1, "4", now, 0), 4_000);
  assert.equal(throttledRetryMs(2, " 7 ", now, 0.5), 7_500);
  assert.equal(throttledRetryMs(1, "Tue, 01 Dec 2026 12:00:09 GMT", now, 0), 9_000);
  assert.equal(throttledRetryMs(1, "3600", now, 0), maxRetryAfterMs);
  assert.equal(throttledRetryMs(1, "Wed, 02 Dec 2026 12:00:00 GMT", now, 0), maxRetryAfterMs);
  assert.equal(throttledRetryMs(1, "Tue, 01 Dec 2026 11:00:00 GMT", now, 0), 1_000, "a date passed: the backoff");
});

test("a malformed Retry-After is the backoff", () => {
  for (const value of ["", "soon", "-5", "1.5", "4s", "Tue, 01 Dec 2026 12:00:09", "0x10"])
    assert.equal(throttledRetryMs(2, value, now, 0), 2_000, JSON.stringify(value));
});
