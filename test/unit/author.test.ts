// The From:/Sender: rule of the submission path on header sections alone,
// for forms a mail client rarely writes (test/mail/adversarial/submission.test.ts
// sends the common tricks through the relay and Postfix).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { authorVerdict } from "../../relay/outbound/author.js";

const systemDomains = new Set(["helpdesk.test"]);
const verdict = (...fields: string[]) => {
  const v = authorVerdict(fields.map((f) => `${f}\r\n`).join(""), "support@example.com", systemDomains);
  return v.ok ? "Accepted" : v.reason;
};

describe("the author of a submission", () => {
  // [case, header fields, verdict]
  const cases: [string, string[], string][] = [
    ["folded From:", ["From: Example Support\r\n <support@example.com>"], "Accepted"],
    ["a comment holding a comma and an address", ["From: <support@example.com> (not ceo@example.com, really)"], "Accepted"],
    ["a nested comment with an escaped parenthesis", ["From: support@example.com (a (b \\) c) d)"], "Accepted"],
    [
      "UTF-8 in the display name (RFC 6532)",
      [`From: ${Buffer.from("Équipe Support", "utf8").toString("latin1")} <support@example.com>`],
      "Accepted",
    ],
    ["obs-phrase with a dot", ["From: John Q. Public <support@example.com>"], "Accepted"],
    ["upper-case domain and local part", ["From: SUPPORT@EXAMPLE.COM"], "Accepted"],
    ["field name in another case", ["FROM: support@example.com"], "Accepted"],
    ["an unterminated comment", ["From: support@example.com (oops"], "FromMalformed"],
    ["a comment that hides the closing bracket", ["From: <support@example.com (>)"], "FromMalformed"],
    ["an unterminated quoted string", ['From: "Support <support@example.com>'], "FromMalformed"],
    ["a NUL inside", ["From: support@example.com\0ceo@example.com"], "FromMalformed"],
    ["a trailing empty list element", ["From: support@example.com,"], "FromNotOneMailbox"],
    ["a leading empty list element", ["From: , support@example.com"], "FromNotOneMailbox"],
    ["an empty From:", ["From:"], "FromNotOneMailbox"],
    ["an address literal", ["From: support@[192.0.2.1]"], "FromMalformed"],
    ["a trailing dot", ["From: support@example.com."], "FromMalformed"],
    ["two angle addresses", ["From: <support@example.com> <ceo@example.com>"], "FromMalformed"],
    ["a subdomain", ["From: support@mail.example.com"], "FromMismatch"],
    ["a system domain", ["From: support@helpdesk.test"], "FromSystemDomain"],
    ["two Sender: fields", ["From: support@example.com", "Sender: support@example.com", "Sender: support@example.com"], "SenderMismatch"],
    ["Sender: with two mailboxes", ["From: support@example.com", "Sender: support@example.com, ceo@example.com"], "SenderMismatch"],
    ["Resent-Sender: the same", ["From: support@example.com", "Resent-Sender: <support@example.com>"], "Accepted"],
  ];
  for (const [name, fields, expected] of cases) {
    test(`${name} → ${expected}`, () => assert.equal(verdict(...fields), expected));
  }
});
