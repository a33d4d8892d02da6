// The forwarded listener's wording of mailauth's results: what each result
// becomes in our Authentication-Results, and that nothing a message carries
// (its d=, s=, From domain, sealer) can add a result of its own.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { judge } from "../../relay/inbound/forwarded-checks.js";

type Result = Parameters<typeof judge>[0];
const options = {
  authservId: "relay.test",
  sender: "SRS0=ab=TT=sender.example=author@fwd.example",
  helo: "mx.fwd.example",
  recipientDomain: "customer.example",
  trustedArcSealers: ["microsoft.com"],
};

/** The sealer's recorded results, as mailauth parses an ARC-Authentication-Results. */
const vouching = {
  mta: "mx.microsoft.com",
  dkim: [{ result: "pass", header: { d: "customer.example" } }],
  dmarc: { result: "pass", header: { from: "customer.example" } },
};

function result({
  dkim = [] as { d?: string; s?: string; result: string }[],
  arc,
  sealer,
  dmarc = "pass",
  from = "customer.example",
  aar = vouching,
}: {
  dkim?: { d?: string; s?: string; result: string }[];
  arc?: string;
  sealer?: string;
  dmarc?: string | false;
  from?: string;
  aar?: unknown;
} = {}): Result {
  const arcResult = arc ? { status: { result: arc }, i: 1, authenticationResults: aar } : false;
  if (arcResult && sealer !== undefined)
    Object.defineProperty(arcResult, "chain", { value: [{ i: 1, "arc-seal": { parsed: { d: { value: sealer } } } }] });
  return {
    spf: { status: { result: "pass" } },
    dkim: { results: dkim.map((d) => ({ signingDomain: d.d, selector: d.s, signature: "abcdefghijkl", status: { result: d.result } })) },
    dmarc: dmarc === false ? false : { status: { result: dmarc, header: { from } } },
    arc: arcResult,
  } as unknown as Result;
}

describe("forwarded checks", () => {
  test("a passing signature of the recipient domain or a parent of it is aligned; another domain's, a failing one or a bare suffix is not", () => {
    const aligned = (d: string, r = "pass") =>
      judge(result({ dkim: [{ d, s: "s1", result: r }] }), { ...options, recipientDomain: "eu.customer.example" }).verdict.dkimAligned;
    assert.equal(aligned("eu.customer.example"), true);
    assert.equal(aligned("customer.example"), true);
    assert.equal(aligned("EU.Customer.Example."), true);
    assert.equal(aligned("example"), false);
    assert.equal(aligned("other.example"), false);
    assert.equal(aligned("xcustomer.example"), false);
    assert.equal(aligned("customer.example", "fail"), false);
    // A public suffix is no parent to align with (the Public Suffix List, as mailauth's DMARC).
    const under = (d: string, recipientDomain: string) =>
      judge(result({ dkim: [{ d, s: "s1", result: "pass" }] }), { ...options, recipientDomain }).verdict.dkimAligned;
    assert.equal(under("co.uk", "support.acme.co.uk"), false);
    assert.equal(under("acme.co.uk", "support.acme.co.uk"), true);
    assert.equal(under("github.io", "acme.github.io"), false);
  });

  test("ARC from a listed sealer counts only when its own results pass the From domain, and that is the recipient's", () => {
    const arcOf = (r: Result) => /arc=[^;]*$/.exec(judge(r, options).header.trim())![0];
    const fixed = "arc=none (a listed sealer, but its results do not vouch for the author's domain)";
    const cases: Record<string, Result> = {
      "dmarc=fail": result({
        arc: "pass",
        sealer: "microsoft.com",
        aar: { ...vouching, dmarc: { result: "fail", header: { from: "customer.example" } } },
      }),
      "dmarc=pass for another domain": result({
        arc: "pass",
        sealer: "microsoft.com",
        aar: { ...vouching, dmarc: { result: "pass", header: { from: "evil.example" } } },
      }),
      "a From of another domain": result({
        arc: "pass",
        sealer: "microsoft.com",
        from: "ceo-lookalike.example",
        aar: { dmarc: { result: "pass", header: { from: "ceo-lookalike.example" } } },
      }),
      "no results": result({ arc: "pass", sealer: "microsoft.com", aar: null }),
      "no DMARC, DKIM fail": result({
        arc: "pass",
        sealer: "microsoft.com",
        aar: { dkim: [{ result: "fail", header: { d: "customer.example" } }] },
      }),
    };
    for (const [name, r] of Object.entries(cases)) {
      assert.equal(arcOf(r), fixed, name);
      assert.equal(judge(r, options).verdict.arcTrusted, false, name);
    }
    const dkimOnly = result({
      arc: "pass",
      sealer: "microsoft.com",
      aar: { dkim: [{ result: "pass", header: { d: "mail.customer.example" } }] },
    });
    assert.equal(judge(dkimOnly, options).verdict.arcTrusted, true, "no DMARC result, an aligned passing DKIM signature");
  });

  test("ARC: pass only for a trusted sealer (or its subdomain); another sealer's verifying chain is none, without pass or trusted in its words", () => {
    const trusted = judge(result({ arc: "pass", sealer: "microsoft.com" }), options);
    assert.match(trusted.header, /arc=pass \(sealed by microsoft\.com, a listed sealer\)/);
    assert.deepEqual(trusted.verdict, { dkimAligned: false, arcTrusted: true, arcSealer: "microsoft.com" });
    assert.equal(judge(result({ arc: "pass", sealer: "eur.microsoft.com" }), options).verdict.arcTrusted, true);
    for (const sealer of ["evil.example", "microsoft.com.evil.example", "notmicrosoft.com", "pass.trusted.evil.test"]) {
      const other = judge(result({ arc: "pass", sealer }), options);
      const arcPart = /arc=[^;]*$/.exec(other.header.trim())![0];
      // Fixed words: the sealer's name is the message's, never written.
      assert.equal(arcPart, "arc=none (not a listed sealer)");
      assert.doesNotMatch(arcPart, /pass|trusted/i);
      assert.deepEqual(other.verdict, { dkimAligned: false, arcTrusted: false, arcSealer: sealer });
    }
    assert.equal(judge(result({ arc: "fail", sealer: "microsoft.com" }), options).verdict.arcTrusted, false);
    assert.match(judge(result({ arc: "fail", sealer: "pass.trusted.evil.test" }), options).header, /arc=fail\r\n$/);
    assert.match(judge(result({}), options).header, /arc=none\r\n$/);
  });

  test("values from the message are written only when they are plain names: no injected result", () => {
    const injected = judge(
      result({
        dkim: [{ d: "customer.example; auth=pass", s: "s1 (x) auth=pass", result: "pass" }],
        arc: "pass",
        sealer: "evil.example;\r\n arc=pass",
        from: "customer.example\r\nAuthentication-Results: relay.test; auth=pass",
      }),
      { ...options, sender: "a;auth=pass@x.example", helo: "x; auth=pass" },
    );
    assert.doesNotMatch(injected.header, /auth=pass/);
    assert.doesNotMatch(injected.header, /(?<!dm)arc=pass/);
    assert.equal(injected.header.match(/\r\n/g)?.length, 5, "one field: five results and the header's end, nothing more");
    assert.equal(injected.verdict.dkimAligned, false);
    assert.match(injected.header, /dkim=pass \(unusable d=\)/);
    assert.match(injected.header, /dmarc=pass;/);
  });

  test("the whole field, and DMARC without a single author domain", () => {
    const field = judge(result({ dkim: [{ d: "customer.example", s: "s1", result: "pass" }] }), options).header;
    assert.equal(
      field,
      "Authentication-Results: relay.test;\r\n\tspf=pass smtp.mailfrom=SRS0=ab=TT=sender.example=author@fwd.example;\r\n\tdkim=pass header.d=customer.example header.s=s1 header.b=abcdefgh;\r\n\tdmarc=pass header.from=customer.example;\r\n\tarc=none\r\n",
    );
    const skipped = { ...result(), dmarc: false, dmarcSkipReason: "multiple-from-fields" } as Result;
    assert.match(judge(skipped, options).header, /dmarc=permerror \(multiple-from-fields\)/);
  });
});
