// The inbound relay against real peers: swaks and a raw socket client over
// real TLS, Postfix's smtp-sink as the next hop.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { randomPassword, swaksAuth } from "../support/mail.js";
import { exampleDomain, RawSmtp, startRelay, type RelayHarness } from "../support/relay.js";

const password = randomPassword();
const user = "example.com-v1";

function send(h: RelayHarness, extra: string[] = [], { implicit = false, to = "support@example.com", auth = "PLAIN" } = {}) {
  return swaksAuth(implicit ? h.implicitPort : h.starttlsPort, { user, password }, extra, { implicit, to, auth });
}

describe("inbound relay", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)] });
  });
  after(() => h.stop());

  test("STARTTLS + AUTH PLAIN: delivered cut-through and tagged", async () => {
    const before = h.sink.messages().length;
    const result = await send(h, ["--header", "Subject: hello over 587"]);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /<~\s+250 2\.0\.0 Accepted by the next hop/);
    const messages = h.sink.messages();
    assert.equal(messages.length, before + 1);
    const message = messages.at(-1)!;
    assert.deepEqual(message.rcptTo, ["<support@example.com>"]);
    assert.match(message.content, /^Authentication-Results: relay\.test; auth=pass \(plain\) smtp\.auth=example\.com-v1$/m);
    assert.match(message.content, /^X-SmtpConnector-Auth: domain=example\.com; version=1$/m);
    assert.match(message.content, /^Received: from .*\n\tby relay\.test \(smtp-connector\) with ESMTPSA/m);
    assert.match(message.content, /^Subject: hello over 587$/m);
  });

  test("implicit TLS on its own listener", async () => {
    const result = await send(h, ["--header", "Subject: hello over 465"], { implicit: true });
    assert.equal(result.code, 0, result.output);
    assert.match(h.sink.messages().at(-1)!.content, /^Subject: hello over 465$/m);
  });

  test("AUTH before STARTTLS is refused, and AUTH is not even offered", async () => {
    const client = await RawSmtp.connect(h.starttlsPort);
    assert.match(await client.reply(), /^220 /);
    const ehlo = await client.command("EHLO client.test");
    assert.match(ehlo, /STARTTLS/);
    assert.doesNotMatch(ehlo, /AUTH/);
    assert.match(await client.authPlain(user, password), /^5\d\d /);
    assert.match(await client.command("MAIL FROM:<a@users.example.org>"), /^530 /);
    client.close();
  });

  test("MAIL without AUTH after STARTTLS gets 530", async () => {
    const client = await RawSmtp.connect(h.starttlsPort);
    await client.reply();
    await client.command("EHLO client.test");
    await client.startTls();
    assert.match(await client.command("EHLO client.test"), /AUTH PLAIN/);
    assert.match(await client.command("MAIL FROM:<a@users.example.org>"), /^530 /);
    client.close();
  });

  test("never an open relay: only support addresses of the authenticated domain", async () => {
    const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
    await client.reply();
    await client.command("EHLO client.test");
    assert.match(await client.authPlain(user, password), /^235 /);
    assert.match(await client.command("MAIL FROM:<a@users.example.org>"), /^250 /);
    const refused = [
      "victim@elsewhere.org",
      "nobody@example.com",
      '"support@example.com"@elsewhere.org',
      "support%elsewhere.org@example.com",
      "@example.com:victim@elsewhere.org",
      "support@[127.0.0.1]",
      "support@example.com.",
      "support@example.com@elsewhere.org",
    ];
    for (const rcpt of refused) {
      const reply = await client.command(`RCPT TO:<${rcpt}>`);
      assert.match(reply, /^5\d\d /, `RCPT TO:<${rcpt}> answered ${reply}`);
    }
    assert.match(await client.command("RCPT TO:<Support@Example.COM>"), /^250 /);
    client.close();
  });

  test("wrong passwords: 535, then 421 and disconnect after the per-connection limit", async () => {
    const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
    await client.reply();
    await client.command("EHLO client.test");
    assert.match(await client.authPlain(user, "wrong-1"), /^535 5\.7\.8 /);
    assert.match(await client.authPlain("nobody", "wrong-2"), /^535 5\.7\.8 /);
    assert.match(await client.authPlain(user, "wrong-3"), /^421 /);
    await client.reply().catch(() => undefined);
    assert.equal(client.closed, true);
  });

  test("inbound passwords never appear in a log line", async () => {
    const canary = `canary-${randomPassword()}`;
    const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
    await client.reply();
    await client.command("EHLO client.test");
    await client.authPlain(user, canary);
    client.close();
    await send(h);
    const joined = h.logs.join("\n");
    for (const secret of [canary, password, Buffer.from(`\0${user}\0${password}`).toString("base64")]) {
      assert.equal(joined.includes(secret), false, "a password reached the logs");
    }
    assert.match(joined, /"AUTH refused"/);
    assert.match(joined, /"AUTH accepted"/);
  });

  test("LMTP next hop: delivered with per-recipient answers", async () => {
    const lmtp = await startRelay({ domains: [exampleDomain(password)], sinkOptions: ["-L"], lmtp: true });
    try {
      const result = await send(lmtp, [], { implicit: true, to: "support@example.com,billing@example.com" });
      assert.equal(result.code, 0, result.output);
      const message = lmtp.sink.messages().at(-1)!;
      assert.deepEqual(message.rcptTo, ["<support@example.com>", "<billing@example.com>"]);
      assert.equal(message.protocol, "LMTP");
    } finally {
      await lmtp.stop();
    }
  });

  test("a next hop that drops idle pooled connections: the next message goes on a new one, nothing refused", async () => {
    // smtp-sink -t 1 closes a connection idle for a second, as a busy MTA does
    // (the relay keeps idle ones for 5 s).
    const impatient = await startRelay({ domains: [exampleDomain(password)], sinkOptions: ["-t", "1"] });
    try {
      const sendOne = (subject: string) => send(impatient, ["--header", `Subject: ${subject}`], { implicit: true });
      const first = await sendOne("first");
      assert.equal(first.code, 0, first.output);
      await new Promise((resolve) => setTimeout(resolve, 1_800));
      const second = await sendOne("second");
      assert.equal(second.code, 0, second.output);
      assert.deepEqual(
        impatient.sink.messages().map((m) => /^Subject: (.*)$/m.exec(m.content)?.[1]),
        ["first", "second"],
      );
    } finally {
      await impatient.stop();
    }
  });

  test("a next hop without ESMTP: HELO, one command at a time; lines starting with a dot arrive intact", async () => {
    const plain = await startRelay({ domains: [exampleDomain(password)], sinkOptions: ["-e"] });
    try {
      const body = ".one leading dot\r\n..two leading dots\r\n.\r\nlast line";
      const result = await send(plain, ["--data", `Subject: dots\r\n\r\n${body}\r\n`], { implicit: true });
      assert.equal(result.code, 0, result.output);
      const message = plain.sink.messages().at(-1)!;
      assert.equal(message.protocol, "SMTP", "the relay fell back to HELO");
      assert.ok(message.content.includes(`\n\n${body.replaceAll("\r\n", "\n")}\n`), JSON.stringify(message.content.slice(-80)));
    } finally {
      await plain.stop();
    }
  });

  test("AUTH LOGIN for a domain configured for LOGIN; PLAIN is then refused", async () => {
    const login = await startRelay({ domains: [exampleDomain(password, { authProtocol: "LOGIN" })] });
    try {
      const ok = await send(login, [], { auth: "LOGIN" });
      assert.equal(ok.code, 0, ok.output);
      assert.match(login.sink.messages().at(-1)!.content, /auth=pass \(login\) smtp\.auth=example\.com-v1/);
      const plain = await send(login);
      assert.notEqual(plain.code, 0);
      assert.match(plain.output, /does not support|not advertised|5\d\d/);
    } finally {
      await login.stop();
    }
  });
});
