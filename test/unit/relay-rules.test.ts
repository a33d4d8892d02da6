// The relay's pure rules: credentials, brute-force limits, address parsing.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { dotStuffed } from "../../relay/forward/smtp-client.js";
import { parseMailbox } from "../../relay/inbound/address.js";
import { CredentialStore } from "../../relay/inbound/credentials.js";
import { AuthThrottle, failureDelayMs, sourceOf } from "../../relay/inbound/throttle.js";
import type { DomainEntry } from "../../relay/contract/config.js";

const digest = (p: string) => createHash("sha256").update(p).digest("hex");

const domain: DomainEntry = {
  domain: "example.com",
  authProtocol: "PLAIN",
  addresses: ["support@example.com"],
  delivery: { smtp: { host: "127.0.0.1", port: 25, protocol: "SMTP", tls: "None" } },
  credentials: [
    { version: 1, username: "u1", passwordSha256: digest("p1"), state: "Active", expiresAt: "2026-01-01T00:00:00Z" },
    { version: 2, username: "u2", passwordSha256: digest("p2"), state: "Active" },
    { version: 3, username: "u3", passwordSha256: digest("p3"), state: "Revoked" },
  ],
};

describe("CredentialStore", () => {
  const store = new CredentialStore([domain]);
  const before = Date.parse("2025-12-31T00:00:00Z");
  const after = Date.parse("2026-01-02T00:00:00Z");

  test("accepts an active version and says which", () => {
    assert.deepEqual(store.check("u2", "p2"), { ok: true, domain: "example.com", version: 2, username: "u2" });
    assert.deepEqual(store.check("u1", "p1", before), { ok: true, domain: "example.com", version: 1, username: "u1" });
  });
  test("refuses unknown users, wrong passwords, revoked and expired versions", () => {
    assert.equal(store.check("nobody", "p2").ok, false);
    assert.deepEqual(store.check("nobody", "p2"), { ok: false, reason: "UnknownUser" });
    assert.deepEqual(store.check("u2", "p1"), { ok: false, reason: "WrongPassword", domain: "example.com", version: 2 });
    assert.deepEqual(store.check("u3", "p3"), { ok: false, reason: "Revoked", domain: "example.com", version: 3 });
    assert.deepEqual(store.check("u1", "p1", after), { ok: false, reason: "Expired", domain: "example.com", version: 1 });
  });
  test("a revoked version with a wrong password is just a wrong password", () => {
    assert.deepEqual(store.check("u3", "guess"), { ok: false, reason: "WrongPassword", domain: "example.com", version: 3 });
  });
});

describe("AuthThrottle", () => {
  test("locks a source out after the threshold, whatever the usernames, for the lockout period", () => {
    let now = 0;
    const throttle = new AuthThrottle({ threshold: 3, windowMs: 1000, lockoutMs: 5000 }, () => now);
    throttle.recordFailure("10.0.0.1", "alice");
    throttle.recordFailure("10.0.0.1", "bob");
    assert.equal(throttle.isLocked("10.0.0.1"), false);
    assert.deepEqual(throttle.recordFailure("10.0.0.1", "carol"), [{ scope: "Source", source: "10.0.0.1", until: 5000 }]);
    assert.equal(throttle.isLocked("10.0.0.1"), true, "the IP is locked out");
    assert.equal(throttle.isLocked("10.0.0.2", "alice"), false);
    now = 5001;
    assert.equal(throttle.isLocked("10.0.0.1"), false, "the lockout ends");
  });
  test("a username is never locked out across sources: only from the source that failed it", () => {
    const throttle = new AuthThrottle({ threshold: 10, usernameThreshold: 2, windowMs: 1000, lockoutMs: 5000 }, () => 0);
    throttle.recordFailure("10.0.0.1", "alice");
    throttle.recordFailure("10.0.0.2", "alice");
    assert.equal(throttle.isLocked("10.0.0.3", "alice"), false, "failures from elsewhere never lock the real client out");
    throttle.recordFailure("10.0.0.1", "alice");
    assert.equal(throttle.isLocked("10.0.0.1", "alice"), true);
    assert.equal(throttle.isLocked("10.0.0.1", "bob"), false);
    assert.equal(throttle.isLocked("10.0.0.2", "alice"), false);
  });
  test("IPv6 sources count per /64, IPv4-mapped ones as IPv4", () => {
    assert.equal(sourceOf("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert.equal(sourceOf("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
    assert.equal(sourceOf("2001:db8::1"), "2001:db8:0:0::/64");
    assert.equal(sourceOf("::1"), "0:0:0:0::/64");
    assert.equal(sourceOf("::ffff:192.0.2.7"), "192.0.2.7");
    assert.equal(sourceOf("192.0.2.7"), "192.0.2.7");
    const throttle = new AuthThrottle({ threshold: 2, windowMs: 1000, lockoutMs: 5000 }, () => 0);
    throttle.recordFailure("2001:db8:1:2::1");
    throttle.recordFailure("2001:db8:1:2::2");
    assert.equal(throttle.isLocked("2001:db8:1:2::ffff"), true);
    assert.equal(throttle.isLocked("2001:db8:1:3::1"), false);
  });
  test("failures outside the window do not count", () => {
    let now = 0;
    const throttle = new AuthThrottle({ threshold: 2, windowMs: 1000, lockoutMs: 5000 }, () => now);
    throttle.recordFailure("10.0.0.1");
    now = 1500;
    throttle.recordFailure("10.0.0.1");
    assert.equal(throttle.isLocked("10.0.0.1"), false);
  });
  test("memory stays bounded under a spray of source addresses", () => {
    const throttle = new AuthThrottle({ threshold: 5, windowMs: 1000, lockoutMs: 5000, maxKeys: 100 }, () => 0);
    for (let i = 0; i < 10_000; i++) throttle.recordFailure(`10.0.${i >> 8}.${i & 255}`);
    assert.ok((throttle as unknown as { failures: Map<string, unknown> }).failures.size <= 100);
  });
  test("the per-session delay doubles and is capped", () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => failureDelayMs(250, n)),
      [250, 500, 1000, 2000],
    );
    assert.equal(failureDelayMs(1000, 20), 30_000);
  });
});

describe("parseMailbox", () => {
  const ok = (raw: string) => {
    const result = parseMailbox(raw);
    assert.ok(result.ok, `${raw} should parse`);
    return result.mailbox.address;
  };
  const problem = (raw: string) => {
    const result = parseMailbox(raw);
    assert.ok(!result.ok, `${raw} should be refused`);
    return result.problem;
  };
  test("canonicalises case", () => {
    assert.equal(ok("Support@Example.COM"), "support@example.com");
    assert.equal(ok("first.last+tag@sub.example.com"), "first.last+tag@sub.example.com");
  });
  test("refuses every shape that routes differently from how it reads", () => {
    assert.equal(problem('"support@example.com"@evil.org'), "Quoted");
    assert.equal(problem("support%evil.org@example.com"), "RoutingCharacter");
    assert.equal(problem("evil.org!support@example.com"), "RoutingCharacter");
    assert.equal(problem("@example.com:support@evil.org"), "SourceRoute");
    assert.equal(problem("support@[192.0.2.1]"), "AddressLiteral");
    assert.equal(problem("support@example.com."), "Malformed");
    assert.equal(problem("support@@example.com"), "Malformed");
    assert.equal(problem("a@b@example.com"), "Malformed");
    assert.equal(problem(".support@example.com"), "Malformed");
    assert.equal(problem("support..x@example.com"), "Malformed");
    assert.equal(problem("support@localhost"), "Malformed");
    assert.equal(problem("süpport@example.com"), "Malformed");
    assert.equal(problem(""), "Empty");
  });
});

describe("dotStuffed", () => {
  const stuff = (chunks: string[]) => {
    let lineStart = true;
    return chunks
      .map((chunk) => {
        const out = dotStuffed(Buffer.from(chunk), lineStart).toString();
        if (chunk.length > 0) lineStart = chunk.endsWith("\n");
        return out;
      })
      .join("");
  };

  test("doubles a dot that starts a line, wherever the chunk boundaries fall", () => {
    const message = ".first\r\nmiddle.\r\n.\r\n..two\r\nend\r\n.";
    const expected = "..first\r\nmiddle.\r\n..\r\n...two\r\nend\r\n..";
    for (let cut = 0; cut <= message.length; cut++) {
      assert.equal(stuff([message.slice(0, cut), message.slice(cut)]), expected, `cut at ${cut}`);
    }
    assert.equal(stuff([...message]), expected, "one byte at a time");
  });

  test("returns a chunk without line-leading dots as it is, not a copy", () => {
    const chunk = Buffer.from("a.b\r\nc.\r\n");
    assert.equal(dotStuffed(chunk, true), chunk);
    assert.equal(dotStuffed(Buffer.from(".x"), false).toString(), ".x", "a dot in the middle of a line split across chunks");
  });
});
