// The test harness reads smtp-sink's dumps while smtp-sink is still writing
// and removing them: only completed transactions may be seen, and a dump
// removed mid-read (an aborted transaction) must not fail the reader.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startSmtpSink, type SmtpSink } from "../support/mail.js";
import { RawSmtp } from "../support/relay.js";

let sink: SmtpSink;
before(async () => (sink = await startSmtpSink()));
after(() => sink.stop());

test("a transaction still in DATA is not a message; it is one once the final dot is answered", async () => {
  const before = sink.messages().length;
  const client = await RawSmtp.connect(sink.port);
  assert.match(await client.reply(), /^220 /);
  await client.command("EHLO client.test");
  assert.match(await client.command("MAIL FROM:<a@example.org>"), /^250 /);
  assert.match(await client.command("RCPT TO:<b@example.com>"), /^250 /);
  assert.match(await client.command("DATA"), /^354 /);
  client.write("Subject: half\r\n\r\n" + "x".repeat(20_000) + "\r\n");
  // smtp-sink has created the dump and flushed part of it: not a message yet.
  assert.equal(sink.messages().length, before);
  client.write(".\r\n");
  assert.match(await client.reply(), /^250 /);
  const messages = sink.messages();
  assert.equal(messages.length, before + 1);
  const content = messages.at(-1)?.content ?? "";
  assert.ok(
    content.startsWith("Subject: half\n\n") && content.includes("x".repeat(20_000)),
    `whole message: ${JSON.stringify(content.slice(-60))}`,
  );
  client.close();
});

test("dumps created and removed while being read (RSET) never fail the reader", async () => {
  const client = await RawSmtp.connect(sink.port);
  assert.match(await client.reply(), /^220 /);
  await client.command("EHLO client.test");
  const baseline = sink.messages().length;
  let reads = 0;
  let reading = true;
  const reader = (async () => {
    while (reading) {
      assert.equal(sink.messages().length, baseline);
      reads++;
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  for (let i = 0; i < 300; i++) {
    // Pipelined, so smtp-sink creates and unlinks a dump per round while the reader lists.
    client.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nRSET\r\n");
    for (let r = 0; r < 3; r++) assert.match(await client.reply(), /^250 /);
  }
  reading = false;
  await reader;
  assert.ok(reads > 0);
  client.close();
});
