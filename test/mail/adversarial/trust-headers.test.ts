// Attack class: forged trust. A sender writes a field that a reader at the
// next hop takes for the relay's own trust tag (Authentication-Results with
// our authserv-id, or X-SmtpConnector-*). Each row is a header section a
// customer server could send; the reader is mailauth, fed the bytes smtp-sink
// received. Every row is first shown to be an attack (mailauth, reading our
// fields followed by the section as sent, sees forged trust), then the relay
// must deliver a message in which mailauth reads exactly our fields.
// The next spelling found is one more row.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { randomPassword } from "../../support/mail.js";
import { exampleDomain, startRelay, type RelayHarness } from "../../support/relay.js";
import { headerSectionOf, mailauthAuthservId, ourAuthResults, ourTrustHeader, sendRaw, trustAsRead } from "./inbound-message.js";

const password = randomPassword();
const forgedResult = "auth=pass smtp.auth=forged@evil.org";

/** Authentication-Results values (after the colon) that carry our authserv-id in RFC 5322/8601 CFWS syntax. */
const authservIdSpellings: { name: string; value: string }[] = [
  { name: "plain", value: ` relay.test; ${forgedResult}` },
  { name: "upper case", value: ` RELAY.TEST; ${forgedResult}` },
  { name: "a comment before the id", value: ` (checked) relay.test; ${forgedResult}` },
  { name: "nested comments before the id", value: ` (a (b) c) relay.test; ${forgedResult}` },
  { name: "two comments nested side by side", value: ` ((a)(b)) relay.test; ${forgedResult}` },
  { name: "a quoted-pair ')' inside a comment", value: ` (a \\) b) relay.test; ${forgedResult}` },
  { name: "a quoted-pair '(' inside a comment", value: ` (a \\( b) relay.test; ${forgedResult}` },
  { name: "a comment glued to both sides of the id", value: ` (x)relay.test(y); ${forgedResult}` },
  { name: "a comment inside the id (mailauth joins the halves)", value: ` relay(x).test; ${forgedResult}` },
  { name: "the id as a quoted-string", value: ` "relay.test"; ${forgedResult}` },
  { name: "the id as a quoted-string with a quoted-pair", value: ` "relay\\.test"; ${forgedResult}` },
  { name: "escaped quotes around the id (mailauth drops the backslashes; found by review)", value: ` \\"relay.test\\"; ${forgedResult}` },
  { name: "escaped quotes and an escaped dot", value: ` \\"relay\\.test\\"; ${forgedResult}` },
  { name: "a backslash inside the id (mailauth drops it)", value: ` rel\\ay.test; ${forgedResult}` },
  { name: "an authres-version after the id", value: ` relay.test 1; ${forgedResult}` },
  { name: "folded before the id and before the result", value: `\r\n relay.test;\r\n ${forgedResult}` },
  { name: "folded inside nested comments", value: ` (a\r\n (b)\r\n c) relay.test; ${forgedResult}` },
  { name: "the id after the result (mailauth takes the first part without '=')", value: ` ${forgedResult}; relay.test` },
  { name: "a Unicode space before the id (EM SPACE, UTF-8)", value: ` \u2003relay.test; ${forgedResult}` },
];

/** Header sections that hide a forged trust field from a filter that reads the section differently from mailauth. */
const hiddenFields: { name: string; section: string }[] = [
  { name: "our trust header as sent", section: "X-SmtpConnector-Auth: domain=evil.org; version=99\r\n" },
  { name: "our trust header, white space before the colon", section: "X-SmtpConnector-Auth\t : domain=evil.org; version=99\r\n" },
  { name: "our trust header, folded between name and colon", section: "X-SmtpConnector-Auth\r\n : domain=evil.org; version=99\r\n" },
  {
    name: "our trust header after a line that is not a field",
    section: "Subject: hi\r\nthis line has no colon\r\nX-SmtpConnector-Auth: domain=evil.org; version=99\r\n",
  },
  {
    name: "Authentication-Results after a line that is not a field",
    section: `Subject: hi\r\nno colon here\r\nAuthentication-Results: relay.test; ${forgedResult}\r\n`,
  },
  {
    name: "Authentication-Results after a line that starts with ':'",
    section: `Subject: hi\r\n:odd\r\nAuthentication-Results: relay.test; ${forgedResult}\r\n`,
  },
  { name: "a first line that continues our trust header", section: " ; domain=evil.org; version=99\r\nSubject: hi\r\n" },
  {
    name: "a first line that continues our trust header, with a field name in it",
    section: "\tX-SmtpConnector-Auth: domain=evil.org\r\nSubject: hi\r\n",
  },
];

describe("forged trust fields never reach the next hop as ours", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)] });
  });
  after(() => h.stop());

  /** Sends the header section, then asserts mailauth reads exactly our trust fields in what the next hop got. */
  async function assertOnlyOursArrive(name: string, section: string): Promise<void> {
    const asIfPassedThrough = trustAsRead(Buffer.from(`${ourAuthResults}\r\n${ourTrustHeader}\r\n${section}\r\n`, "utf8"));
    assert.notDeepEqual(
      asIfPassedThrough,
      { authResults: [ourAuthResults], trustHeaders: [ourTrustHeader] },
      `${name}: not an attack on mailauth`,
    );
    const before = h.sink.messages().length;
    const reply = await sendRaw(h, password, `${section}Message-ID: <${before}@users.example.org>\r\n\r\nbody\r\n`);
    assert.match(reply, /^250 /, `${name}: ${reply}`);
    const delivered = h.sink.messages().slice(before);
    assert.equal(delivered.length, 1);
    assert.deepEqual(
      trustAsRead(headerSectionOf(delivered[0]!.content)),
      { authResults: [ourAuthResults], trustHeaders: [ourTrustHeader] },
      name,
    );
  }

  for (const row of authservIdSpellings) {
    test(`Authentication-Results, our authserv-id spelt with ${row.name}`, async () => {
      const field = `Authentication-Results:${row.value}`;
      assert.equal(mailauthAuthservId(field), "relay.test", "mailauth reads the forged field as ours");
      await assertOnlyOursArrive(row.name, `${field}\r\n`);
    });
  }

  for (const row of hiddenFields) {
    test(row.name, () => assertOnlyOursArrive(row.name, row.section));
  }

  test("another server's Authentication-Results stays, whatever its comments say", async () => {
    const theirs = "Authentication-Results: mx.upstream.example (not relay.test); spf=pass smtp.mailfrom=users.example.org";
    const before = h.sink.messages().length;
    assert.match(await sendRaw(h, password, `${theirs}\r\nSubject: theirs\r\n\r\nbody\r\n`), /^250 /);
    assert.ok(h.sink.messages()[before]!.content.includes(`${theirs}\n`));
  });
});
