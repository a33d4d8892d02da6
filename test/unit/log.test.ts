// The JSON log line the relay and the operator write (lib/log.ts).
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { createLogger } from "../../lib/log.js";

function captured(level = "info") {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk: Buffer) => (text += chunk.toString()));
  return { log: createLogger("relay", { level, stream }), lines: () => text.split("\n").filter(Boolean) };
}

test("a line is one JSON object: when, level and what first, then the component and the fields, secret-named fields blanked", () => {
  const { log, lines } = captured();
  log.info("message delivered", { session: "s1", bytes: 10321, password: "hunter2", apiKey: "k", nested: { domain: "example.com" } });
  log.debug("not at info");
  const [line, ...rest] = lines();
  assert.equal(rest.length, 0, "a disabled level writes nothing");
  const entry = JSON.parse(line!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(entry), ["timestamp", "level", "message", "component", "session", "bytes", "password", "apiKey", "nested"]);
  assert.ok(!Number.isNaN(Date.parse(entry.timestamp as string)));
  assert.deepEqual(
    { ...entry, timestamp: undefined },
    {
      timestamp: undefined,
      level: "info",
      message: "message delivered",
      component: "relay",
      session: "s1",
      bytes: 10321,
      password: "[redacted]",
      apiKey: "[redacted]",
      nested: { domain: "example.com" },
    },
  );
  assert.ok(!line!.includes("hunter2"));
});

test("a value JSON cannot carry (a BigInt, a cycle) still makes a line", () => {
  const { log, lines } = captured();
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  const shared = { domain: "example.com" };
  log.warn("odd fields", { big: 10n, cycle, first: shared, second: shared });
  const entry = JSON.parse(lines()[0]!) as Record<string, unknown>;
  assert.equal(entry.big, "10");
  assert.deepEqual(entry.cycle, { a: 1, self: "[Circular]" });
  // Named twice is not a cycle.
  assert.deepEqual(entry.second, { domain: "example.com" });
});
