// Attack class: sending as someone else through the helpdesk's submission
// credential. swaks submits to the relay's submission listener (STARTTLS, AUTH
// PLAIN); a real Postfix plays the customer's server and hands what it takes to
// smtp-sink. Each row is one From:/Sender: form: the next trick is one row away.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freePort, randomPassword, sha256, startSmtpSink, swaks, type SmtpSink } from "../../support/mail.js";
import { startSubmissionServer, type Postfix } from "../../support/postfix.js";
import { exampleDomain, startRelay, type RelayHarness } from "../../support/relay.js";
import { eventuallyTrue } from "../../support/wait.js";

const submission = { username: "helpdesk-example.com-v1", password: randomPassword() };
const login = {
  username: "u1@example.com",
  password: randomPassword(),
  senders: ["support@example.com", "billing@example.com", "news@example.com"],
};

describe("adversarial: submission as another author", () => {
  let h: RelayHarness;
  let postfix: Postfix & { certFile: string };
  let recipientSide: SmtpSink;

  before(async () => {
    recipientSide = await startSmtpSink();
    postfix = await startSubmissionServer({ relayTo: recipientSide.port, users: [login] });
    h = await startRelay({
      domains: [exampleDomain(randomPassword())],
      configure: async (config, dir) => {
        writeFileSync(join(dir, "u1.password"), login.password);
        const server = () => ({
          host: "127.0.0.1",
          port: postfix.port,
          tls: "StartTLS" as const,
          caFile: postfix.certFile,
          username: login.username,
          passwordFile: "u1.password",
        });
        config.listeners.submission = { port: await freePort() };
        config.outbound = { systemDomains: ["helpdesk.test"], unconnectedSenders: "Refuse" };
        config.domains[0]!.outbound = {
          submission: [{ version: 1, username: submission.username, passwordSha256: sha256(submission.password), state: "Active" }],
          dkim: [],
          senders: [
            { address: "support@example.com", ready: true, server: server() },
            { address: "billing@example.com", ready: true, server: server() },
            // Configured, its verification still pending.
            { address: "news@example.com", ready: false, server: server() },
          ],
        };
      },
    });
  });
  after(async () => {
    await h?.stop();
    await postfix?.stop();
    await recipientSide?.stop();
  });

  /** One submission by swaks; `headers` are the message's header lines (swaks adds none with --data). */
  const submit = (from: string, headers: string[], tag: string) =>
    swaks([
      "--server",
      `127.0.0.1:${h.submissionPort}`,
      "--tls" /* swaks does not verify the certificate: the relay's test one is self-signed */,
      "--auth",
      "PLAIN",
      "--auth-user",
      submission.username,
      "--auth-password",
      submission.password,
      "--from",
      from,
      "--to",
      "customer@elsewhere.test",
      "--data",
      [...headers, `Subject: ${tag}`, "", `body ${tag}`, ""].join("\\n"),
    ]);
  const arrivedAtRecipient = (tag: string) => recipientSide.messages().some((m) => m.content.includes(`body ${tag}`));

  // [case, header lines, expected: "Accepted" or the refusal reason]
  const authors: [string, string[], string][] = [
    ["the envelope's address", ["From: support@example.com"], "Accepted"],
    ["a display name, the address in other case", ['From: "Example Support (Team)" <Support@Example.COM>'], "Accepted"],
    ["an encoded-word display name", ["From: =?utf-8?q?Example_Support?= <support@example.com>"], "Accepted"],
    ["nested comments with quoted-pairs", ["From: support@example.com (Support (the \\) team))"], "Accepted"],
    ["Sender: the same address", ["From: Example Support <support@example.com>", "Sender: <support@example.com>"], "Accepted"],
    ["another Ready address of the domain", ["From: billing@example.com"], "FromMismatch"],
    ["an address of the domain that is no support address", ["From: ceo@example.com"], "FromMismatch"],
    ["a helpdesk system-domain address", ["From: Helpdesk <noreply@helpdesk.test>"], "FromSystemDomain"],
    ["two From: fields", ["From: support@example.com", "From: ceo@example.com"], "FromRepeated"],
    ["two From: fields, one with a space before the colon", ["From: support@example.com", "From : ceo@example.com"], "FromRepeated"],
    ["no From: field", ["To: customer@elsewhere.test"], "FromMissing"],
    ["group syntax", ["From: Support: support@example.com;"], "FromNotOneMailbox"],
    ["an empty group", ["From: undisclosed-senders:;"], "FromNotOneMailbox"],
    ["two mailboxes", ["From: support@example.com, ceo@example.com"], "FromNotOneMailbox"],
    ["an encoded word in the local part", ["From: =?x?q?ceo=40example.com=3e=00?=support@example.com"], "FromMismatch"],
    ["an encoded word for the whole address", ["From: =?utf-8?b?Y2VvQGV4YW1wbGUuY29t?="], "FromMalformed"],
    ["a quoted display name that is an address", ['From: "support@example.com" <ceo@example.com>'], "FromMismatch"],
    ["an unquoted address as display name", ["From: support@example.com <ceo@example.com>"], "FromMalformed"],
    ["a source route", ["From: <@evil.test:support@example.com>"], "FromMalformed"],
    ["a comment inside the address", ["From: support(x)@example.com"], "FromMalformed"],
    ["a quoted local part", ['From: "support"@example.com'], "FromMalformed"],
    ["Sender: another address", ["From: support@example.com", "Sender: ceo@example.com"], "SenderMismatch"],
    ["Resent-From: another address", ["From: support@example.com", "Resent-From: ceo@example.com"], "ResentMismatch"],
    // The message filter ends the header section at the first line that is no field (writing the empty line
    // itself): a From: after it is body to every reader, and the check never holds more than the header section.
    [
      "a second From: after a line that is no field",
      ["From: support@example.com", "no colon here", "From: ceo@example.com", ...Array<string>(100).fill("x".repeat(800))],
      "Accepted",
    ],
  ];
  for (const [name, headers, expected] of authors) {
    test(`From: ${name} → ${expected}`, async () => {
      const tag = `author-${authors.findIndex((a) => a[0] === name)}-${randomPassword().slice(0, 8)}`;
      const sent = await submit("support@example.com", headers, tag);
      if (expected === "Accepted") {
        assert.match(sent.output, /<~\s+250 2\.0\.0 Accepted by the customer's server/, sent.output);
        await eventuallyTrue(`${tag} at the recipient's side`, () => arrivedAtRecipient(tag), 20_000);
        return;
      }
      assert.match(sent.output, new RegExp(`<~\\* 550 5\\.7\\.1 Header refused \\(${expected}\\)`), sent.output);
      const metrics = await (await fetch(`http://127.0.0.1:${h.healthPort}/metrics`)).text();
      assert.match(metrics, new RegExp(`smtpc_relay_outbound_messages_total\\{sender="support@example.com",result="${expected}"\\} [1-9]`));
      assert.ok(!arrivedAtRecipient(tag), "a refused message must not reach the recipient");
    });
  }

  // [envelope sender, expected MAIL reply]: a transient state is a 4xx, the helpdesk's queue retries.
  const senders: [string, string, RegExp][] = [
    ["news@example.com", "451", /<~\* 451 4\.7\.1 news@example\.com is a support address of example\.com that is not Ready yet/],
    ["sales@example.com", "550", /<~\* 550 5\.7\.1 sales@example\.com is not a support address of example\.com/],
  ];
  for (const [from, code, expected] of senders) {
    test(`MAIL FROM:<${from}> → ${code}`, async () => {
      const sent = await submit(from, [`From: ${from}`], `sender-${from}`);
      assert.match(sent.output, expected, sent.output);
    });
  }
});
