// The outbound path with real peers: the helpdesk submits to the relay's
// submission listener; a real Postfix plays the customer's submission server
// (STARTTLS, then SASL AUTH against Cyrus sasldb, each login bound to its own
// senders) and hands mail on to smtp-sink, where the tests read it back.
// Signatures are checked by mailauth and by Debian's python3-dkim.
import assert from "node:assert/strict";
import { generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import type { RelayConfig } from "../../relay/contract/config.js";
import { dnsRecord } from "../../relay/contract/dkim-record.js";
import { controlRequest } from "../../operator/address/control-client.js";
import { NotYetServed } from "../../operator/address/verification.js";
import { verificationIO } from "../../operator/address/verification-io.js";
import type { SmtpDomain } from "../../crds/schema.js";
import { serverEndpoint } from "../../relay/contract/control-api.js";
import { pythonDkim as verifyWithPython } from "../support/dkim.js";
import { freePort, randomPassword, sha256, startSmtpSink, type SinkMessage, type SmtpSink } from "../support/mail.js";
import { startSubmissionServer, type Postfix } from "../support/postfix.js";
import { RawSmtp, exampleDomain, startRelay, type RelayHarness } from "../support/relay.js";
import { eventuallyTrue } from "../support/wait.js";

const inboundPassword = randomPassword();
const submission = { username: "helpdesk-example.com-v1", password: randomPassword() };
const logins = {
  support: { username: "u1@example.com", password: randomPassword(), senders: ["support@example.com", "news@example.com"] },
  billing: { username: "u2@example.com", password: randomPassword(), senders: ["billing@example.com"] },
};
const controlToken = randomPassword();
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ed = generateKeyPairSync("ed25519");
const dns: Record<string, KeyObject> = { "rsa1._domainkey.example.com": rsa.publicKey, "ed1._domainkey.example.com": ed.publicKey };

/** The helpdesk's message: the headers it sets must arrive exactly as written. */
const helpdeskHeaders = [
  "From: Example Support <support@example.com>",
  "To: Customer <customer@elsewhere.test>",
  "Subject: [#4711] Your request  has been  updated",
  "Date: Wed, 25 Nov 2026 16:00:00 +0000",
  "Message-ID: <email-4711.a1b2@helpdesk.test>",
  "References: <ticket-4711@helpdesk.test>",
  "\t<email-4710.ffee@helpdesk.test>",
  "In-Reply-To: <email-4710.ffee@helpdesk.test>",
  "Auto-Submitted: auto-generated",
  "X-Auto-Response-Suppress: All",
  "X-Mailer: Helpdesk Mailer 7.1",
  "X-Helpdesk-Account-Id: 4242",
  "X-Helpdesk-Email-Id: 987654",
  "MIME-Version: 1.0",
  "Content-Type: text/plain; charset=utf-8",
];

/** The helpdesk writes the From: its envelope names (the relay refuses any other). */
function message(subjectTag: string, body = "Hello,\r\n\r\nyour ticket was updated.\r\n", from = "support@example.com"): string {
  const header = (h: string) =>
    h.startsWith("Subject:") ? `${h} ${subjectTag}` : h.startsWith("From:") ? h.replace("support@example.com", from) : h;
  return [...helpdeskHeaders.map(header), "", body].join("\r\n");
}

interface Submitted {
  mail: string;
  rcpt: string;
  data: string;
}

/** One submission over the wire, byte for byte (dot-stuffed here, as a client must). */
async function submit(
  port: number,
  opts: { from: string; to: string; body: string; user?: { username: string; password: string } },
): Promise<Submitted> {
  const smtp = await RawSmtp.connect(port);
  try {
    await smtp.reply();
    await smtp.command("EHLO helpdesk.test");
    await smtp.startTls();
    await smtp.command("EHLO helpdesk.test");
    const user = opts.user ?? submission;
    const auth = await smtp.authPlain(user.username, user.password);
    if (!auth.startsWith("235")) return { mail: auth, rcpt: "", data: "" };
    const mail = await smtp.command(`MAIL FROM:<${opts.from}>`);
    if (!mail.startsWith("250")) return { mail, rcpt: "", data: "" };
    const rcpt = await smtp.command(`RCPT TO:<${opts.to}>`);
    if (!rcpt.startsWith("250")) return { mail, rcpt, data: "" };
    await smtp.command("DATA");
    const body = opts.body.endsWith("\r\n") ? opts.body : `${opts.body}\r\n`;
    smtp.write(body.replace(/^\./gm, "..") + ".\r\n");
    const data = await smtp.reply(30_000);
    await smtp.command("QUIT");
    return { mail, rcpt, data };
  } finally {
    smtp.close();
  }
}

function received(sink: SmtpSink, tag: string): SinkMessage | undefined {
  return sink.messages().find((m) => m.content.includes(tag));
}

/** The message once smtp-sink finished writing it (a large one is read while it is still being written otherwise). */
async function arrived(sink: SmtpSink, tag: string): Promise<SinkMessage> {
  let last = -1;
  await eventuallyTrue(
    `the message ${tag} at the recipient's side`,
    async () => {
      const size = received(sink, tag)?.content.length ?? -1;
      const stable = size >= 0 && size === last;
      last = size;
      if (!stable) await new Promise((resolve) => setTimeout(resolve, 200));
      return stable;
    },
    20_000,
  );
  return received(sink, tag)!;
}

/** The message as the recipient's server got it, CRLF restored (smtp-sink writes LF). */
const wire = (m: SinkMessage) => m.content.replace(/\r?\n/g, "\r\n");

async function mailauthResults(raw: string) {
  const resolver = (name: string, type: string): Promise<string[][]> => {
    const key = dns[name];
    return key && type === "TXT"
      ? Promise.resolve([[dnsRecord(key)]])
      : Promise.reject(Object.assign(new Error("NXDOMAIN"), { code: "ENOTFOUND" }));
  };
  const result = await dkimVerify(Buffer.from(raw, "latin1"), { resolver });
  return result.results.map((r) => `${(r as { selector?: string }).selector} ${r.status.result}`);
}

/** Debian's python3-dkim over the test's records. */
const pythonDkim = (raw: string) =>
  verifyWithPython(raw, Object.fromEntries(Object.entries(dns).map(([name, key]) => [name, dnsRecord(key)])));

describe("outbound through the customer's Postfix", () => {
  let h: RelayHarness;
  let postfix: Postfix & { certFile: string };
  let recipientSide: SmtpSink;
  let defaultSink: SmtpSink;
  let closedPort: number;

  before(async () => {
    recipientSide = await startSmtpSink();
    defaultSink = await startSmtpSink();
    closedPort = await freePort();
    postfix = await startSubmissionServer({ relayTo: recipientSide.port, users: [logins.support, logins.billing] });
    h = await startRelay({
      domains: [exampleDomain(inboundPassword)],
      configure: async (config, dir) => {
        writeFileSync(join(dir, "rsa.key"), rsa.privateKey.export({ format: "pem", type: "pkcs8" }));
        writeFileSync(join(dir, "ed.key"), ed.privateKey.export({ format: "pem", type: "pkcs8" }));
        const server = (login: { username: string; password: string }, file: string) => {
          writeFileSync(join(dir, file), login.password);
          return {
            host: "127.0.0.1",
            port: postfix.port,
            tls: "StartTLS" as const,
            caFile: postfix.certFile,
            username: login.username,
            passwordFile: file,
          };
        };
        config.listeners.submission = { port: await freePort() };
        config.listeners.control = { port: await freePort(), tokenSha256: sha256(controlToken) };
        config.outbound = { systemDomains: ["helpdesk.test"], unconnectedSenders: "Refuse" };
        config.domains[0]!.outbound = {
          submission: [{ version: 1, username: submission.username, passwordSha256: sha256(submission.password), state: "Active" }],
          dkim: [
            { selector: "rsa1", algorithm: "rsa-sha256", keyFile: "rsa.key" },
            { selector: "ed1", algorithm: "ed25519-sha256", keyFile: "ed.key" },
          ],
          senders: [
            { address: "support@example.com", ready: true, server: server(logins.support, "support.password") },
            { address: "billing@example.com", ready: true, server: server(logins.billing, "billing.password") },
            // Configured but not Ready yet (its verification is pending).
            { address: "news@example.com", ready: false, server: server(logins.support, "support.password") },
          ],
        };
      },
    });
  });
  after(async () => {
    await h.stop();
    await postfix.stop();
    await recipientSide.stop();
    await defaultSink.stop();
  });

  const send = (tag: string, from = "support@example.com", extra: Partial<Parameters<typeof submit>[1]> = {}) =>
    submit(h.submissionPort!, {
      from,
      to: "customer@elsewhere.test",
      body: message(tag, undefined, from || "support@example.com"),
      ...extra,
    });
  /** The operator's own client: HTTPS pinned to the relay's certificate. */
  const control = (path: string, body?: string, token = controlToken) =>
    controlRequest(`https://127.0.0.1:${h.controlPort}${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body }),
      pins: [new X509Certificate(readFileSync(h.config.tls.certFile)).fingerprint256],
    });

  test("the control API is HTTPS only, and the operator's client sends nothing to a relay whose certificate is not the pinned one", async () => {
    const plain = await fetch(`http://127.0.0.1:${h.controlPort}/v1/credential-use`).catch((error: Error) => error);
    assert.ok(plain instanceof Error, "no plaintext HTTP on the control port");
    assert.equal((await control("/v1/credential-use")).status, 200);
    await assert.rejects(
      controlRequest(`https://127.0.0.1:${h.controlPort}/v1/credential-use`, {
        headers: { authorization: `Bearer ${controlToken}` },
        pins: ["00:11:22"],
      }),
      /presented a certificate .* that is not the one in its TLS Secret; not sending the token/,
    );
  });

  test("a Ready address's message leaves with its own login, every helpdesk header intact, signed RSA and Ed25519", async () => {
    const result = await send("(one)");
    assert.match(result.data, /^250 2\.0\.0 Accepted by the customer's server: 250 2\.0\.0 Ok: queued as /, JSON.stringify(result));
    const got = await arrived(recipientSide, "(one)");
    assert.equal(got.mailFrom.replace(/^FROM:|<|>|\s.*$/gi, ""), "support@example.com");
    const raw = wire(got);
    // Postfix saw the address's own login.
    assert.match(raw, /\(Authenticated sender: u1@example\.com\)/);
    // Byte for byte: the helpdesk's header block appears unchanged, in order.
    const sent = message("(one)");
    const sentHeader = sent.slice(0, sent.indexOf("\r\n\r\n") + 2);
    assert.ok(raw.includes(sentHeader), `header block changed:\n${raw}`);
    assert.ok(raw.includes(`${sentHeader}\r\nHello,\r\n\r\nyour ticket was updated.\r\n`), raw);
    assert.deepEqual(await mailauthResults(raw), ["rsa1 pass", "ed1 pass"]);
    assert.equal(await pythonDkim(raw), "True True");
  });

  test("two addresses with their own logins, interleaved over concurrent sessions: no connection carries the other login", async () => {
    const tags = Array.from({ length: 12 }, (_, i) => `(mix-${i})`);
    const results = await Promise.all(tags.map((tag, i) => send(tag, i % 2 === 0 ? "support@example.com" : "billing@example.com")));
    for (const r of results) assert.match(r.data, /^250 /, JSON.stringify(r));
    for (const [i, tag] of tags.entries()) {
      const raw = wire(await arrived(recipientSide, tag));
      const login = i % 2 === 0 ? "u1@example.com" : "u2@example.com";
      assert.match(raw, new RegExp(`\\(Authenticated sender: ${login.replace(".", "\\.")}\\)`), tag);
    }
    // Postfix binds each login to its sender; a crossed connection would have been refused.
    assert.doesNotMatch(postfix.log(), /not owned by user/);
  });

  test("sender rules: system domain, another domain, no support address, null and malformed senders get a clear 5xx", async () => {
    const cases: [string, RegExp][] = [
      ["noreply@helpdesk.test", /^550 5\.7\.1 noreply@helpdesk\.test is in the helpdesk's own domain helpdesk\.test/],
      ["support@other.test", /^550 5\.7\.1 support@other\.test is outside example\.com/],
      ["sales@example.com", /^550 5\.7\.1 sales@example\.com is not a support address of example\.com/],
      ["", /^550 5\.7\.1 A null sender/],
      ["support%evil.test@example.com", /^553 5\.1\.7 Sender address not accepted \(RoutingCharacter\)/],
    ];
    for (const [from, expected] of cases) {
      const result = await send("(refused)", from);
      assert.match(result.mail, expected, from);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text();
    assert.match(metrics, /smtpc_relay_outbound_messages_total\{sender="",result="SystemDomainSender"\} 1/);
  });

  test("SMTPUTF8 from the helpdesk is passed on to the customer's server with the message's UTF-8 header fields", async () => {
    const smtp = await RawSmtp.connect(h.submissionPort!);
    try {
      await smtp.reply();
      await smtp.command("EHLO helpdesk.test");
      await smtp.startTls();
      assert.match(await smtp.command("EHLO helpdesk.test"), /SMTPUTF8/);
      assert.match(await smtp.authPlain(submission.username, submission.password), /^235 /);
      assert.match(await smtp.command("MAIL FROM:<support@example.com> SMTPUTF8"), /^250 /);
      assert.match(await smtp.command("RCPT TO:<customer@elsewhere.test>"), /^250 /);
      assert.match(await smtp.command("DATA"), /^354 /);
      smtp.write(message("(utf8)").replace("Subject: [#4711]", "Subject: [#4711] Grüße,") + ".\r\n");
      assert.match(await smtp.reply(30_000), /^250 /);
    } finally {
      smtp.close();
    }
    // Postfix records the transaction as SMTPUTF8 and will hand it on only to a server that offers SMTPUTF8;
    // smtp-sink, the recipient's side here, does not, so Postfix's own log shows the flag arrived. Without it,
    // Postfix would have passed the UTF-8 header fields to a server that never agreed to them.
    await eventuallyTrue(
      "Postfix holding the message to SMTPUTF8",
      () => /SMTPUTF8 is required, but was not offered by host/.test(postfix.log()),
      20_000,
    );
  });

  test("an unconnected sender goes to the default transport when the config says so", async () => {
    assert.ok(
      h.update((config) => {
        config.outbound = {
          ...config.outbound!,
          unconnectedSenders: "DefaultTransport",
          defaultTransport: {
            host: "127.0.0.1",
            port: postfix.port,
            tls: "StartTLS",
            caFile: postfix.certFile,
            username: logins.support.username,
            passwordFile: "support.password",
          },
        };
      }),
    );
    try {
      // Postfix is the default transport here too, but with the support login it
      // refuses sales@: the message went that way, and the refusal came back.
      const result = await send("(default)", "sales@example.com");
      assert.match(result.data, /^553 5\.0\.0 Next hop refused the message: .*not owned by user u1@example\.com/, JSON.stringify(result));
    } finally {
      h.update((config) => {
        config.outbound = { systemDomains: ["helpdesk.test"], unconnectedSenders: "Refuse" };
      });
    }
  });

  test("the submission listener: AUTH only after STARTTLS, only with submission credentials, MAIL only after AUTH", async () => {
    const smtp = await RawSmtp.connect(h.submissionPort!);
    try {
      await smtp.reply();
      const ehlo = await smtp.command("EHLO helpdesk.test");
      assert.doesNotMatch(ehlo, /AUTH/);
      assert.match(await smtp.command("MAIL FROM:<support@example.com>"), /^530 /);
      await smtp.startTls();
      assert.match(await smtp.command("EHLO helpdesk.test"), /AUTH PLAIN LOGIN/);
      assert.match(await smtp.authPlain("example.com-v1", inboundPassword), /^535 /);
      assert.match(await smtp.authPlain(submission.username, submission.password), /^235 /);
    } finally {
      smtp.close();
    }
    // And the other way round: the submission credential does not open the customer-facing listener.
    const inbound = await RawSmtp.connect(h.starttlsPort);
    try {
      await inbound.reply();
      await inbound.command("EHLO mx.customer.test");
      await inbound.startTls();
      await inbound.command("EHLO mx.customer.test");
      assert.match(await inbound.authPlain(submission.username, submission.password), /^535 /);
    } finally {
      inbound.close();
    }
  });

  test("recipients are parsed strictly; header injection has no way in", async () => {
    // smtp-server refuses some forms itself (501); what it lets through, the relay's parser refuses (553).
    for (const to of ['"a@b"@elsewhere.test', "user%elsewhere.test@example.com", "user@[127.0.0.1]", "user@elsewhere.test."]) {
      const result = await submit(h.submissionPort!, { from: "support@example.com", to, body: message("(rcpt)") });
      assert.match(result.rcpt, /^(553 5\.1\.3 Recipient address not accepted|501 )/, to);
    }
    const call = (body: object) => control("/v1/verification-sends", JSON.stringify(body));
    const base = { domain: "example.com", from: "support@example.com", to: "customer@elsewhere.test", token: "tok_0123456789abcdef" };
    for (const bad of [
      { subject: "hi\r\nBcc: victim@elsewhere.test" },
      { token: "abc\r\nBcc: x@y.test" },
      { to: "x@elsewhere.test\r\nBcc: y@elsewhere.test" },
      { extra: 1 },
    ]) {
      const response = await call({ ...base, ...bad });
      assert.equal(response.status, 400, JSON.stringify(bad));
      assert.equal(((await response.json()) as { result: string }).result, "InvalidRequest");
    }
  });

  test("a verification send naming a server the relay does not (yet) use for the address sends nothing and tells the operator to wait for the config", async () => {
    // What the operator asks of a relay whose mounted config still names the address's previous server.
    const io = verificationIO(
      { sender: "verify@helpdesk.example", controlUrl: `https://127.0.0.1:${h.controlPort}`, perPod: false },
      {
        controlToken: () => controlToken,
        certificatePins: () => [new X509Certificate(readFileSync(h.config.tls.certFile)).fingerprint256],
        controlEndpoints: () => [],
      },
    );
    const domain = { metadata: { name: "example-com", namespace: "acme" }, spec: { domain: "example.com" } } as SmtpDomain;
    const current = h.config.domains[0]!.outbound!.senders.find((s) => s.address === "support@example.com")!.server;
    await assert.rejects(
      io.sendOutbound(domain, "support@example.com", "vrf_moved0123456789", { server: "smtp.moved.example:587/StartTLS" }),
      NotYetServed,
    );
    assert.equal(
      await io.sendOutbound(domain, "support@example.com", "vrf_current0123456789", { server: serverEndpoint(current) }),
      undefined,
    );
    await arrived(recipientSide, "vrf_current0123456789");
    assert.equal(
      received(recipientSide, "vrf_moved0123456789"),
      undefined,
      "nothing went out through the server the address no longer names",
    );
  });

  test("the customer's server refusing the login is passed back; a corrected password file applies without a restart", async () => {
    writeFileSync(join(h.dir, "billing.password"), "wrong-password");
    assert.ok(h.relay.reload());
    try {
      const refused = await send("(badlogin)", "billing@example.com");
      assert.match(refused.data, /^535 5\.0\.0 Next hop refused the message: .*authentication failed/i, JSON.stringify(refused));
      const metrics = await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text();
      assert.match(metrics, /smtpc_relay_outbound_messages_total\{sender="billing@example\.com",result="InvalidCredentials"\} 1/);
    } finally {
      writeFileSync(join(h.dir, "billing.password"), logins.billing.password);
    }
    // The file changed under the same config: the relay's watcher picks it up.
    await eventuallyTrue(
      "the corrected password to apply",
      async () => (await send("(goodlogin)", "billing@example.com")).data.startsWith("250"),
      15_000,
    );
  });

  test("verification send: authenticated, through the address's own path, signed, with a machine-readable failure", async () => {
    const body = { domain: "example.com", from: "support@example.com", to: "check@elsewhere.test", token: "vrf_AbCdEf0123456789" };
    const post = (b: object, token = controlToken) => control("/v1/verification-sends", JSON.stringify(b), token);
    assert.equal((await post(body, "not-the-token")).status, 401);
    const sent = await post(body);
    assert.equal(sent.status, 200, JSON.stringify(await sent.json()));
    const raw = wire(await arrived(recipientSide, "vrf_AbCdEf0123456789"));
    assert.match(raw, /^X-SmtpConnector-Verification: vrf_AbCdEf0123456789$/m);
    assert.match(raw, /\(Authenticated sender: u1@example\.com\)/);
    assert.deepEqual(await mailauthResults(raw), ["rsa1 pass", "ed1 pass"]);

    // An address that is not Ready yet is verified through its own route: that is what makes it Ready.
    const pending = await post({ ...body, from: "news@example.com", token: "vrf_pending0123456789" });
    assert.equal(pending.status, 200, JSON.stringify(await pending.json()));
    assert.match(wire(await arrived(recipientSide, "vrf_pending0123456789")), /\(Authenticated sender: u1@example\.com\)/);

    const notReady = await post({ ...body, from: "sales@example.com" });
    assert.equal(notReady.status, 422);
    assert.equal(((await notReady.json()) as { result: string }).result, "SenderNotSupportAddress");

    h.update((config) => {
      config.domains[0]!.outbound!.senders[1]!.server.port = closedPort;
    });
    const down = await post({ ...body, from: "billing@example.com" });
    assert.equal(down.status, 502);
    assert.equal(((await down.json()) as { result: string }).result, "ConnectionRefused");
    h.update((config) => {
      config.domains[0]!.outbound!.senders[1]!.server.port = postfix.port;
    });
  });

  test("a 3 MB message is signed through the spool file and still verifies", async () => {
    const line = "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .\r\n";
    const body = `.leading dot\r\n${line.repeat(Math.ceil((3 * 1024 * 1024) / line.length))}`;
    h.update((config: RelayConfig) => {
      config.limits.maxMessageBytes = 8 * 1024 * 1024;
    });
    const result = await send("(large)", "support@example.com", { body: message("(large)", body) });
    assert.match(result.data, /^250 /, JSON.stringify(result));
    const raw = wire(await arrived(recipientSide, "(large)"));
    assert.ok(raw.includes("\r\n\r\n.leading dot\r\n"), "dot-stuffing undone exactly once");
    assert.deepEqual(await mailauthResults(raw), ["rsa1 pass", "ed1 pass"]);
  });

  test("the signing spool's disk is bounded: a message beyond it gets 452 4.3.1 and goes through once there is room; nothing is left behind", async () => {
    h.update((config: RelayConfig) => {
      config.limits.maxMessageBytes = 4 * 1024 * 1024;
      config.limits.spoolBytes = 4 * 1024 * 1024;
    });
    const line = "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .\r\n";
    const big = (tag: string) => message(tag, line.repeat(Math.ceil((2.5 * 1024 * 1024) / line.length)));
    const spoolFiles = () => readdirSync(tmpdir()).filter((f) => f.startsWith("smtpc-spool-"));
    const before = spoolFiles().length;
    const inData = async () => {
      const smtp = await RawSmtp.connect(h.submissionPort!);
      await smtp.reply();
      await smtp.command("EHLO helpdesk.test");
      await smtp.startTls();
      await smtp.command("EHLO helpdesk.test");
      assert.match(await smtp.authPlain(submission.username, submission.password), /^235 /);
      assert.match(await smtp.command("MAIL FROM:<support@example.com>"), /^250 /);
      assert.match(await smtp.command("RCPT TO:<customer@elsewhere.test>"), /^250 /);
      assert.match(await smtp.command("DATA"), /^354 /);
      return smtp;
    };
    const [first, second] = [await inData(), await inData()];
    try {
      // The first message is in the spool (its file exists and holds 2.5 MB) but not finished...
      first.write(big("(spool first)"));
      await eventuallyTrue("the first message in a spool file", () => spoolFiles().length > before, 20_000);
      // ...when the second needs another 2.5 MB: over the 4 MB budget, a temporary refusal.
      second.write(big("(spool second)") + ".\r\n");
      assert.match(await second.reply(30_000), /^452 4\.3\.1 /);
      first.write(".\r\n");
      assert.match(await first.reply(30_000), /^250 /);
    } finally {
      first.close();
      second.close();
    }
    // The sender's queue tries again: now there is room.
    const retried = await send("(spool second)", "support@example.com", { body: big("(spool second)") });
    assert.match(retried.data, /^250 /, JSON.stringify(retried));
    await arrived(recipientSide, "(spool first)");
    await arrived(recipientSide, "(spool second)");
    await eventuallyTrue("every spool file removed", () => spoolFiles().length === before, 10_000);
  });

  test("no secret in any log line", () => {
    const logs = h.logs.join("\n");
    for (const secret of [submission.password, logins.support.password, logins.billing.password, controlToken, inboundPassword]) {
      assert.ok(!logs.includes(secret), "a secret appeared in the relay's logs");
    }
    assert.match(logs, /outbound message delivered/);
  });
});
