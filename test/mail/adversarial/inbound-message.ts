// What the adversarial mail tests share: an authenticated raw session to the
// relay, and mailauth's own readers of header sections, Authentication-Results
// fields among them (mailauth ships no types for these two modules).
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { RawSmtp, type RelayHarness } from "../../support/relay.js";

const require = createRequire(import.meta.url);

interface MailauthHeaderRow {
  key: string | null;
  line: Buffer;
}
const { parseHeaders } = require("mailauth/lib/tools.js") as { parseHeaders: (buf: Buffer) => { parsed: MailauthHeaderRow[] } };
const headerParser = require("mailauth/lib/parse-dkim-headers.js") as (line: string | Buffer) => {
  parsed: { value?: string } & Record<string, unknown>;
};

export const user = "example.com-v1";
export const authservId = "relay.test";
/** The trust fields the relay writes for a message sent as `user` (see traceHeaders). */
export const ourAuthResults = `Authentication-Results: ${authservId}; auth=pass (plain) smtp.auth=${user}`;
export const ourTrustHeader = "X-SmtpConnector-Auth: domain=example.com; version=1";

/**
 * The authserv-id mailauth reads from an Authentication-Results field. mailauth
 * returns a quoted-string id with its quotes and an id with its authres-version
 * ("relay.test 1"); RFC 8601 section 2.2 reads the quoted-string's content and
 * the id before the version, and so does this, as a reader of mailauth's
 * result must to compare ids.
 */
export function mailauthAuthservId(field: string | Buffer): string {
  const value = headerParser(field).parsed.value ?? "";
  const unquoted = /^"((?:[^"\\]|\\.)*)"$/.exec(value);
  if (unquoted) return unquoted[1]!.replace(/\\(.)/g, "$1");
  return value.replace(/ \d+$/, "");
}

/** The trust fields mailauth reads in a header section: Authentication-Results it takes for ours, and X-SmtpConnector-*. */
export function trustAsRead(headerSection: Buffer): { authResults: string[]; trustHeaders: string[] } {
  const rows = parseHeaders(headerSection).parsed;
  const text = (row: MailauthHeaderRow) => row.line.toString("utf8").replace(/\r\n/g, "\n");
  return {
    authResults: rows.filter((r) => r.key === "authentication-results" && mailauthAuthservId(r.line) === authservId).map(text),
    trustHeaders: rows.filter((r) => r.key?.startsWith("x-smtpconnector-")).map(text),
  };
}

/** The header section of a message as smtp-sink stored it (LF line endings; the sink's reader gives its bytes as Latin-1). */
export function headerSectionOf(content: string): Buffer {
  const end = content.indexOf("\n\n");
  return Buffer.from(end === -1 ? content : content.slice(0, end + 1), "latin1");
}

/** An authenticated session over implicit TLS, ready for MAIL FROM. */
export async function session(h: RelayHarness, password: string): Promise<RawSmtp> {
  const client = await RawSmtp.connect(h.implicitPort, { implicitTls: true });
  assert.match(await client.reply(), /^220 /);
  await client.command("EHLO client.test");
  assert.match(await client.authPlain(user, password), /^235 /);
  return client;
}

/**
 * Sends one message as raw bytes after DATA (a string as UTF-8) and returns
 * the final reply. Where a read ends is up to TCP and TLS: line endings split
 * across reads are tested on the filter itself (test/unit/message-filter.test.ts).
 */
export async function sendRaw(h: RelayHarness, password: string, message: string | Buffer): Promise<string> {
  const client = await session(h, password);
  try {
    assert.match(await client.command("MAIL FROM:<customer@users.example.org>"), /^250 /);
    assert.match(await client.command("RCPT TO:<support@example.com>"), /^250 /);
    assert.match(await client.command("DATA"), /^354 /);
    client.write(typeof message === "string" ? Buffer.from(message, "utf8") : message);
    client.write("\r\n.\r\n");
    return await client.reply(30_000);
  } finally {
    client.close();
  }
}
