// What must not get through, and what a failing next hop becomes: each rule
// of the inbound relay against real peers (smtp-sink and its fault modes).
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { connect } from "node:tls";
import { randomPassword, swaksAuth } from "../support/mail.js";
import { exampleDomain, RawSmtp, startRelay, type RelayHarness } from "../support/relay.js";

const password = randomPassword();
const user = "example.com-v1";

/** An authenticated session over implicit TLS, ready for MAIL FROM. */
async function session(h: RelayHarness, pass = password): Promise<RawSmtp> {
  const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
  assert.match(await client.reply(), /^220 /);
  await client.command("EHLO client.test");
  assert.match(await client.authPlain(user, pass), /^235 /);
  return client;
}

/** Sends one message as raw bytes after DATA and returns the final reply. */
async function sendRaw(h: RelayHarness, body: string | Buffer): Promise<string> {
  const client = await session(h);
  assert.match(await client.command("MAIL FROM:<customer@users.example.org>"), /^250 /);
  assert.match(await client.command("RCPT TO:<support@example.com>"), /^250 /);
  assert.match(await client.command("DATA"), /^354 /);
  client.write(body);
  client.write("\r\n.\r\n");
  const reply = await client.reply(30_000);
  client.close();
  return reply;
}

function swaksTo(h: RelayHarness, extra: string[] = []) {
  return swaksAuth(h.starttlsPort, { user, password }, extra);
}

describe("inbound hardening", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)], limits: { maxMessageBytes: 64 * 1024, maxReceivedHops: 5 } });
  });
  after(() => h.stop());

  test("SMTP smuggling: every bare-LF/bare-CR end-of-data variant stays inside one message", async () => {
    for (const variant of ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n"]) {
      const before = h.sink.messages().length;
      const smuggled = `Subject: smuggling ${JSON.stringify(variant)}\r\n\r\nhello${variant}MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@elsewhere.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsend money\r\n`;
      const reply = await sendRaw(h, smuggled);
      assert.match(reply, /^250 /, `variant ${JSON.stringify(variant)}: ${reply}`);
      const messages = h.sink.messages().slice(before);
      assert.equal(messages.length, 1, `variant ${JSON.stringify(variant)} produced ${messages.length} messages at the next hop`);
      assert.deepEqual(messages[0]!.rcptTo, ["<support@example.com>"]);
      assert.match(messages[0]!.content, /send money/);
      assert.equal(messages[0]!.content.includes("\r"), false, "a bare CR reached the next hop");
    }
  });

  test("a message over the size limit gets 552 5.3.4 after the dot and never reaches the next hop", async () => {
    const before = h.sink.messages().length;
    const reply = await sendRaw(h, `Subject: big\r\n\r\n${`${"x".repeat(76)}\r\n`.repeat(2000)}`);
    assert.match(reply, /^552 5\.3\.4 Message exceeds the maximum size of 65536 bytes/);
    assert.equal(h.sink.messages().length, before);
  });

  test("a mail loop (too many Received headers) gets 554 5.4.6", async () => {
    const before = h.sink.messages().length;
    const reply = await sendRaw(h, `${"Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\n".repeat(5)}Subject: loop\r\n\r\nx\r\n`);
    assert.match(reply, /^554 5\.4\.6 /);
    assert.equal(h.sink.messages().length, before);
  });

  test("an over-long line gets 552 5.6.0 and nothing is delivered", async () => {
    const before = h.sink.messages().length;
    const reply = await sendRaw(h, `Subject: long\r\n\r\n${"y".repeat(1200)}\r\n`);
    assert.match(reply, /^552 5\.6\.0 /);
    assert.equal(h.sink.messages().length, before);
  });

  test("forged trust headers are removed; the next hop sees only ours", async () => {
    const result = await swaksTo(h, [
      "--add-header",
      "Authentication-Results: relay.test; auth=pass smtp.auth=forged@evil.org",
      "--add-header",
      "X-SmtpConnector-Auth: domain=evil.org; version=99",
      "--add-header",
      "Authentication-Results: mx.upstream.example; spf=pass",
    ]);
    assert.equal(result.code, 0, result.output);
    const content = h.sink.messages().at(-1)!.content;
    assert.equal(content.match(/^Authentication-Results: relay\.test/gm)?.length, 1);
    assert.doesNotMatch(content, /forged|evil\.org/);
    assert.match(content, /^Authentication-Results: mx\.upstream\.example; spf=pass$/m);
  });

  test("recipients past the cap get 452", async () => {
    const capped = await startRelay({ domains: [exampleDomain(password)], limits: { maxRecipients: 1 } });
    try {
      const client = await session(capped);
      await client.command("MAIL FROM:<customer@users.example.org>");
      assert.match(await client.command("RCPT TO:<support@example.com>"), /^250 /);
      assert.match(await client.command("RCPT TO:<billing@example.com>"), /^452 /);
      client.close();
    } finally {
      await capped.stop();
    }
  });

  test("STARTTLS command injection: commands pipelined after STARTTLS are discarded", async () => {
    const client = await RawSmtp.connect(h.starttlsPort);
    await client.reply();
    await client.command("EHLO client.test");
    // The injected command arrives in plaintext with STARTTLS; it must not be answered after the handshake.
    client.write("STARTTLS\r\nMAIL FROM:<injected@evil.org>\r\n");
    assert.match(await client.reply(), /^220 /);
    const raw = client as unknown as { socket: Socket; buffer: string };
    raw.buffer = "";
    const secure = connect({ socket: raw.socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    let received = "";
    secure.on("data", (chunk: Buffer) => (received += chunk.toString()));
    secure.write("NOOP\r\n");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.match(received, /^250 /, `after the handshake: ${received}`);
    assert.doesNotMatch(received, /injected|530|503/);
    secure.destroy();
  });
});

describe("next-hop failures become replies the sender's queue acts on", () => {
  // smtp-sink writes its dump before it answers the final dot, so for the
  // faults at "." the proof is the reply the sender gets.
  const cases: { name: string; sink: string[]; reply: RegExp; dumped: number }[] = [
    { name: "temporary refusal of the message", sink: ["-r", "."], reply: /^4\d\d 4\.0\.0 Next hop deferred the message/, dumped: 1 },
    { name: "permanent refusal of the message", sink: ["-f", "."], reply: /^5\d\d 5\.0\.0 Next hop refused the message/, dumped: 1 },
    { name: "refusal of the recipient", sink: ["-f", "RCPT"], reply: /^5\d\d /, dumped: 0 },
    { name: "temporary refusal of the recipient", sink: ["-r", "RCPT"], reply: /^4\d\d /, dumped: 0 },
    { name: "disconnect at DATA", sink: ["-q", "DATA"], reply: /^451 4\.4\.1 /, dumped: 0 },
    { name: "421 at the end of data", sink: ["-Q", "."], reply: /^4\d\d /, dumped: 1 },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const h = await startRelay({ domains: [exampleDomain(password)], sinkOptions: c.sink });
      try {
        const reply = await sendRaw(h, "Subject: fault\r\n\r\nbody\r\n");
        assert.match(reply, c.reply);
        assert.equal(h.sink.messages().length, c.dumped);
      } finally {
        await h.stop();
      }
    });
  }

  test("a next hop slower than the budget: 451 4.4.2 before the sender's own timeout", async () => {
    // The next hop answers the final dot after 30 s: a 451 4.4.2 (not its 250) shows the relay's own 1 s budget ran out first.
    const h = await startRelay({ domains: [exampleDomain(password)], sinkOptions: ["-W", ".:30"], limits: { nextHopTimeoutSeconds: 1 } });
    try {
      const reply = await sendRaw(h, "Subject: slow\r\n\r\nbody\r\n");
      assert.match(reply, /^451 4\.4\.2 /);
    } finally {
      await h.stop();
    }
  });

  test("a next hop that is down: 451 4.4.1", async () => {
    const h = await startRelay({ domains: [exampleDomain(password)] });
    await h.sink.stop();
    try {
      assert.match(await sendRaw(h, "Subject: down\r\n\r\nbody\r\n"), /^451 4\.4\.1 /);
    } finally {
      await h.relay.stop(1_000);
    }
  });
});
