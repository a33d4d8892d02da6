// The forwarded listener against real peers. A private Postfix plays the
// customer's cloud mail service (Microsoft 365, Google Workspace): it receives
// for the customer's domain and forwards to the relay's forwarded port
// (transport_maps, recipient unchanged, envelope sender rewritten SRS-style
// with sender_canonical_maps, STARTTLS when offered). What the cloud service
// does to the message itself — the author's DKIM signature, a footer that
// breaks it, the ARC seal it adds when it forwards — is a signing step here,
// with mailauth. SPF, DKIM, DMARC and ARC keys are TXT records of the test's
// own DNS server, which the relay is told to use (forwarded.dnsServers).
// python3-dkim verifies DKIM and ARC of what reached the helpdesk,
// independently of mailauth, and our Authentication-Results must agree.
import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { dkimSign, sealMessage } from "mailauth";
import { verificationMessage } from "../../relay/contract/verification-message.js";
import { headerFields, RelaxedBodyHash, signatures } from "../../relay/outbound/dkim.js";
import { pythonDkimAndArc } from "../support/dkim.js";
import { startDns, type TestDns } from "../support/dns.js";
import { freePort, randomPassword, sha256, swaks, swaksAuth, tempDir, type SinkMessage } from "../support/mail.js";
import { startPostfix, type Postfix } from "../support/postfix.js";
import { RawSmtp, startRelay, type RelayHarness } from "../support/relay.js";
import { eventuallyTrue } from "../support/wait.js";

const controlToken = randomPassword();
const password = randomPassword();
const customer = "customer.example";
const trustedSealer = "cloud.example";
const untrustedSealer = "sealer.evil.example";
/** What the cloud service rewrites the author's envelope sender to (SRS0=hash=timestamp=domain=local@forwarder). */
const srsSender = "SRS0=Hq7f=TT=sender.example=author@cloud.example";

function rsaKey(): { privateKey: string; record: string } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const p = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  return { privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), record: `v=DKIM1; k=rsa; p=${p}` };
}

const keys = { customer: rsaKey(), trusted: rsaKey(), untrusted: rsaKey(), relay: rsaKey() };
const records: Record<string, string> = {
  // The relay's own outbound key for the customer's domain (what signs the verification email).
  [`relay1._domainkey.${customer}`]: keys.relay.record,
  [`sel1._domainkey.${customer}`]: keys.customer.record,
  [`arc1._domainkey.${trustedSealer}`]: keys.trusted.record,
  [`arc1._domainkey.${untrustedSealer}`]: keys.untrusted.record,
  [`_dmarc.${customer}`]: "v=DMARC1; p=reject",
  // The forwarder's own SPF: its relay is the address the relay sees.
  [trustedSealer]: "v=spf1 ip4:127.0.0.1 -all",
  [customer]: "v=spf1 -all",
};

let serial = 0;
/** A message from the customer's support address to itself (as the outbound verification email is), with a unique subject. */
function message(opts: { headers?: string[]; token?: string } = {}): { raw: string; subject: string } {
  const subject = `forwarded ${++serial} ${randomPassword().slice(0, 8)}`;
  const lines = [
    `From: Support <support@${customer}>`,
    `To: support@${customer}`,
    `Subject: ${subject}`,
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${randomPassword()}@${customer}>`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    ...(opts.token ? [`X-SmtpConnector-Verification: ${opts.token}`] : []),
    ...(opts.headers ?? []),
    "",
    "Hello, this came in through the customer's cloud service.",
    "",
  ];
  return { raw: lines.join("\r\n"), subject };
}

/** Signed as the relay's outbound path signs (relay/outbound/dkim.ts), d= the customer's domain. */
function relaySigned(raw: Buffer): string {
  const split = raw.indexOf("\r\n\r\n");
  const bodyHash = new RelaxedBodyHash();
  bodyHash.update(raw.subarray(split + 4));
  const key = { domain: customer, selector: "relay1", algorithm: "rsa-sha256" as const, key: createPrivateKey(keys.relay.privateKey) };
  return signatures([key], headerFields(raw.subarray(0, split + 2).toString("latin1")), bodyHash.digest()) + raw.toString("latin1");
}

async function dkimSigned(raw: string): Promise<string> {
  const signed = await dkimSign(raw, {
    signatureData: [{ signingDomain: customer, selector: "sel1", privateKey: keys.customer.privateKey }],
  } as Parameters<typeof dkimSign>[1]);
  assert.deepEqual(signed.errors, []);
  return signed.signatures + raw;
}

/** What the forwarding service does: append its footer (or not), then seal with its ARC key. */
async function sealed(
  raw: string,
  sealer: string,
  key: string,
  footer: boolean,
  authResults = `mx.${sealer}; dkim=pass header.d=${customer}; spf=pass smtp.mailfrom=${customer}; dmarc=pass header.from=${customer}`,
): Promise<string> {
  const forwarded = footer ? `${raw}-- \r\nScanned by the cloud service.\r\n` : raw;
  const seal = await sealMessage(forwarded, { signingDomain: sealer, selector: "arc1", privateKey: key, cv: "none", authResults });
  assert.ok(seal.length > 0, "mailauth sealed the message");
  return seal.toString() + forwarded;
}

/** Our Authentication-Results fields (unfolded) of a delivered message. */
function ours(content: string): string[] {
  const unfolded = content.split("\n\n")[0]!.replace(/\r?\n[ \t]+/g, " ");
  return unfolded.split("\n").filter((l) => /^Authentication-Results:\s*relay\.test\s*;/i.test(l));
}

const crlf = (content: string) => content.replace(/\r?\n/g, "\r\n");

/** python3-dkim's verdicts, with the test's records as DNS. */
const pythonVerdicts = (raw: string) => pythonDkimAndArc(raw, records);

describe("the forwarded listener, behind a real Postfix as the cloud service", () => {
  let dns: TestDns;
  let h: RelayHarness;
  let cloud: Postfix;
  let forwardedPort: number;
  let dir: string;

  before(async () => {
    dns = await startDns();
    for (const [name, value] of Object.entries(records)) dns.txt.set(name, value);
    forwardedPort = await freePort();
    h = await startRelay({
      // A Forwarded domain, and an authenticated one whose support addresses the forwarded listener serves too (after a disconnect).
      domains: [
        { domain: customer, addresses: [`support@${customer}`], credentials: [] },
        { domain: "example.com", addresses: ["support@example.com"], credentials: [{ version: 1, username: "example.com-v1", password }] },
      ],
      // 6 s next-hop budget: the checks get half of it.
      limits: { maxConnectionsPerSource: 4, maxUnauthenticatedCommands: 10, nextHopTimeoutSeconds: 6 },
      configure: async (config) => {
        config.listeners.forwarded = { port: forwardedPort };
        config.listeners.control = { port: await freePort(), tokenSha256: sha256(controlToken) };
        config.domains[0]!.mode = "Forwarded";
        config.forwarded = { trustedArcSealers: [trustedSealer], dnsServers: [dns.address] };
      },
    });
    cloud = await startPostfix({
      relay_domains: customer,
      transport_maps: `inline:{ ${customer}=smtp:[127.0.0.1]:${forwardedPort} }`,
      smtp_tls_security_level: "may",
      smtp_tls_loglevel: "1",
      // SRS as the cloud services do it: the envelope sender only, never a header.
      sender_canonical_maps: `inline:{ support@${customer}=${srsSender} }`,
      sender_canonical_classes: "envelope_sender",
    });
    dir = tempDir("forwarded");
  });
  after(async () => {
    await cloud?.stop();
    await h?.stop();
    await dns?.stop();
  });

  /** Submits a raw message to the cloud service for support@customer; resolves with what reached the helpdesk. */
  async function throughTheCloud(raw: string, subject: string): Promise<SinkMessage> {
    const file = join(dir, `${serial}.eml`);
    writeFileSync(file, raw.endsWith("\r\n") ? raw : `${raw}\r\n`);
    const sent = await swaks([
      "--server",
      `127.0.0.1:${cloud.port}`,
      "--from",
      `support@${customer}`,
      "--to",
      `support@${customer}`,
      "--data",
      file,
    ]);
    assert.equal(sent.code, 0, sent.output);
    await eventuallyTrue(
      `"${subject}" at the helpdesk`,
      () => h.sink.messages().some((m) => m.content.includes(`Subject: ${subject}`)),
      30_000,
    );
    const delivered = h.sink.messages().find((m) => m.content.includes(`Subject: ${subject}`))!;
    assert.deepEqual(
      delivered.rcptTo.map((r) => /<([^>]*)>/.exec(r)?.[1]?.toLowerCase()),
      [`support@${customer}`],
      "the recipient is unchanged",
    );
    return delivered;
  }

  function receipt(token: string): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const req = https.get(
        {
          host: "127.0.0.1",
          port: h.controlPort,
          path: `/v1/verification-receipts/${sha256(token)}`,
          headers: { authorization: `Bearer ${controlToken}` },
          rejectUnauthorized: false,
        },
        (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as Record<string, unknown> }));
        },
      );
      req.on("error", reject);
    });
  }

  const newToken = () =>
    `vrf_${randomPassword()
      .replace(/[^A-Za-z0-9]/g, "")
      .slice(0, 32)}`;

  test("an intact DKIM-signed forward: dkim=pass and dmarc=pass for the customer's domain, SPF of the forwarder's SRS sender, never auth=pass; its token is a forwarded receipt, DKIM-aligned", async () => {
    const token = newToken();
    const { raw, subject } = message({ token });
    const delivered = await throughTheCloud(await dkimSigned(raw), subject);
    const results = ours(delivered.content);
    assert.equal(results.length, 1, delivered.content);
    const ar = results[0]!;
    assert.match(ar, new RegExp(`dkim=pass header\\.d=${customer} header\\.s=sel1`));
    assert.match(ar, new RegExp(`dmarc=pass header\\.from=${customer}`));
    assert.match(
      ar,
      new RegExp(`spf=pass smtp\\.mailfrom=${srsSender.replace(/[.=]/g, "\\$&")}`),
      "SPF speaks of the forwarder's rewritten sender",
    );
    assert.match(ar, /arc=none(;|$)/);
    assert.doesNotMatch(delivered.content, /auth=pass/);
    assert.doesNotMatch(delivered.content, /^X-SmtpConnector-/im);
    assert.match(
      delivered.content,
      /^Received: from mx\.customer\.test \(\[127\.0\.0\.1\]\)\n\tby relay\.test \(smtp-connector\) with ESMTPS id /m,
      "STARTTLS was used, no AUTH",
    );
    assert.match(cloud.log(), /TLS connection established to 127\.0\.0\.1/);
    assert.match(cloud.log(), /status=sent \(250 2\.0\.0 Accepted by the next hop/);
    // python3-dkim agrees the delivered message verifies.
    assert.deepEqual((await pythonVerdicts(crlf(delivered.content))).dkim, [true]);

    const answer = await receipt(token);
    assert.equal(answer.status, 200);
    assert.deepEqual(
      { ...answer.body, arrivedAt: undefined },
      { domain: customer, path: "forwarded", forwarded: { dkimAligned: true, arcTrusted: false }, arrivedAt: undefined },
    );
    assert.ok(!("credentialVersion" in answer.body));
    assert.doesNotMatch(JSON.stringify(answer.body), new RegExp(token));
  });

  test("the relay's own verification email, signed by the relay's outbound signer, comes back dkim=pass and DKIM-aligned (our removal of X-SmtpConnector-Verification does not break it)", async () => {
    const token = newToken();
    const subject = `verification ${++serial} ${randomPassword().slice(0, 8)}`;
    const raw = verificationMessage("relay.test", { from: `support@${customer}`, to: `support@${customer}`, token, subject });
    const delivered = await throughTheCloud(relaySigned(raw), subject);
    const [ar] = ours(delivered.content);
    assert.match(ar!, new RegExp(`dkim=pass header\\.d=${customer} header\\.s=relay1`));
    assert.match(ar!, new RegExp(`dmarc=pass header\\.from=${customer}`));
    assert.doesNotMatch(delivered.content, /^X-SmtpConnector-Verification/im);
    assert.deepEqual((await receipt(token)).body.forwarded, { dkimAligned: true, arcTrusted: false });
  });

  test("a token added to any other message the relay signed does not arrive DKIM-aligned (the relay over-signs X-SmtpConnector-Verification)", async () => {
    const token = newToken();
    const { raw, subject } = message();
    const signed = relaySigned(Buffer.from(raw, "latin1"));
    // Whoever holds a relay-signed reply adds a token he saw, above or below the signature.
    const tampered = signed.replace(`Subject: ${subject}\r\n`, `Subject: ${subject}\r\nX-SmtpConnector-Verification: ${token}\r\n`);
    const delivered = await throughTheCloud(tampered, subject);
    assert.match(ours(delivered.content)[0]!, /dkim=fail header\.d=customer\.example header\.s=relay1/);
    assert.deepEqual((await receipt(token)).body.forwarded, { dkimAligned: false, arcTrusted: false });
  });

  test("a trusted sealer's ARC chain over a body the forwarder changed: dkim=fail, dmarc=fail, arc=pass; the receipt is arcTrusted", async () => {
    const token = newToken();
    const { raw, subject } = message({ token });
    const delivered = await throughTheCloud(await sealed(await dkimSigned(raw), trustedSealer, keys.trusted.privateKey, true), subject);
    const [ar] = ours(delivered.content);
    // mailauth's lenient mode words a body hash mismatch "neutral"; either way not pass.
    assert.match(ar!, new RegExp(`dkim=(?:fail|neutral) header\\.d=${customer}`));
    assert.match(ar!, /dmarc=fail/);
    assert.match(ar!, new RegExp(`arc=pass \\(sealed by ${trustedSealer}, a listed sealer\\)`));
    const python = await pythonVerdicts(crlf(delivered.content));
    assert.deepEqual(python, { dkim: [false], arc: "pass" }, "python3-dkim: the DKIM signature is broken and the ARC chain verifies");
    const answer = await receipt(token);
    assert.deepEqual(answer.body.forwarded, { dkimAligned: false, arcTrusted: true, arcSealer: trustedSealer });
  });

  test("a listed sealer whose own ARC-Authentication-Results say dmarc=fail (a forged From forwarded through some tenant of the service): arc=none, not arcTrusted", async () => {
    const token = newToken();
    const { raw, subject } = message({ token });
    const delivered = await throughTheCloud(
      await sealed(
        raw,
        trustedSealer,
        keys.trusted.privateKey,
        false,
        `mx.${trustedSealer}; dkim=none; spf=fail smtp.mailfrom=${customer}; dmarc=fail header.from=${customer}`,
      ),
      subject,
    );
    const [ar] = ours(delivered.content);
    assert.match(ar!, /arc=none \(a listed sealer, but its results do not vouch for the author's domain\)$/);
    assert.equal((await pythonVerdicts(crlf(delivered.content))).arc, "pass", "the chain itself verifies");
    assert.deepEqual((await receipt(token)).body.forwarded, { dkimAligned: false, arcTrusted: false, arcSealer: trustedSealer });
  });

  test("the same chain sealed by a sealer not on the list: delivered, but nothing in our result reads as passing ARC", async () => {
    const token = newToken();
    const { raw, subject } = message({ token });
    const delivered = await throughTheCloud(await sealed(await dkimSigned(raw), untrustedSealer, keys.untrusted.privateKey, true), subject);
    const [ar] = ours(delivered.content);
    assert.match(ar!, /arc=none \(not a listed sealer\)/);
    assert.doesNotMatch(ar!.replace(/spf=pass[^;]*/, ""), /pass|trusted/i, `nothing but SPF passes: ${ar}`);
    // The chain itself verifies (python3-dkim says so): only the sealer is what makes it worthless.
    assert.equal((await pythonVerdicts(crlf(delivered.content))).arc, "pass");
    assert.deepEqual((await receipt(token)).body.forwarded, { dkimAligned: false, arcTrusted: false, arcSealer: untrustedSealer });
  });

  test("forged results under our authserv-id and our own headers are removed; forged auth=pass never reaches the helpdesk", async () => {
    const { raw, subject } = message({
      headers: [
        "Authentication-Results: relay.test; auth=pass (plain) smtp.auth=example.com-v1",
        `Authentication-Results: relay.test;\r\n dkim=pass header.d=${customer}; arc=pass`,
        "Authentication-Results: mx.other.example; spf=pass smtp.mailfrom=x@other.example",
        "X-SmtpConnector-Auth: domain=customer.example; version=1",
      ],
    });
    const delivered = await throughTheCloud(raw, subject);
    const results = ours(delivered.content);
    assert.equal(results.length, 1, "only ours is left under our authserv-id");
    assert.match(results[0]!, /dkim=none/);
    assert.match(results[0]!, /dmarc=fail header\.from=customer\.example/);
    assert.doesNotMatch(delivered.content, /auth=pass/);
    assert.doesNotMatch(delivered.content, /^X-SmtpConnector-Auth/im);
    assert.match(delivered.content, /^Authentication-Results: mx\.other\.example; spf=pass/m, "another server's results are kept");
  });

  test("AUTH is neither advertised nor accepted, before or after STARTTLS", async () => {
    const smtp = await RawSmtp.connect(forwardedPort);
    try {
      assert.match(await smtp.reply(), /^220 /);
      const plain = await smtp.command("EHLO probe.example");
      assert.match(plain, /STARTTLS/);
      assert.doesNotMatch(plain, /AUTH/);
      assert.match(await smtp.authPlain("example.com-v1", "x"), /^5\d\d /);
      await smtp.startTls();
      const secure = await smtp.command("EHLO probe.example");
      assert.doesNotMatch(secure, /AUTH/);
      assert.match(await smtp.authPlain("example.com-v1", "x"), /^5\d\d /);
      assert.match(await smtp.command("AUTH LOGIN"), /^5\d\d /);
    } finally {
      smtp.close();
    }
  });

  test("never an open relay: a recipient that is not a support address is refused, on a raw socket and from swaks", async () => {
    const before = h.sink.messages().length;
    const smtp = await RawSmtp.connect(forwardedPort);
    try {
      await smtp.reply();
      await smtp.command("EHLO probe.example");
      assert.match(await smtp.command("MAIL FROM:<spammer@evil.example>"), /^250 /);
      for (const rcpt of [`other@${customer}`, "victim@elsewhere.example", `support%elsewhere.example@${customer}`]) {
        assert.match(await smtp.command(`RCPT TO:<${rcpt}>`), /^550 5\.7\.1 /, rcpt);
      }
      // Forms that let two readers see two addresses: refused, by smtp-server's parser or ours.
      for (const rcpt of [`"support@${customer}"@elsewhere.example`, `support@${customer}@elsewhere.example`, `support@${customer}.`]) {
        assert.match(await smtp.command(`RCPT TO:<${rcpt}>`), /^5\d\d /, rcpt);
      }
      assert.match(await smtp.command("DATA"), /^503 /);
    } finally {
      smtp.close();
    }
    const probe = await swaks([
      "--server",
      `127.0.0.1:${forwardedPort}`,
      "--from",
      "spammer@evil.example",
      "--to",
      "victim@elsewhere.example",
      "--tls-optional",
    ]);
    assert.notEqual(probe.code, 0);
    assert.match(probe.output, /550 5\.7\.1 Relaying denied/);
    assert.equal(h.sink.messages().length, before, "nothing was delivered");
  });

  test("an authenticated domain's support address is served too, untagged; a token that arrives authenticated is path authenticated", async () => {
    const subject = `after a disconnect ${randomPassword().slice(0, 8)}`;
    const sent = await swaks([
      "--server",
      `127.0.0.1:${forwardedPort}`,
      "--from",
      "someone@sender.example",
      "--to",
      "support@example.com",
      "--header",
      `Subject: ${subject}`,
      "--tls-optional",
    ]);
    assert.equal(sent.code, 0, sent.output);
    await eventuallyTrue(
      "the message at the helpdesk",
      () => h.sink.messages().some((m) => m.content.includes(`Subject: ${subject}`)),
      10_000,
    );
    const delivered = h.sink.messages().find((m) => m.content.includes(`Subject: ${subject}`))!;
    assert.doesNotMatch(delivered.content, /auth=pass/);
    assert.match(
      ours(delivered.content)[0]!,
      /spf=none smtp\.mailfrom=someone@sender\.example;\s+dkim=none;\s+dmarc=none header\.from=sender\.example;\s+arc=none$/,
    );

    const token = newToken();
    const authenticated = await swaksAuth(
      h.implicitPort,
      { user: "example.com-v1", password },
      ["--add-header", `X-SmtpConnector-Verification: ${token}`],
      { implicit: true, from: "support@example.com" },
    );
    assert.equal(authenticated.code, 0, authenticated.output);
    await eventuallyTrue("the receipt", async () => (await receipt(token)).status === 200, 10_000);
    const answer = await receipt(token);
    assert.deepEqual(
      { ...answer.body, arrivedAt: undefined },
      { domain: "example.com", credentialVersion: 1, path: "authenticated", arrivedAt: undefined },
    );
  });

  test("one domain per message: a recipient of another domain waits for its own transaction (452)", async () => {
    const smtp = await RawSmtp.connect(forwardedPort);
    try {
      await smtp.reply();
      await smtp.command("EHLO probe.example");
      await smtp.command("MAIL FROM:<someone@sender.example>");
      assert.match(await smtp.command(`RCPT TO:<support@${customer}>`), /^250 /);
      assert.match(await smtp.command("RCPT TO:<support@example.com>"), /^452 4\.5\.3 /);
    } finally {
      smtp.close();
    }
  });

  test("the authenticated listeners' hardening holds here: bare line endings, size, connections per source, commands without progress", async () => {
    const session = async (from = "127.0.0.3") => {
      const smtp = await RawSmtp.connect(forwardedPort, { localAddress: from });
      assert.match(await smtp.reply(), /^220 /);
      await smtp.command("EHLO probe.example");
      return smtp;
    };
    const transaction = async (smtp: RawSmtp, data: string) => {
      assert.match(await smtp.command("MAIL FROM:<someone@sender.example>"), /^250 /);
      assert.match(await smtp.command(`RCPT TO:<support@${customer}>`), /^250 /);
      assert.match(await smtp.command("DATA"), /^354 /);
      smtp.write(data);
      return smtp.reply();
    };
    const before = h.sink.messages().length;
    const smtp = await session();
    try {
      // SMTP smuggling: a bare LF in the header section refuses the message.
      assert.match(await transaction(smtp, "Subject: a\nX-Smuggled: 1\r\n\r\nbody\r\n.\r\n"), /^554 5\.6\.0 Bare CR or LF/);
      assert.match(await transaction(smtp, `Subject: big\r\n\r\n${"x".repeat(998)}\r\n`.repeat(1100) + ".\r\n"), /^552 /);
      // A forwarder sends many messages on one connection, far beyond the command limit.
      for (let i = 0; i < 4; i++) assert.match(await transaction(smtp, `Subject: many ${i}\r\n\r\nbody\r\n.\r\n`), /^250 /);
    } finally {
      smtp.close();
    }
    await eventuallyTrue("the four messages", () => h.sink.messages().length === before + 4, 10_000);
    // A prober gets no more commands between accepted recipients than an unauthenticated session has.
    const prober = await session();
    try {
      await prober.command("MAIL FROM:<someone@sender.example>");
      let reply = "";
      for (let i = 0; i < 12 && !reply.startsWith("421"); i++) reply = await prober.command(`RCPT TO:<guess${i}@${customer}>`);
      assert.match(reply, /^421 4\.7\.0 Too many commands/);
    } finally {
      prober.close();
    }
    const open = await Promise.all([1, 2, 3, 4].map(() => RawSmtp.connect(forwardedPort, { localAddress: "127.0.0.4" })));
    try {
      for (const s of open) assert.match(await s.reply(), /^220 /);
      const fifth = await RawSmtp.connect(forwardedPort, { localAddress: "127.0.0.4" });
      assert.match(await fifth.reply(), /^421 4\.7\.0 Too many connections from your address/);
      fifth.close();
    } finally {
      open.forEach((s) => s.close());
    }
  });

  test("the command limit stays on after an accepted recipient: a prober who knows one support address gets no more guesses, not even by RSET and that address again", async () => {
    const prober = await RawSmtp.connect(forwardedPort, { localAddress: "127.0.0.5" });
    try {
      await prober.reply();
      await prober.command("EHLO probe.example");
      await prober.command("MAIL FROM:<someone@sender.example>");
      assert.match(await prober.command(`RCPT TO:<support@${customer}>`), /^250 /);
      const commands = [
        ...Array.from({ length: 4 }, (_, i) => `RCPT TO:<guess${i}@${customer}>`),
        "RSET",
        "MAIL FROM:<someone@sender.example>",
        `RCPT TO:<support@${customer}>`,
      ];
      let reply = "";
      for (let i = 0; i < 30 && !reply.startsWith("421"); i++) reply = await prober.command(commands[i % commands.length]!);
      assert.match(reply, /^421 4\.7\.0 Too many commands/);
    } finally {
      prober.close();
    }
  });

  /** One message straight to the forwarded listener on a raw socket; the reply to its final dot and how long it took. */
  async function direct(data: string, from = "someone@sender.example"): Promise<{ reply: string; ms: number }> {
    const smtp = await RawSmtp.connect(forwardedPort);
    try {
      await smtp.reply();
      await smtp.command("EHLO probe.example");
      assert.match(await smtp.command(`MAIL FROM:<${from}>`), /^250 /);
      assert.match(await smtp.command(`RCPT TO:<support@${customer}>`), /^250 /);
      assert.match(await smtp.command("DATA"), /^354 /);
      const started = Date.now();
      smtp.write(`${data}\r\n.\r\n`);
      const reply = await Promise.race([
        smtp.reply(),
        new Promise<string>((resolve) => setTimeout(() => resolve("no reply within 15 s"), 15_000).unref()),
      ]);
      return { reply, ms: Date.now() - started };
    } finally {
      smtp.close();
    }
  }

  test("bounded work: only the first 5 DKIM signatures are evaluated, an ARC chain of more than 8 sets not at all, and our result says so", async () => {
    const { raw, subject } = message();
    const fake = (i: number) =>
      `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=${customer}; s=sel1; l=${i}; h=from; bh=${"A".repeat(43)}=; b=${"B".repeat(40)}${i}`;
    const arc = Array.from(
      { length: 9 },
      (_, i) => `ARC-Seal: i=${9 - i}; a=rsa-sha256; cv=pass; d=${trustedSealer}; s=arc1; b=${"C".repeat(40)}`,
    );
    const body = "x".repeat(200);
    const { reply } = await direct(
      [...arc, ...Array.from({ length: 40 }, (_, i) => fake(i + 1)), raw.replace(/\r\n$/, ""), body].join("\r\n"),
    );
    assert.match(reply, /^250 /);
    await eventuallyTrue(
      "the message at the helpdesk",
      () => h.sink.messages().some((m) => m.content.includes(`Subject: ${subject}`)),
      10_000,
    );
    const [ar] = ours(h.sink.messages().find((m) => m.content.includes(`Subject: ${subject}`))!.content);
    assert.equal(ar!.match(/dkim=/g)?.length, 5, ar);
    assert.match(ar!, /\(only the first 5 DKIM signatures were evaluated, 35 more were not\)/);
    assert.match(ar!, /arc=none \(more than 8 ARC sets, not evaluated\)/);
  });

  test("a nameserver that never answers: the sender gets 451 within the checks' budget, and nothing is held afterwards", async () => {
    dns.silent.add("slow.example");
    try {
      const lines = [
        `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=slow.example; s=s1; h=from; bh=${"A".repeat(43)}=; b=${"B".repeat(40)}`,
        `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=slow.example; s=s2; h=from; bh=${"A".repeat(43)}=; b=${"B".repeat(40)}`,
        "From: someone@slow.example",
        "Subject: slow",
        "",
        "body",
      ];
      const { reply, ms } = await direct(lines.join("\r\n"), "someone@slow.example");
      assert.match(reply, /^451 4\.4\.3 The message could not be checked in time/);
      assert.ok(ms < 5_000, `answered after ${ms} ms (budget 3 s)`);
      assert.ok(dns.unanswered > 0, "the lookups went to the silent server");
      const active = async () =>
        /^smtpc_relay_forwarded_checks_active 0$/m.test(await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text());
      await eventuallyTrue("no checks running (mailauth let go of the message)", active, 2_000);
    } finally {
      dns.silent.delete("slow.example");
    }
  });

  test("its sessions and messages have their own metric labels", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text();
    assert.match(metrics, /^smtpc_relay_sessions_total\{listener="forwarded"\} [1-9]/m);
    assert.match(metrics, /^smtpc_relay_messages_total\{direction="forwarded",result="Delivered"\} [1-9]/m);
    assert.match(metrics, /^smtpc_relay_forwarded_checks_total\{verdict="ArcTrusted"\} [1-9]/m);
    assert.match(metrics, /^smtpc_relay_messages_total\{direction="forwarded",result="BareLineEnding"\} 1$/m);
    assert.match(metrics, /^smtpc_relay_connections_refused_total\{listener="forwarded",reason="PerSourceLimit"\} 1$/m);
    // The one authenticated message of the test above, and no forwarded one among them.
    assert.match(metrics, /^smtpc_relay_messages_total\{direction="inbound",result="Delivered"\} 1$/m);
  });
});
