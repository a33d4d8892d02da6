// The relay host name rule (operator/domain/hostname-claims.ts): one name, one
// SmtpDomain in the whole cluster; the oldest lister wins, a default relay
// host name always belongs to its domain, and the loser is told without
// naming another account.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { claimedHostnames, conflictMessage, judgeHostnames } from "../../operator/domain/hostname-claims.js";

const suffix = "relay.example.net";

function domain(
  namespace: string,
  name: string,
  created: string,
  hostnames?: string[],
  extra: Partial<SmtpDomain["metadata"]> = {},
): SmtpDomain {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { namespace, name, creationTimestamp: created, uid: `${namespace}-${name}`, ...extra },
    spec: {
      domain: `${name}.test`,
      inbound: { delivery: { smtp: { host: "ingest", port: 25 } } },
      ...(hostnames ? { relay: { hostnames } } : {}),
    },
  };
}

const lost = (verdicts: ReturnType<typeof judgeHostnames>, key: string) =>
  (verdicts.get(key) ?? []).map((c) => `${c.hostname} ${c.holder.namespace}/${c.holder.name} ${c.why}`);

describe("relay host names: one SmtpDomain each", () => {
  test("the oldest domain listing a name has it, in any namespace; the later ones lose only that name", () => {
    const first = domain("team-a", "mail", "2026-01-01T00:00:00Z", ["relay.shared.test"]);
    const second = domain("team-b", "mail", "2026-01-02T00:00:00Z", ["relay.shared.test", "own.team-b.test"]);
    const third = domain("team-a", "other", "2026-01-03T00:00:00Z", ["relay.shared.test"]);
    // Whatever order the cache lists them in.
    for (const order of [
      [first, second, third],
      [third, second, first],
      [second, third, first],
    ]) {
      const verdicts = judgeHostnames(order, suffix);
      assert.equal(verdicts.has("team-a/mail"), false, "the oldest keeps it");
      assert.deepEqual(lost(verdicts, "team-b/mail"), ["relay.shared.test team-a/mail Earlier"]);
      assert.deepEqual(lost(verdicts, "team-a/other"), ["relay.shared.test team-a/mail Earlier"]);
    }
  });

  test("when the holder is gone or drops the name, the next oldest has it", () => {
    const second = domain("team-b", "mail", "2026-01-02T00:00:00Z", ["relay.shared.test"]);
    const third = domain("team-c", "mail", "2026-01-03T00:00:00Z", ["relay.shared.test"]);
    const dropped = domain("team-a", "mail", "2026-01-01T00:00:00Z", ["elsewhere.test"]);
    for (const world of [
      [second, third],
      [dropped, second, third],
    ]) {
      const verdicts = judgeHostnames(world, suffix);
      assert.equal(verdicts.has("team-b/mail"), false);
      assert.deepEqual(lost(verdicts, "team-c/mail"), ["relay.shared.test team-b/mail Earlier"]);
    }
  });

  test("a domain being deleted keeps its names until it is gone", () => {
    const leaving = domain("team-a", "mail", "2026-01-01T00:00:00Z", ["relay.shared.test"], { deletionTimestamp: "2026-02-01T00:00:00Z" });
    const waiting = domain("team-b", "mail", "2026-01-02T00:00:00Z", ["relay.shared.test"]);
    assert.deepEqual(lost(judgeHostnames([leaving, waiting], suffix), "team-b/mail"), ["relay.shared.test team-a/mail Earlier"]);
  });

  test("equal creation times (one-second resolution) are decided by namespace/name, the same way every time", () => {
    const at = "2026-01-01T00:00:00Z";
    const a = domain("team-a", "mail", at, ["relay.shared.test"]);
    const b = domain("team-b", "mail", at, ["relay.shared.test"]);
    // "team-a-x" sorts after "team-a" but before "team-b" by code point, whatever the locale says of "-".
    const ax = domain("team-a-x", "mail", at, ["relay.shared.test"]);
    for (const order of [
      [a, b, ax],
      [b, ax, a],
    ]) {
      const verdicts = judgeHostnames(order, suffix);
      assert.equal(verdicts.has("team-a/mail"), false);
      assert.deepEqual(lost(verdicts, "team-a-x/mail"), ["relay.shared.test team-a/mail Earlier"]);
      assert.deepEqual(lost(verdicts, "team-b/mail"), ["relay.shared.test team-a/mail Earlier"]);
    }
  });

  test("another domain's default relay host name is its own, even against an older domain that lists it", () => {
    const squatter = domain("team-a", "early", "2026-01-01T00:00:00Z", ["mail.team-b.relay.example.net", "early.team-a.relay.example.net"]);
    const owner = domain("team-b", "mail", "2026-03-01T00:00:00Z");
    const verdicts = judgeHostnames([squatter, owner], suffix);
    assert.equal(verdicts.has("team-b/mail"), false, "the default name's domain keeps it");
    // Listing one's own default name is no conflict.
    assert.deepEqual(lost(verdicts, "team-a/early"), ["mail.team-b.relay.example.net team-b/mail DefaultName"]);
    // Also while the owner lists names of its own (it does not use its default, nobody else gets it).
    const withNames = domain("team-b", "mail", "2026-03-01T00:00:00Z", ["mx.team-b.test"]);
    assert.deepEqual(lost(judgeHostnames([squatter, withNames], suffix), "team-a/early"), [
      "mail.team-b.relay.example.net team-b/mail DefaultName",
    ]);
    // Before that domain exists, the name is free.
    assert.equal(judgeHostnames([squatter], suffix).size, 0);
  });

  test("names compare case-insensitively, and a domain claims its default name and its listed ones", () => {
    const a = domain("team-a", "mail", "2026-01-01T00:00:00Z", ["Relay.Shared.Test"]);
    const b = domain("team-b", "mail", "2026-01-02T00:00:00Z", ["relay.shared.test"]);
    assert.deepEqual(lost(judgeHostnames([a, b], suffix), "team-b/mail"), ["relay.shared.test team-a/mail Earlier"]);
    assert.deepEqual(claimedHostnames(a, suffix), ["mail.team-a.relay.example.net", "relay.shared.test"]);
  });

  test("the loser's message names a holder of its own namespace, never another namespace's", () => {
    const a = domain("team-a", "mail", "2026-01-01T00:00:00Z", ["relay.shared.test"]);
    const b = domain("team-b", "secret-project", "2026-01-02T00:00:00Z", ["relay.other.test"]);
    const sameAccount = domain("team-b", "late", "2026-01-03T00:00:00Z", ["relay.other.test"]);
    const otherAccount = domain("team-b", "later", "2026-01-04T00:00:00Z", ["relay.shared.test"]);
    const verdicts = judgeHostnames([a, b, sameAccount, otherAccount], suffix);
    const own = conflictMessage(sameAccount, verdicts.get("team-b/late")!);
    assert.match(own, /relay\.other\.test belongs to SmtpDomain secret-project, which listed it earlier/);
    const foreign = conflictMessage(otherAccount, verdicts.get("team-b/later")!);
    assert.match(foreign, /relay\.shared\.test belongs to an SmtpDomain in another namespace/);
    assert.doesNotMatch(foreign, /team-a|\bmail\b/, "another account's namespace and domain stay unnamed");
    assert.match(foreign, /left out of this relay's certificate/);
  });
});
