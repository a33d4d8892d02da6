// The exim.conf snippet of a credentials Secret, used by a real Exim 4 as the
// customer's MX: it relays the support domain to the relay with the issued
// login, over TLS, verifying the relay's certificate (from the operator's CA)
// for the relay's host name — and refuses to deliver to a relay whose
// certificate comes from another CA.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { clientSnippets } from "../../operator/domain/credentials.js";
import { defaultCertificatePolicy, issueServerCertificate, newCertificateAuthority } from "../../operator/tls/certificates.js";
import { startExim, type Exim } from "../support/exim.js";
import { randomPassword, swaksCustomer } from "../support/mail.js";
import { startRelay, type RelayHarness } from "../support/relay.js";
import { eventuallyTrue } from "../support/wait.js";

const relayHost = "relay.helpdesk.example.net";
const password = randomPassword();

describe("Exim as the customer's server, from the snippet", () => {
  let h: RelayHarness;
  const ca = newCertificateAuthority("smtp-connector-system", new Date());
  const eximServers: Exim[] = [];

  before(async () => {
    h = await startRelay({
      domains: [
        { domain: "example.com", addresses: ["support@example.com"], credentials: [{ version: 1, username: "example.com-v1", password }] },
      ],
      // The relay serves a certificate from the operator's CA, as an operator-issued one.
      configure: (config, dir) => {
        const leaf = issueServerCertificate(ca, [relayHost], new Date(), defaultCertificatePolicy);
        writeFileSync(join(dir, "issued.crt"), leaf.certPem);
        writeFileSync(join(dir, "issued.key"), leaf.keyPem);
        config.tls = { certFile: join(dir, "issued.crt"), keyFile: join(dir, "issued.key") };
      },
    });
  });
  after(async () => {
    for (const exim of eximServers) await exim.stop();
    await h.stop();
  });

  const snippet = (caPem: string) => clientSnippets("example.com", relayHost, "example.com-v1", password, caPem)["exim.conf"]!;
  /** Exim set up from the client snippet, trusting `caPem` for the relay's certificate; stopped after the tests. */
  const eximTrusting = async (caPem: string) => {
    const exim = await startExim({ domain: "example.com", snippet: snippet(caPem), relayHost, relayPort: h.starttlsPort, caPem });
    eximServers.push(exim);
    return exim;
  };

  test("mail for the domain reaches the helpdesk through the relay, authenticated, with the relay's certificate verified", async () => {
    const exim = await eximTrusting(ca.certPem);
    const sent = await swaksCustomer(exim.port, "via exim");
    assert.equal(sent.code, 0, sent.output);
    await eventuallyTrue(
      "the message at the helpdesk",
      () => h.sink.messages().some((m) => m.content.includes("Subject: via exim")),
      20_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nExim log:\n${exim.log()}`);
    });
    const delivered = h.sink.messages().find((m) => m.content.includes("Subject: via exim"))!;
    assert.match(delivered.content, /X-SmtpConnector-Auth: domain=example\.com; version=1/);
    // Exim's delivery line: TLS, the certificate verified (CV=yes), our authenticator, the relay's host name.
    assert.match(
      exim.log(),
      new RegExp(
        `=> support@example\\.com R=smtp_connector T=smtp_connector H=${relayHost.replace(/\./g, "\\.")} \\[127\\.0\\.0\\.1\\](?::\\d+)? X=TLS\\S+ CV=yes A=smtp_connector_plain`,
      ),
    );
  });

  test("a relay certificate from another CA is refused: nothing is delivered, the message stays queued", async () => {
    const other = newCertificateAuthority("elsewhere", new Date());
    const exim = await eximTrusting(other.certPem);
    const sent = await swaksCustomer(exim.port, "wrong ca");
    assert.equal(sent.code, 0, sent.output);
    await eventuallyTrue(
      "Exim's deferral for the certificate",
      () => /== support@example\.com R=smtp_connector T=smtp_connector defer .*(certificate|TLS)/i.test(exim.log()),
      20_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nExim log:\n${exim.log()}`);
    });
    assert.equal(
      h.sink.messages().some((m) => m.content.includes("Subject: wrong ca")),
      false,
    );
  });
});
