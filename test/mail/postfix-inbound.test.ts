// A real Postfix as the customer's mail server, relaying mail for the domain
// into the relay with SASL over TLS, as the client snippets tell it to.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { randomPassword, swaks } from "../support/mail.js";
import { startPostfix, type Postfix } from "../support/postfix.js";
import { exampleDomain, startRelay, type RelayHarness } from "../support/relay.js";
import { eventuallyTrue } from "../support/wait.js";

const password = randomPassword();
const user = "example.com-v1";

function customerServer(relayPort: number, credentials: string, implicit = false): Promise<Postfix> {
  const nextHop = `[127.0.0.1]:${relayPort}`;
  return startPostfix({
    relay_domains: "example.com",
    transport_maps: `inline:{ example.com=smtp:${nextHop} }`,
    smtp_sasl_auth_enable: "yes",
    smtp_sasl_password_maps: `inline:{ ${nextHop}=${credentials} }`,
    smtp_sasl_security_options: "noanonymous",
    smtp_sasl_tls_security_options: "noanonymous",
    smtp_tls_security_level: "encrypt",
    smtp_tls_wrappermode: implicit ? "yes" : "no",
    smtp_tls_loglevel: "1",
  });
}

async function submit(postfix: Postfix, subject: string) {
  return swaks([
    "--server",
    `127.0.0.1:${postfix.port}`,
    "--from",
    "enduser@users.example.org",
    "--to",
    "support@example.com",
    "--header",
    `Subject: ${subject}`,
  ]);
}

describe("Postfix relaying into the relay", () => {
  let h: RelayHarness;
  before(async () => {
    h = await startRelay({ domains: [exampleDomain(password)] });
  });
  after(() => h.stop());

  for (const implicit of [false, true]) {
    test(`SASL PLAIN over ${implicit ? "implicit TLS (465)" : "STARTTLS (587)"}: delivered and tagged`, async () => {
      const postfix = await customerServer(implicit ? h.implicitPort : h.starttlsPort, `${user}:${password}`, implicit);
      try {
        const subject = `from postfix ${implicit ? "465" : "587"}`;
        const submitted = await submit(postfix, subject);
        assert.equal(submitted.code, 0, submitted.output);
        await eventuallyTrue(
          "the message at the helpdesk",
          () => h.sink.messages().some((m) => m.content.includes(`Subject: ${subject}`)),
          20_000,
        );
        const message = h.sink.messages().find((m) => m.content.includes(`Subject: ${subject}`))!;
        assert.match(message.content, /^Authentication-Results: relay\.test; auth=pass \(plain\) smtp\.auth=example\.com-v1$/m);
        assert.match(message.content, /^Received: from mx\.customer\.test/m);
        assert.match(postfix.log(), /status=sent \(250 2\.0\.0 Accepted by the next hop/);
        assert.match(postfix.log(), /TLS connection established to 127\.0\.0\.1/);
      } finally {
        await postfix.stop();
      }
    });
  }

  test("with a wrong password Postfix keeps the message queued and retries; nothing is delivered", async () => {
    const postfix = await customerServer(h.starttlsPort, `${user}:not-the-password`);
    try {
      const before = h.sink.messages().length;
      assert.equal((await submit(postfix, "wrong password")).code, 0);
      await eventuallyTrue("Postfix to report the AUTH failure", () => /SASL authentication failed/.test(postfix.log()), 20_000);
      assert.equal(await postfix.queued(), 1);
      assert.equal(h.sink.messages().length, before);
    } finally {
      await postfix.stop();
    }
  });
});
