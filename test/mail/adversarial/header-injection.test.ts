// Attack class: header injection by line endings. A bare CR or LF inside the
// header section is one field to a reader that ends lines at CRLF only, and
// two to one that ends them at any CR or LF (as the filter's normalisation
// did: `Subject: x\rReply-To: evil` reached the next hop as two fields). RFC
// 5322 section 2.2 allows CR and LF in a field only as the CRLF of a fold, so
// the relay refuses the message (554 5.6.0) rather than guess which reading
// the sender meant; in the body the same bytes are normalised to CRLF as
// before (SMTP smuggling, hardening.test.ts). The next variant is one more row.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { randomPassword } from "../../support/mail.js";
import { exampleDomain, startRelay, type RelayHarness } from "../../support/relay.js";
import { sendRaw } from "./inbound-message.js";

const password = randomPassword();

const refused: { name: string; message: string }[] = [
  { name: "bare CR inside a field value", message: "Subject: x\rReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  { name: "bare LF inside a field value", message: "Subject: x\nReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  { name: "CR CR LF (the first CR bare)", message: "Subject: x\r\r\nReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  { name: "bare LF inside a folded continuation", message: "Subject: x\r\n y\nReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  { name: "bare CR before the colon", message: "X-Note\rReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  {
    name: "bare CR before our own trust header's name",
    message: "Subject: x\rX-SmtpConnector-Auth: domain=evil.org; version=99\r\n\r\nbody\r\n",
  },
  { name: "bare LF as the empty line that ends the header section", message: "Subject: x\r\n\nReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  { name: "bare CR as the empty line that ends the header section", message: "Subject: x\r\n\rReply-To: evil@evil.org\r\n\r\nbody\r\n" },
  { name: "every line ending in bare LF", message: "Subject: x\nReply-To: evil@evil.org\n\nbody\n" },
];

const delivered: { name: string; message: string; arrives: RegExp }[] = [
  {
    name: "CRLF only, a folded field",
    message: "Subject: x\r\n y\r\nReply-To: someone@users.example.org\r\n\r\nbody\r\n",
    arrives: /\nSubject: x\n y\nReply-To: someone@users\.example\.org\n\nbody\n/,
  },
  {
    name: "bare CR and bare LF in the body (normalised to CRLF)",
    message: "Subject: x\r\n\r\nline one\rline two\nline three\r\n",
    arrives: /\nSubject: x\n\nline one\nline two\nline three\n/,
  },
];

describe("a bare CR or LF in the header section is refused, never turned into a new field", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)] });
  });
  after(() => h.stop());

  for (const row of refused) {
    test(row.name, async () => {
      const before = h.sink.messages().length;
      const reply = await sendRaw(h, password, row.message);
      assert.match(reply, /^554 5\.6\.0 Bare CR or LF in the header section/, reply);
      assert.equal(h.sink.messages().length, before, "nothing reaches the next hop");
    });
  }

  for (const row of delivered) {
    test(`delivered: ${row.name}`, async () => {
      const before = h.sink.messages().length;
      assert.match(await sendRaw(h, password, row.message), /^250 /);
      const messages = h.sink.messages().slice(before);
      assert.equal(messages.length, 1);
      assert.match(messages[0]!.content, row.arrives);
    });
  }
});
