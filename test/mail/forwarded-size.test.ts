// The forwarded listener's message size limit and memory budget, on raw
// sockets and from swaks. It holds each message whole until its checks are
// done (forwarded-session.ts), so what matters is what it holds: never more
// than limits.maxMessageBytes of one message (the rest of an oversized one is
// read and dropped), and never more than limits.forwardedMemoryBytes of all
// of them at once (then 452 4.3.1, which the sender's queue retries).
// A nameserver that never answers holds messages in their checks for the
// checks' budget, as a slow nameserver of a real sender would.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startDns, type TestDns } from "../support/dns.js";
import { freePort, swaks, tempDir } from "../support/mail.js";
import { RawSmtp, startRelay, type RelayHarness } from "../support/relay.js";
import { eventuallyTrue } from "../support/wait.js";

const customer = "customer.example";
const limit = 256 * 1024;
/** Two messages of the largest size fit, a third does not. */
const budget = 2 * limit + 64 * 1024;

/** A message of exactly `bytes` bytes as the relay counts them (what DATA carries before the final dot, dot-unstuffed). */
function messageOf(bytes: number, subject: string): string {
  const header = `From: someone@sender.example\r\nTo: support@${customer}\r\nSubject: ${subject}\r\n\r\n`;
  let body = "";
  const line = `${"x".repeat(998)}\r\n`;
  while (header.length + body.length + line.length <= bytes) body += line;
  const left = bytes - header.length - body.length;
  // The last line makes up the rest: at least its CRLF.
  if (left > 0) body += left >= 2 ? `${"y".repeat(left - 2)}\r\n` : "";
  const message = header + body;
  assert.equal(message.length, bytes);
  return message;
}

describe("the forwarded listener's size limit and memory budget", () => {
  let dns: TestDns;
  let h: RelayHarness;
  let port: number;

  before(async () => {
    dns = await startDns();
    port = await freePort();
    h = await startRelay({
      domains: [{ domain: customer, addresses: [`support@${customer}`], credentials: [] }],
      // 10 s next-hop budget: the checks (and so a message held by a silent nameserver) get 5 s.
      limits: { maxMessageBytes: limit, forwardedMemoryBytes: budget, nextHopTimeoutSeconds: 10 },
      configure: (config) => {
        config.listeners.forwarded = { port };
        config.domains[0]!.mode = "Forwarded";
        config.forwarded = { trustedArcSealers: [], dnsServers: [dns.address] };
      },
    });
  });
  after(async () => {
    await h?.stop();
    await dns?.stop();
  });

  const held = async () =>
    Number(
      /^smtpc_relay_forwarded_held_bytes (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text())?.[1] ?? NaN,
    );

  async function session(): Promise<RawSmtp> {
    const smtp = await RawSmtp.connect(port);
    assert.match(await smtp.reply(), /^220 /);
    assert.match(await smtp.command("EHLO probe.example"), /^250[ -]/);
    return smtp;
  }

  /** MAIL, RCPT and DATA; resolves once the relay said 354. */
  async function begin(smtp: RawSmtp, from = "someone@sender.example"): Promise<void> {
    assert.match(await smtp.command(`MAIL FROM:<${from}>`), /^250 /);
    assert.match(await smtp.command(`RCPT TO:<support@${customer}>`), /^250 /);
    assert.match(await smtp.command("DATA"), /^354 /);
  }

  const delivered = (subject: string) => h.sink.messages().some((m) => m.content.includes(`Subject: ${subject}`));

  test("SIZE is advertised with the limit, before and after STARTTLS", async () => {
    const smtp = await RawSmtp.connect(port);
    try {
      await smtp.reply();
      assert.match(await smtp.command("EHLO probe.example"), new RegExp(`^250[ -]SIZE ${limit}\\r?$`, "m"));
      await smtp.startTls();
      assert.match(await smtp.command("EHLO probe.example"), new RegExp(`^250[ -]SIZE ${limit}\\r?$`, "m"));
    } finally {
      smtp.close();
    }
  });

  test("MAIL FROM with a SIZE= over the limit gets 552 5.3.4; at the limit, 250", async () => {
    const smtp = await session();
    try {
      assert.match(
        await smtp.command(`MAIL FROM:<someone@sender.example> SIZE=${limit + 1}`),
        /^552 5\.3\.4 Message exceeds the maximum size of 262144 bytes/,
      );
      assert.match(await smtp.command(`MAIL FROM:<someone@sender.example> SIZE=${limit}`), /^250 /);
    } finally {
      smtp.close();
    }
  });

  test("a message of exactly the limit is delivered (swaks); one byte more gets 552 5.3.4 and is not", async () => {
    const dir = tempDir("forwarded-size");
    const file = join(dir, "at-limit.eml");
    // swaks ends the data with CRLF . CRLF itself: the file leaves out the last line's CRLF.
    writeFileSync(file, messageOf(limit, "at the limit").slice(0, -2));
    const sent = await swaks([
      "--server",
      `127.0.0.1:${port}`,
      "--from",
      "someone@sender.example",
      "--to",
      `support@${customer}`,
      "--data",
      `@${file}`,
      "--suppress-data",
    ]);
    assert.equal(sent.code, 0, sent.output);
    await eventuallyTrue("the message of the limit's size at the helpdesk", () => delivered("at the limit"), 10_000);

    const smtp = await session();
    try {
      await begin(smtp);
      smtp.write(`${messageOf(limit + 1, "one byte over")}.\r\n`);
      assert.match(await smtp.reply(), /^552 5\.3\.4 /);
    } finally {
      smtp.close();
    }
    assert.equal(delivered("one byte over"), false);
  });

  test("a DATA of three times the limit: 552 5.3.4 after the final dot, and the relay never held more than the limit of it", async () => {
    const smtp = await session();
    let most = 0;
    try {
      await begin(smtp);
      const message = Buffer.from(`${messageOf(3 * limit, "three times the limit")}.\r\n`);
      // Written in steps, each flushed to the relay's socket before the held bytes are read, so the reading
      // follows the message as it streams in.
      const step = 16 * 1024;
      for (let at = 0; at < message.length; at += step) {
        await smtp.flushed(message.subarray(at, at + step));
        most = Math.max(most, await held());
      }
      assert.match(await smtp.reply(), /^552 5\.3\.4 /);
    } finally {
      smtp.close();
    }
    assert.ok(most > 0, "the reading saw the message held while it streamed in");
    assert.ok(most <= limit, `held ${most} bytes of a message of ${3 * limit} (limit ${limit})`);
    await eventuallyTrue("nothing held after the 552", async () => (await held()) === 0, 5_000);
    assert.equal(delivered("three times the limit"), false);
  });

  test("forwards held at once share the memory budget: beyond it 452 4.3.1 (at MAIL for a declared SIZE=, else after the dot), and the budget is whole again after", async () => {
    dns.silent.add("slow.example");
    const holders: RawSmtp[] = [];
    try {
      // Two messages near the limit, from a sender whose nameserver never answers: each stays in its checks.
      const answers: Promise<string>[] = [];
      for (const i of [1, 2]) {
        const smtp = await session();
        holders.push(smtp);
        await begin(smtp, "someone@slow.example");
        smtp.write(`${messageOf(limit - 1024, `held ${i}`)}.\r\n`);
        answers.push(smtp.reply(20_000));
      }
      await eventuallyTrue("both messages held", async () => (await held()) >= 2 * (limit - 1024), 5_000);

      const third = await session();
      try {
        // What the budget has left is less than this: told before the sender sends it.
        assert.match(await third.command(`MAIL FROM:<someone@sender.example> SIZE=${limit - 1024}`), /^452 4\.3\.1 /);
        assert.match(await third.command("RSET"), /^250 /);
        await begin(third);
        third.write(`${messageOf(limit - 1024, "over the budget")}.\r\n`);
        assert.match(await third.reply(), /^452 4\.3\.1 Insufficient system storage/);
      } finally {
        third.close();
      }
      assert.ok((await held()) <= budget, "never more than the budget");
      for (const answer of answers) assert.match(await answer, /^451 4\.4\.3 /);
    } finally {
      for (const smtp of holders) smtp.close();
      dns.silent.delete("slow.example");
    }
    await eventuallyTrue("the budget whole again once the checks let go", async () => (await held()) === 0, 10_000);
    assert.equal(delivered("over the budget"), false);

    const smtp = await session();
    try {
      await begin(smtp);
      smtp.write(`${messageOf(limit - 1024, "after the budget freed")}.\r\n`);
      assert.match(await smtp.reply(), /^250 /);
    } finally {
      smtp.close();
    }
    await eventuallyTrue("the message at the helpdesk", () => delivered("after the budget freed"), 10_000);
  });
});
