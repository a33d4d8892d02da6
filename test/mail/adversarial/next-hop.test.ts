// Attack class: a next hop, or someone on the path to it, that lies to the
// relay's client. Each table is one kind of lie; the next one found is a row.
// - bytes after the 220 answer to STARTTLS: written in plaintext, where anyone
//   on the path can write, they must never be read as an answer inside TLS;
// - replies whose UTF-8 characters are split across reads;
// - a next hop that does not offer SMTPUTF8, sent a non-ASCII envelope
//   (RFC 6531 section 3.2: a relay refuses, section 3.5 names the codes);
// - TLS sessions: one pool's connections resume each other's sessions, but a
//   session never reaches another pool (Node skips the name check when a
//   session resumes, so it must stay with the host and trust it was made for).
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import { after, before, describe, mock, test } from "node:test";
import tls from "node:tls";
import { NextHopError } from "../../../relay/contract/failures.js";
import { SmtpClient, type SmtpClientOptions } from "../../../relay/forward/smtp-client.js";
import { SmtpNextHop } from "../../../relay/forward/smtp-next-hop.js";
import { randomPassword, selfSignedCertificate, startSmtpSink, tempDir, type SmtpSink } from "../../support/mail.js";
import { startSubmissionServer } from "../../support/postfix.js";
import { exampleDomain, RawSmtp, startRelay } from "../../support/relay.js";
import { user } from "./inbound-message.js";
import { startScriptedNextHop, type NextHopScript } from "./scripted-next-hop.js";

let certificate: { key: string; cert: string };
let caFile: string;
before(async () => {
  const files = await selfSignedCertificate(tempDir("next-hop"), "next-hop.test");
  certificate = { key: readFileSync(files.keyFile, "utf8"), cert: readFileSync(files.certFile, "utf8") };
  caFile = files.certFile;
});

const clientOptions = (port: number, extra: Partial<SmtpClientOptions> = {}): SmtpClientOptions => ({
  host: "127.0.0.1",
  port,
  lmtp: false,
  tls: "None",
  clientName: "relay.test",
  timeoutMs: 5_000,
  ...extra,
});

const message = () => {
  const stream = new PassThrough();
  stream.end("Subject: x\r\n\r\nbody\r\n");
  return stream;
};

describe("bytes after the 220 answer to STARTTLS fail the session; no login follows", () => {
  const rows: { name: string; after220: string | Buffer }[] = [
    { name: "a partial reply line", after220: "250-AUTH PLAIN LOGIN" },
    { name: "a whole forged reply", after220: "250 2.0.0 ok\r\n" },
    { name: "half a UTF-8 character", after220: Buffer.from([0xc3]) },
    { name: "a lone CR", after220: "\r" },
  ];
  for (const row of rows) {
    test(row.name, async () => {
      const peer = await startScriptedNextHop({ extensions: ["AUTH PLAIN"], tls: certificate, after220: row.after220 });
      try {
        const opened = SmtpClient.open(
          clientOptions(peer.port, { tls: "StartTLS", ca: certificate.cert, auth: { username: "u", password: "p" } }),
        );
        await assert.rejects(opened, (error: unknown) => error instanceof NextHopError && error.kind === "Connection");
        assert.ok(!peer.transcript.some((line) => line.includes("AUTH")), `the login went out: ${peer.transcript.join(" | ")}`);
      } finally {
        await peer.stop();
      }
    });
  }

  test("control: nothing after the 220, the session goes on inside TLS and logs in there", async () => {
    const peer = await startScriptedNextHop({ extensions: ["AUTH PLAIN"], tls: certificate });
    try {
      const client = await SmtpClient.open(
        clientOptions(peer.port, { tls: "StartTLS", ca: certificate.cert, auth: { username: "u", password: "p" } }),
      );
      client.quit();
      assert.deepEqual(peer.transcript.slice(0, 4), [
        "EHLO relay.test",
        "STARTTLS",
        "(tls) EHLO relay.test",
        `(tls) AUTH PLAIN ${Buffer.from("\0u\0p").toString("base64")}`,
      ]);
    } finally {
      await peer.stop();
    }
  });
});

describe("replies are decoded whole when a UTF-8 character spans two reads", () => {
  const rows: { name: string; reply: string }[] = [
    { name: "two-byte characters", reply: "250 2.0.0 Ok: queued as Ä-ö-ü-é" },
    { name: "three-byte characters", reply: "250 2.0.0 Ok: €, 中文" },
    { name: "four-byte characters", reply: "250 2.0.0 Ok: 𝄞 𝄢" },
  ];
  for (const row of rows) {
    test(row.name, async () => {
      const peer = await startScriptedNextHop({ extensions: [], finalReply: row.reply, finalReplyByteByByte: true });
      try {
        const client = await SmtpClient.open(clientOptions(peer.port));
        const reply = await client.send("sender@users.example.org", ["support@example.com"], message());
        client.quit();
        assert.equal(reply.text, row.reply);
      } finally {
        await peer.stop();
      }
    });
  }
});

describe("a non-ASCII envelope and a next hop without SMTPUTF8: refused with RFC 6531's codes", () => {
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink();
  });
  after(() => sink.stop());

  const rows: { name: string; from: string; to: string; reply: RegExp }[] = [
    { name: "non-ASCII sender: 550 5.6.7", from: "pelé@users.example.org", to: "support@example.com", reply: /^5\.6\.7 Non-ASCII sender/ },
    {
      name: "non-ASCII recipient: 553 5.6.7",
      from: "support@example.com",
      to: "müller@users.example.org",
      reply: /^5\.6\.7 Non-ASCII recipient/,
    },
  ];
  for (const row of rows) {
    test(`smtp-sink (no SMTPUTF8), ${row.name}`, async () => {
      const client = await SmtpClient.open(clientOptions(sink.port));
      await assert.rejects(client.send(row.from, [row.to], message()), (error: unknown) => {
        assert.ok(error instanceof NextHopError);
        assert.equal(error.responseCode, row.name.includes("553") ? 553 : 550);
        assert.match(error.message, row.reply);
        return true;
      });
      assert.equal(sink.messages().filter((m) => m.mailFrom.includes(row.from)).length, 0);
    });
  }

  test("through the relay: the sender gets 550 5.6.7 and smtp-sink gets nothing", async () => {
    const password = randomPassword();
    const h = await startRelay({ domains: [exampleDomain(password)] });
    try {
      const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
      await client.reply();
      assert.match(await client.command("EHLO client.test"), /SMTPUTF8/);
      assert.match(await client.authPlain(user, password), /^235 /);
      assert.match(await client.command("MAIL FROM:<pelé@users.example.org> SMTPUTF8"), /^250 /);
      assert.match(await client.command("RCPT TO:<support@example.com>"), /^250 /);
      assert.match(await client.command("DATA"), /^354 /);
      client.write("Subject: x\r\n\r\nbody\r\n.\r\n");
      assert.match(await client.reply(), /^550 5\.6\.7 /);
      client.close();
      assert.equal(h.sink.messages().length, 0);
    } finally {
      await h.stop();
    }
  });

  // What the sender wrote after MAIL, and what the next hop that offers SMTPUTF8 must read.
  const offered: { name: string; mail: string; forwarded: string }[] = [
    {
      name: "a non-ASCII sender",
      mail: "MAIL FROM:<pelé@users.example.org> SMTPUTF8",
      forwarded: "MAIL FROM:<pelé@users.example.org> BODY=8BITMIME SMTPUTF8",
    },
    {
      name: "an ASCII sender that asked for SMTPUTF8 (UTF-8 header fields)",
      mail: "MAIL FROM:<customer@users.example.org> SMTPUTF8",
      forwarded: "MAIL FROM:<customer@users.example.org> BODY=8BITMIME SMTPUTF8",
    },
    {
      name: "an ASCII sender that did not ask",
      mail: "MAIL FROM:<customer@users.example.org>",
      forwarded: "MAIL FROM:<customer@users.example.org> BODY=8BITMIME",
    },
  ];
  for (const row of offered) {
    test(`through the relay to a next hop that offers SMTPUTF8, ${row.name}: delivered, SMTPUTF8 passed on as needed`, async () => {
      const password = randomPassword();
      const script: NextHopScript = { extensions: ["PIPELINING", "8BITMIME", "SMTPUTF8"] };
      const peer = await startScriptedNextHop(script);
      const h = await startRelay({
        domains: [exampleDomain(password)],
        delivery: { smtp: { host: "127.0.0.1", port: peer.port, protocol: "SMTP", tls: "None" } },
      });
      try {
        const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
        await client.reply();
        await client.command("EHLO client.test");
        assert.match(await client.authPlain(user, password), /^235 /);
        assert.match(await client.command(row.mail), /^250 /);
        assert.match(await client.command("RCPT TO:<support@example.com>"), /^250 /);
        assert.match(await client.command("DATA"), /^354 /);
        client.write("Subject: Grüße\r\n\r\nbody\r\n.\r\n");
        assert.match(await client.reply(), /^250 /);
        client.close();
        assert.ok(peer.transcript.includes(row.forwarded), peer.transcript.join(" | "));
      } finally {
        await h.stop();
        await peer.stop();
      }
    });
  }
});

describe("TLS sessions towards the next hop stay within one pool", () => {
  const pool = (port: number, { host = "127.0.0.1", now }: { host?: string; now?: () => number } = {}) =>
    new SmtpNextHop(
      { host, port, protocol: "SMTP", tls: "StartTLS", caFile },
      // One message per connection: every message opens a connection, as at low traffic.
      { clientName: "relay.test", timeoutMs: 5_000, maxMessagesPerConnection: 1, ...(now ? { now } : {}) },
    );
  const minutes = 60_000;
  const envelope = { from: "customer@users.example.org", to: ["support@example.com"] };

  test("the pool's next connection resumes; another pool to the same server (another identity, or after a reload) does not", async () => {
    const peer = await startScriptedNextHop({ extensions: ["PIPELINING"], tls: certificate });
    const [first, second] = [pool(peer.port), pool(peer.port)];
    try {
      await first.send(envelope, message());
      await second.send(envelope, message());
      await first.send(envelope, message());
      await first.send(envelope, message());
      assert.deepEqual(peer.resumed, [false, false, true, true]);
      assert.equal(peer.transcript.filter((line) => line === "(tls) DATA").length, 4);
    } finally {
      first.close();
      second.close();
      await peer.stop();
    }
  });

  test("a session's certificate was verified at most an hour ago: resumptions, each bringing a new ticket, do not extend that", async () => {
    const peer = await startScriptedNextHop({ extensions: ["PIPELINING"], tls: certificate });
    let clock = 0;
    const hop = pool(peer.port, { now: () => clock });
    // Node's server (as Postfix) gives no ticket on a resumed handshake; OpenSSL's s_server and others do. Such a
    // server, played here: each resumed connection is handed its session again, as a new ticket would arrive.
    const connect = tls.connect.bind(tls) as (...args: unknown[]) => tls.TLSSocket;
    const spy = mock.method(tls, "connect", (...args: unknown[]) => {
      const socket = connect(...args);
      socket.once("secureConnect", () => {
        const session = socket.isSessionReused() ? socket.getSession() : undefined;
        if (session) socket.emit("session", session);
      });
      return socket;
    });
    try {
      await hop.send(envelope, message());
      clock += 61 * minutes;
      await hop.send(envelope, message());
      assert.deepEqual(peer.resumed, [false, false], "a session older than an hour is not offered");
      // Verified at 61 min; resumed at 91 and 120 min, each handing a "new" session; due for a full check at 122.
      for (const at of [91, 120, 122, 123]) {
        clock = at * minutes;
        await hop.send(envelope, message());
      }
      assert.deepEqual(peer.resumed, [false, false, true, true, false, true]);
    } finally {
      spy.mock.restore();
      hop.close();
      await peer.stop();
    }
  });

  test("a certificate that no longer verifies drops the session: the next connection verifies again instead of resuming", async () => {
    // Two instances behind one name, each with its own certificate and ticket keys; one gets a certificate the CA did not sign.
    const peer = await startScriptedNextHop({ extensions: ["PIPELINING"], tls: certificate });
    const files = await selfSignedCertificate(tempDir("next-hop-unsigned"), "next-hop.test");
    const unsigned = { key: readFileSync(files.keyFile, "utf8"), cert: readFileSync(files.certFile, "utf8") };
    const hop = pool(peer.port);
    try {
      await hop.send(envelope, message());
      peer.useCertificate(unsigned);
      await assert.rejects(
        hop.send(envelope, message()),
        (error: unknown) => error instanceof NextHopError && error.detail.code === "ETLS",
      );
      peer.useCertificate(certificate);
      await hop.send(envelope, message());
      assert.equal(peer.resumed.at(-1), false, "the instance that would still take the old session verified afresh");
      assert.ok(!peer.resumed.includes(true), `handshakes resumed: ${JSON.stringify(peer.resumed)}`);
    } finally {
      hop.close();
      await peer.stop();
    }
  });

  test("TLS 1.2 and a certificate for another name: every send fails ETLS, no session of that server is ever offered", async () => {
    // TLS 1.2 hands the client its session before the client checked the certificate; Node withholds it until then, and so do we.
    const peer = await startScriptedNextHop({ extensions: ["PIPELINING"], tls: certificate, maxVersion: "TLSv1.2" });
    const hop = pool(peer.port, { host: "localhost" });
    try {
      for (let i = 0; i < 2; i++)
        await assert.rejects(
          hop.send(envelope, message()),
          (error: unknown) => error instanceof NextHopError && error.detail.code === "ETLS",
        );
      assert.ok(peer.resumed.length > 0 && !peer.resumed.includes(true), `handshakes resumed: ${JSON.stringify(peer.resumed)}`);
    } finally {
      hop.close();
      await peer.stop();
    }
  });

  test("Postfix, which gives no new session on a resumed handshake: every connection after the first resumes", async () => {
    const sink = await startSmtpSink();
    const password = randomPassword();
    const login = { username: "relay@example.com", password, senders: [envelope.from] };
    const postfix = await startSubmissionServer({ relayTo: sink.port, users: [login] });
    const passwordFile = `${tempDir("next-hop-login")}/password`;
    writeFileSync(passwordFile, password);
    // What the client side saw of each handshake (Postfix logs no resumption at its default log level).
    const resumed: boolean[] = [];
    const connect = tls.connect.bind(tls) as (...args: unknown[]) => tls.TLSSocket;
    const spy = mock.method(tls, "connect", (...args: unknown[]) => {
      const socket = connect(...args);
      socket.once("secureConnect", () => resumed.push(socket.isSessionReused()));
      return socket;
    });
    const hop = new SmtpNextHop(
      {
        host: "127.0.0.1",
        port: postfix.port,
        protocol: "SMTP",
        tls: "StartTLS",
        caFile: postfix.certFile,
        username: login.username,
        passwordFile,
      },
      { clientName: "relay.test", timeoutMs: 10_000, maxMessagesPerConnection: 1 },
    );
    try {
      for (let i = 0; i < 4; i++) await hop.send({ from: envelope.from, to: ["someone@users.example.net"] }, message());
      assert.deepEqual(resumed, [false, true, true, true]);
    } finally {
      spy.mock.restore();
      hop.close();
      await postfix.stop();
      await sink.stop();
    }
  });
});
