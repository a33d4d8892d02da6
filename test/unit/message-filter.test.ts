// The message filter, byte for byte: line endings (SMTP smuggling), limits,
// and the trust headers.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { claimsAuthservId, MessageFilter, type FilterOptions } from "../../relay/inbound/message-filter.js";

const options: FilterOptions = {
  maxBytes: 10_000,
  maxLineBytes: 100,
  maxHeaderBytes: 1_000,
  maxReceivedHops: 3,
  authservId: "relay.test",
  prepend: "Authentication-Results: relay.test; auth=pass\r\n",
};

/** Runs input through a filter in the given chunks; returns output or the rejection. */
async function run(chunks: (string | Buffer)[], overrides: Partial<FilterOptions> = {}): Promise<{ out: string; rejection?: string }> {
  const filter = new MessageFilter({ ...options, ...overrides });
  const out: Buffer[] = [];
  filter.on("data", (b: Buffer) => out.push(b));
  for (const chunk of chunks) filter.write(typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk);
  await new Promise<void>((resolve) => filter.end(resolve));
  return { out: Buffer.concat(out).toString("latin1"), ...(filter.rejection ? { rejection: filter.rejection.rejection } : {}) };
}

describe("MessageFilter", () => {
  test("prepends our headers and passes a clean message through unchanged", async () => {
    const { out } = await run(["Subject: hi\r\nFrom: a@b.c\r\n\r\nbody line\r\n"]);
    assert.equal(out, "Authentication-Results: relay.test; auth=pass\r\nSubject: hi\r\nFrom: a@b.c\r\n\r\nbody line\r\n");
  });

  test("every bare CR and bare LF becomes CRLF, so no variant ends the message early", async () => {
    const variants = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r\n"];
    for (const v of variants) {
      const { out } = await run([`Subject: x\r\n\r\nbefore${v}MAIL FROM:<evil@x>\r\nafter\r\n`]);
      assert.doesNotMatch(out.replace(/\r\n/g, ""), /[\r\n]/, `variant ${JSON.stringify(v)} left a bare CR or LF`);
      assert.match(out, /\r\n\.\r\nMAIL FROM:<evil@x>\r\nafter\r\n$/, `variant ${JSON.stringify(v)}`);
    }
  });

  test("line endings split across chunks are handled", async () => {
    const { out } = await run(["Subject: x\r", "\n\r", "\nbody\r", "\nmore\r", "\r\n"]);
    assert.equal(out, "Authentication-Results: relay.test; auth=pass\r\nSubject: x\r\n\r\nbody\r\nmore\r\n\r\n");
  });

  test("removes forged Authentication-Results for our authserv-id and our own headers, keeps others", async () => {
    const input = [
      "Authentication-Results: relay.test; auth=pass smtp.auth=forged\r\n",
      "Authentication-Results: RELAY.TEST (comment);\r\n  auth=pass\r\n",
      "Authentication-Results: (a comment) relay.test; spf=pass\r\n",
      "Authentication-Results: mx.other.example; spf=pass\r\n",
      "X-SmtpConnector-Auth: domain=forged.example; version=9\r\n",
      "x-smtpconnector-anything: y\r\n",
      "Subject: x\r\n\r\nbody\r\n",
    ].join("");
    const { out } = await run([input]);
    assert.equal(
      out,
      "Authentication-Results: relay.test; auth=pass\r\nAuthentication-Results: mx.other.example; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
    );
  });

  test("a forged header in the body is left alone: it is not a header", async () => {
    const { out } = await run(["Subject: x\r\n\r\nAuthentication-Results: relay.test; auth=pass\r\n"]);
    assert.match(out, /\r\n\r\nAuthentication-Results: relay\.test; auth=pass\r\n$/);
  });

  test("rejects a mail loop", async () => {
    const received = "Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\n".repeat(3);
    assert.equal((await run([received + "\r\nbody\r\n"])).rejection, "TooManyHops");
    assert.equal((await run(["Received: x\r\n".repeat(2) + "\r\nbody\r\n"])).rejection, undefined);
  });

  test("rejects over-long lines, header sections and messages, and emits nothing more", async () => {
    assert.equal((await run([`Subject: x\r\n\r\n${"a".repeat(99)}\r\n`])).rejection, "LineTooLong");
    assert.equal((await run([`Subject: x\r\n\r\n${"a".repeat(98)}\r\n`])).rejection, undefined);
    assert.equal((await run([`X-A: ${"a".repeat(90)}\r\n`.repeat(12) + "\r\n"])).rejection, "HeaderTooLarge");
    const big = await run([`Subject: x\r\n\r\n`, ...Array.from({ length: 200 }, () => `${"b".repeat(60)}\r\n`)]);
    assert.equal(big.rejection, "TooBig");
    assert.ok(big.out.length <= 10_000 + options.prepend.length, "output stopped at the limit");
  });

  test("a message with no body still gets our headers", async () => {
    assert.equal((await run(["Subject: x\r\n"])).out, "Authentication-Results: relay.test; auth=pass\r\nSubject: x\r\n");
  });

  test("a bare CR or LF in the header section refuses the message, also when a CR ends one chunk", async () => {
    assert.equal((await run(["Subject: x\rReply-To: e@evil.org\r\n\r\nbody\r\n"])).rejection, "BareLineEnding");
    assert.equal((await run(["Subject: x\r", "Reply-To: e@evil.org\r\n\r\nbody\r\n"])).rejection, "BareLineEnding");
    assert.equal((await run(["Subject: x\r\n\r"])).rejection, "BareLineEnding", "a bare CR as the last byte");
    const split = await run(["Subject: x\r", "\nFrom: a@b.c\r\n\r", "\nbody\r", "more\r\n"]);
    assert.equal(split.rejection, undefined, "a CRLF split across chunks, and a bare CR in the body");
    assert.equal(split.out, "Authentication-Results: relay.test; auth=pass\r\nSubject: x\r\nFrom: a@b.c\r\n\r\nbody\r\nmore\r\n");
  });

  test("a line that is not a field ends the header section after an empty line put before it", async () => {
    assert.equal(
      (await run(["Subject: x\r\nno colon\r\nX-A: b\r\n"])).out,
      "Authentication-Results: relay.test; auth=pass\r\nSubject: x\r\n\r\nno colon\r\nX-A: b\r\n",
    );
    assert.equal(
      (await run([" continued\r\nX-A: b\r\n"])).out,
      "Authentication-Results: relay.test; auth=pass\r\n\r\n continued\r\nX-A: b\r\n",
    );
    assert.equal(
      (await run(["Bad Name: x\r\n\r\nbody\r\n"])).out,
      "Authentication-Results: relay.test; auth=pass\r\n\r\nBad Name: x\r\n\r\nbody\r\n",
    );
    assert.equal(
      (await run(["X-A : obsolete white space\r\n\r\n"])).out,
      "Authentication-Results: relay.test; auth=pass\r\nX-A : obsolete white space\r\n\r\n",
    );
  });

  test("a clean body chunk goes on as a slice of the input, not a copy; a bare line ending splits it there", async () => {
    const filter = new MessageFilter(options);
    const out: Buffer[] = [];
    filter.on("data", (b: Buffer) => out.push(b));
    filter.write(Buffer.from("Subject: x\r\n\r\n", "latin1"));
    const body = Buffer.from("one\r\ntwo\r\nthree\r\n", "latin1");
    filter.write(body);
    filter.write(Buffer.from("four\nfive\r\n", "latin1"));
    await new Promise<void>((resolve) => filter.end(resolve));
    const slice = out.find((b) => b.toString("latin1") === "one\r\ntwo\r\nthree\r\n");
    assert.ok(slice, "the clean chunk is one output chunk");
    assert.ok(slice.buffer === body.buffer && slice.byteOffset === body.byteOffset, "and the input's own bytes");
    assert.match(Buffer.concat(out).toString("latin1"), /three\r\nfour\r\nfive\r\n$/);
  });

  test("the output does not depend on how the input is cut into chunks", async () => {
    // A deterministic mix of clean lines, bare CRs and LFs, dots and near-limit lines, cut at random places.
    let seed = 7;
    const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const pieces = ["line\r\n", "\n", "\r", ".\r\n", "..dots\r\n", `${"w".repeat(97)}\r\n`, "\r\r\n", "tail"];
    for (let message = 0; message < 40; message++) {
      let body = "";
      for (let i = 0; i < 60; i++) body += pieces[random(pieces.length)]!;
      const input = Buffer.from(`Subject: x\r\n\r\n${body}`, "latin1");
      const whole = await run([input]);
      const cuts = [...new Set(Array.from({ length: 1 + random(8) }, () => random(input.length)))].sort((a, b) => a - b);
      const chunks = [0, ...cuts].map((from, i) => input.subarray(from, [...cuts, input.length][i]));
      assert.deepEqual(await run(chunks), whole, `message ${message} cut at ${cuts.join(",")}`);
      if (!whole.rejection) assert.doesNotMatch(whole.out.replace(/\r\n/g, ""), /[\r\n]/, "no bare CR or LF left");
    }
  });

  test("authserv-id readings beyond mailauth's: a trailing dot, a strict tokenizer, and other servers' ids", () => {
    const claims = (value: string) => claimsAuthservId([Buffer.from(`Authentication-Results:${value}`, "utf8")], "relay.test");
    assert.equal(claims(" relay.test.; auth=pass"), true, "a fully qualified name with its root dot");
    assert.equal(claims(" relay.test/x; auth=pass"), true, "an RFC 2045 token ends at '/'");
    assert.equal(claims(" relay.test=x; auth=pass"), true, "an RFC 2045 token ends at '='");
    assert.equal(claims(" mx.other.example; auth=pass (relay.test)"), false, "our id in a comment only");
    assert.equal(claims(" mx.other.example; spf=pass smtp.mailfrom=relay.test"), false, "our id as a property value");
    assert.equal(claims(" relay.test.example; spf=pass"), false, "a longer name that starts with ours");
  });
});
