// Adversarial input, seeded so any failure can be replayed (SMTPC_FUZZ_SEED):
// - the relay's config parser gets thousands of mutated configs and garbage:
//   it either accepts a config that passes its schema, or throws ConfigError
//   with problems — never anything else;
// - the relay's SMTP listeners get mutated, pipelined, oversized, binary and
//   half-open sessions, with and without TLS and AUTH: the relay stays up and
//   healthy, and nothing reaches the next hop without an authenticated session.
import assert from "node:assert/strict";
import { Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, test } from "node:test";
import { stringify } from "yaml";
import { ConfigError, parseConfig } from "../../relay/contract/config-parser.js";
import { randomPassword, relayConfig, selfSignedCertificate, tempDir } from "../support/mail.js";
import { RawSmtp, startRelay, type RelayHarness } from "../support/relay.js";
import { recordFigures } from "./figures.js";

// Fixed in `npm test` (reproducible CI); `npm run test:faults` draws a new one each run.
const seed = Number(process.env.SMTPC_FUZZ_SEED ?? 20261125);

/** A small deterministic PRNG (mulberry32). */
function prng(start: number) {
  let a = start >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
  };
}

describe(`fuzzing (seed ${seed})`, () => {
  test("the config parser accepts valid configs and refuses everything else with ConfigError", async () => {
    const r = prng(seed);
    const dir = tempDir("fuzz-config");
    const base = await relayConfig({
      dir,
      tls: await selfSignedCertificate(dir),
      sinkPort: 2525,
      domains: [{ domain: "example.com", addresses: ["support@example.com"], credentials: [{ version: 1, username: "u", password: "p" }] }],
    });
    const weird: unknown[] = [
      null,
      -1,
      0,
      1e309,
      2 ** 53,
      "",
      "x".repeat(5000),
      "\u0000",
      "../../etc/passwd",
      true,
      [],
      {},
      [1, "a"],
      { a: { b: { c: 1 } } },
      "*",
      "1h",
      "TLSv1.0",
      "ftp://x",
      "example.com\r\nBcc: x",
    ];
    let accepted = 0;
    let refused = 0;
    const iterations = 3000;
    for (let i = 0; i < iterations; i++) {
      const config = structuredClone(base) as unknown as Record<string, unknown>;
      // Mutate 1-4 places: replace a value, delete a key, or add an unknown one.
      for (let m = 0, n = 1 + r.int(4); m < n; m++) {
        const path: (string | number)[] = [];
        let node: unknown = config;
        while (node && typeof node === "object" && r.next() < 0.7) {
          const keys = Object.keys(node);
          if (keys.length === 0) break;
          const key = r.pick(keys);
          path.push(Array.isArray(node) ? Number(key) : key);
          node = (node as Record<string, unknown>)[key];
        }
        if (path.length === 0) continue;
        const parent = path.slice(0, -1).reduce<unknown>((o, k) => (o as Record<string | number, unknown> | null)?.[k], config);
        if (!parent || typeof parent !== "object") continue;
        const target = parent as Record<string | number, unknown>;
        const last = path.at(-1)!;
        const action = r.int(3);
        // Copies: the odd values themselves are never mutated by a later step.
        if (action === 0) target[last] = structuredClone(r.pick(weird));
        else if (action === 1) delete target[last];
        else target[`unknown${r.int(3)}`] = structuredClone(r.pick(weird));
      }
      const text = r.next() < 0.05 ? String.fromCharCode(...Array.from({ length: r.int(200) }, () => r.int(256))) : stringify(config);
      try {
        parseConfig(text);
        accepted++;
      } catch (error) {
        assert.ok(error instanceof ConfigError, `iteration ${i} threw ${String(error)} for:\n${text.slice(0, 2000)}`);
        assert.ok(error.problems.length > 0);
        refused++;
      }
    }
    assert.equal(accepted + refused, iterations);
    recordFigures("fuzz-config", {
      scenario: `${iterations} relay configs, each a valid one with 1-4 random mutations (values replaced by odd ones, keys deleted, unknown keys added) or random bytes (seed ${seed}).`,
      figures: { configs: iterations, "accepted (still valid)": accepted, "refused with ConfigError": refused, "any other exception": 0 },
    });
  });

  describe("SMTP input", () => {
    let h: RelayHarness;
    const password = randomPassword();
    before(async () => {
      h = await startRelay({
        domains: [
          {
            domain: "example.com",
            addresses: ["support@example.com"],
            credentials: [{ version: 1, username: "example.com-v1", password }],
          },
        ],
        limits: { idleTimeoutSeconds: 2, maxLineBytes: 1000 },
        authFailures: { perConnection: 3, delayMs: 1, lockoutThreshold: 100_000, lockoutWindowSeconds: 1, lockoutSeconds: 1 },
      });
    });
    after(() => h.stop());

    test("mutated, pipelined, oversized and binary sessions never crash the relay or get mail in unauthenticated", async () => {
      const r = prng(seed + 1);
      const verbs = [
        "EHLO x",
        "HELO x",
        "MAIL FROM:<a@b.c>",
        "RCPT TO:<support@example.com>",
        "RCPT TO:<x@elsewhere.test>",
        "DATA",
        "BDAT 10 LAST",
        "AUTH PLAIN",
        "AUTH LOGIN",
        "AUTH CRAM-MD5",
        "STARTTLS",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY support",
        "EXPN all",
        "XCLIENT ADDR=1.2.3.4",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
        "MAIL FROM:<>",
        'RCPT TO:<"a b"@example.com>',
        "RCPT TO:<@evil.test:support@example.com>",
        "MAIL FROM:<a@b.c> SIZE=99999999999",
      ];
      const junk = () => {
        const kind = r.int(6);
        if (kind === 0) return Buffer.from(Array.from({ length: 1 + r.int(3000) }, () => r.int(256)));
        if (kind === 1) return Buffer.from(`${r.pick(verbs)} ${"A".repeat(r.int(5000))}\r\n`);
        if (kind === 2) return Buffer.from(`${r.pick(verbs)}${r.pick(["\n", "\r", "\r\n", "\r\r\n", "\0\r\n"])}`);
        if (kind === 3) return Buffer.from(`${Array.from({ length: 1 + r.int(20) }, () => r.pick(verbs)).join("\r\n")}\r\n`);
        if (kind === 4) return Buffer.from(`Subject: x\r\n\r\nline\n.\nmore\r.\r${r.pick(["\r\n.\r\n", "\n.\n", "\r\n.\n", "\n.\r\n"])}`);
        return Buffer.from(`AUTH PLAIN ${Buffer.from(`\0example.com-v1\0${r.next() < 0.5 ? password : "wrong"}`).toString("base64")}\r\n`);
      };
      const session = (tls: boolean) =>
        new Promise<void>((resolve) => {
          const socket = tls
            ? tlsConnect({ host: "127.0.0.1", port: h.implicitPort, rejectUnauthorized: false })
            : new Socket().connect(h.starttlsPort, "127.0.0.1");
          socket.on("error", () => resolve());
          socket.on("close", () => resolve());
          socket.on("data", () => undefined);
          socket.setTimeout(5_000, () => socket.destroy());
          socket.once(tls ? "secureConnect" : "connect", () => {
            const writes = 1 + r.int(12);
            let i = 0;
            const step = () => {
              if (socket.destroyed) return;
              if (i++ >= writes) {
                // Sometimes hang up abruptly, sometimes politely, sometimes leave it half-open for the idle timeout.
                const end = r.int(3);
                if (end === 0) socket.destroy();
                else if (end === 1) socket.end("QUIT\r\n");
                return;
              }
              socket.write(junk());
              setTimeout(step, r.int(20));
            };
            step();
          });
        });
      const sessions = 400;
      const before = h.sink.messages().length;
      for (let batch = 0; batch < sessions / 20; batch++) {
        await Promise.all(Array.from({ length: 20 }, () => session(r.next() < 0.5)));
      }
      const health = await fetch(`http://127.0.0.1:${h.healthPort}/readyz`);
      assert.equal(health.status, 200, "the relay is up and ready after the fuzzing");
      // Whatever got through was sent in an authenticated session: it carries the trust tag.
      const arrived = h.sink.messages().slice(before);
      for (const m of arrived) assert.match(m.content, /X-SmtpConnector-Auth: domain=example\.com; version=1/);
      // And the relay still relays a normal message.
      const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
      assert.match(await client.reply(), /^220 /);
      await client.command("EHLO ok");
      assert.match(await client.authPlain("example.com-v1", password), /^235 /);
      await client.command("MAIL FROM:<a@b.c>");
      await client.command("RCPT TO:<support@example.com>");
      await client.command("DATA");
      const ok = await client.command("Subject: after fuzzing\r\n\r\nbody\r\n.");
      client.close();
      assert.match(ok, /^250 2\.0\.0 /);
      assert.ok(h.sink.messages().some((m) => m.content.includes("Subject: after fuzzing")));
      recordFigures("fuzz-smtp", {
        scenario: `${sessions} sessions of mutated, pipelined, oversized and binary SMTP input (half with implicit TLS), random AUTH with right and wrong passwords, dot-stuffing and line-ending variants, abrupt, polite and half-open endings (seed ${seed}).`,
        figures: { sessions, "relay ready afterwards": "yes", "messages through, all authenticated": arrived.length },
      });
    });
  });
});
