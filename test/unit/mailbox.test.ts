// One definition of a mailbox: what the SupportAddress CRD admits (its
// generated rules, as the API server gets them), what the relay's parser accepts
// on the wire and what the relay config check lets the operator render must
// agree. The CRD column runs the generated CRD's own patterns (JavaScript and
// RE2 read these alike: classes, groups and counted repeats only).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { parse, stringify } from "yaml";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { parseMailbox } from "../../relay/inbound/address.js";

type Property = { minLength: number; maxLength: number; "x-kubernetes-validations": { rule: string }[] };
const crd = parse(readFileSync(new URL("../../crds/smtpconnector.dev_supportaddresses.yaml", import.meta.url), "utf8")) as {
  spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: { address: Property } } } } } }[] };
};
const addressSchema = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties.address;
// Every rule but immutability is one `self.matches("…")`; the literal's escapes are JSON's.
const crdPatterns = addressSchema["x-kubernetes-validations"]
  .filter((v) => v.rule !== "self == oldSelf")
  .map((v) => {
    const literal = /^self\.matches\(("(?:[^"\\]|\\.)*")\)$/.exec(v.rule);
    assert.ok(literal, `a rule of address the test cannot read: ${v.rule}`);
    return new RegExp(JSON.parse(literal[1]!) as string);
  });

const crdAccepts = (address: string) =>
  address.length >= addressSchema.minLength &&
  address.length <= addressSchema.maxLength &&
  crdPatterns.every((pattern) => pattern.test(address));

const docs = readFileSync(new URL("../../docs/relay-config.md", import.meta.url), "utf8");
const example = /```yaml\n([\s\S]*?)```/.exec(docs)![1]!;
/** Whether the relay config takes `address` as an address of the domain after its last @. */
function configAccepts(address: string): boolean {
  const config = parse(example) as { domains: Record<string, unknown>[] };
  const domain = config.domains[0]!;
  domain.domain = address.slice(address.lastIndexOf("@") + 1);
  domain.addresses = [address];
  delete domain.outbound;
  try {
    parseConfig(stringify(config));
    return true;
  } catch {
    return false;
  }
}

const local = (n: number) => "a".repeat(n);
const domainOf = (n: number) => `${"d".repeat(63)}.${"d".repeat(63)}.${"d".repeat(63)}.${"d".repeat(n - 3 * 64 - 4)}.com`;

// relay: what parseMailbox makes of it; crd / config: whether each admits it as written.
const table: { address: string; relay: string | false; crd: boolean; why: string }[] = [
  { address: "support@example.com", relay: "support@example.com", crd: true, why: "plain" },
  { address: "first.last+tag@sub.example.com", relay: "first.last+tag@sub.example.com", crd: true, why: "dots and a tag" },
  { address: "o'brien@example.com", relay: "o'brien@example.com", crd: true, why: "an apostrophe (atext)" },
  {
    address: "Support@example.com",
    relay: "support@example.com",
    crd: true,
    why: "an upper-case local part: the CRD keeps it, the config takes it in lower case",
  },
  {
    address: "support@Example.COM",
    relay: "support@example.com",
    crd: false,
    why: "an upper-case domain: the CRD wants it as the SmtpDomain writes it",
  },
  { address: '"support"@example.com', relay: false, crd: false, why: "a quoted local part" },
  { address: '"a@b"@example.com', relay: false, crd: false, why: "a quoted @" },
  { address: "a\\@b@example.com", relay: false, crd: false, why: "a quoted-pair" },
  { address: "Support <support@example.com>", relay: false, crd: false, why: "a display name" },
  { address: "support(comment)@example.com", relay: false, crd: false, why: "a comment" },
  { address: ".support@example.com", relay: false, crd: false, why: "a leading dot" },
  { address: "support.@example.com", relay: false, crd: false, why: "a trailing dot in the local part" },
  { address: "sup..port@example.com", relay: false, crd: false, why: "two dots" },
  { address: "support@example.com.", relay: false, crd: false, why: "a trailing dot (the root)" },
  { address: "support@.example.com", relay: false, crd: false, why: "an empty label" },
  { address: "support@-example.com", relay: false, crd: false, why: "a label starting with a hyphen" },
  { address: "support@localhost", relay: false, crd: false, why: "one label" },
  { address: "support@example.123", relay: false, crd: false, why: "a numeric top-level label" },
  { address: "support@192.0.2.1", relay: false, crd: false, why: "a bare dotted quad" },
  { address: "support@[192.0.2.1]", relay: false, crd: false, why: "an address literal" },
  { address: "support%evil.org@example.com", relay: false, crd: false, why: "a % hack" },
  { address: "evil.org!support@example.com", relay: false, crd: false, why: "a bang path" },
  { address: "@example.com:support@evil.org", relay: false, crd: false, why: "a source route" },
  { address: "a@b@example.com", relay: false, crd: false, why: "two @" },
  { address: "süpport@example.com", relay: false, crd: false, why: "a non-ASCII local part (no SMTPUTF8 addresses)" },
  { address: "support@bücher.example", relay: false, crd: false, why: "an IDN domain in Unicode" },
  { address: "support@\u212Aexample.com", relay: false, crd: false, why: "the Kelvin sign, which lowercases to an ASCII k" },
  { address: "support@xn--bcher-kva.example", relay: "support@xn--bcher-kva.example", crd: true, why: "an IDN domain as its A-label" },
  { address: `${local(64)}@example.com`, relay: `${local(64)}@example.com`, crd: true, why: "a 64-character local part" },
  { address: `${local(65)}@example.com`, relay: false, crd: false, why: "a 65-character local part" },
  { address: `support@${"l".repeat(63)}.com`, relay: `support@${"l".repeat(63)}.com`, crd: true, why: "a 63-character label" },
  { address: `support@${"l".repeat(64)}.com`, relay: false, crd: false, why: "a 64-character label" },
  { address: `a@${domainOf(252)}`, relay: `a@${domainOf(252)}`, crd: true, why: "254 characters in all" },
  { address: `ab@${domainOf(252)}`, relay: false, crd: false, why: "255 characters in all" },
  { address: `a@${domainOf(253)}`, relay: false, crd: false, why: "a 253-character domain, beyond 254 in all" },
  { address: `a@${domainOf(255)}`, relay: false, crd: false, why: "a 255-character domain" },
  { address: "", relay: false, crd: false, why: "empty" },
];

describe("one definition of a mailbox", () => {
  test("the table's lengths are what their rows say", () => {
    assert.equal(`a@${domainOf(252)}`.length, 254);
    assert.equal(domainOf(255).length, 255);
  });

  for (const row of table) {
    test(`${row.why}: ${row.address.length > 40 ? `${row.address.slice(0, 37)}…` : row.address || '""'}`, () => {
      const parsed = parseMailbox(row.address);
      assert.equal(parsed.ok ? parsed.mailbox.address : false, row.relay, "the relay's parser");
      assert.equal(crdAccepts(row.address), row.crd, "the CRD's rules");
      assert.equal(configAccepts(row.address), row.relay === row.address, "the relay config takes exactly the parser's canonical form");
      // The agreement itself, whatever the row says: the CRD admits only what the relay accepts, and all of
      // that whose domain is already lowercase; the config takes the canonical form of everything the CRD admits.
      if (parsed.ok) {
        assert.equal(
          crdAccepts(row.address),
          row.address.endsWith(`@${parsed.mailbox.domain}`),
          "the CRD admits what the relay accepts, domain in lower case",
        );
        assert.ok(configAccepts(parsed.mailbox.address), "the config takes its canonical form");
      } else {
        assert.equal(crdAccepts(row.address), false, "the CRD admits nothing the relay refuses");
      }
    });
  }
});
