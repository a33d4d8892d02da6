// Inbound delivery to an HTTPS webhook: raw message, metadata, HMAC signature,
// and what the webhook's answers become for the sender.
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { metadataHeader, signatureHeader, signedPayload, timestampHeader } from "../../relay/forward/webhook-next-hop.js";
import { freePort, randomPassword, selfSignedCertificate, swaksAuth, tempDir } from "../support/mail.js";
import { exampleDomain, startRelay, type RelayHarness } from "../support/relay.js";

const password = randomPassword();
const hmacKey = randomPassword();

interface Received {
  body: string;
  metadata: Record<string, unknown>;
  signatureValid: boolean;
}

describe("webhook delivery", () => {
  let server: Server;
  let status = 200;
  const received: Received[] = [];
  let h: RelayHarness;

  before(async () => {
    const dir = tempDir("webhook");
    const cert = await selfSignedCertificate(dir, "localhost");
    const keyFile = join(dir, "hmac.key");
    writeFileSync(keyFile, hmacKey);
    const port = await freePort();
    server = createServer({ key: readFileSync(cert.keyFile), cert: readFileSync(cert.certFile) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const timestamp = String(req.headers[timestampHeader]);
        const metadata = String(req.headers[metadataHeader]);
        const expected = `v1=${createHmac("sha256", hmacKey)
          .update(signedPayload(timestamp, metadata, body))
          .digest("hex")}`;
        const given = String(req.headers[signatureHeader]);
        received.push({
          body: body.toString(),
          metadata: JSON.parse(Buffer.from(metadata, "base64url").toString()) as Record<string, unknown>,
          signatureValid: given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected)),
        });
        res.writeHead(status).end(status === 200 ? "ok" : "nope");
      });
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    h = await startRelay({
      domains: [exampleDomain(password)],
      delivery: { webhook: { url: `https://localhost:${port}/ingest`, hmacKeyFile: keyFile, caFile: cert.certFile } },
    });
  });
  after(async () => {
    await h.stop();
    server.close();
  });

  const send = () => swaksAuth(h.starttlsPort, { user: "example.com-v1", password }, ["--header", "Subject: via webhook"]);

  test("delivers the raw, tagged message with signed metadata; 250 only after the webhook's 2xx", async () => {
    status = 200;
    const result = await send();
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /250 2\.0\.0 Accepted by the next hop: webhook 200/);
    const last = received.at(-1)!;
    assert.equal(last.signatureValid, true);
    assert.match(last.body, /^Authentication-Results: relay\.test; auth=pass \(plain\) smtp\.auth=example\.com-v1\r$/m);
    assert.match(last.body, /^Subject: via webhook\r$/m);
    assert.equal(last.metadata.domain, "example.com");
    assert.equal(last.metadata.credentialVersion, 1);
    assert.deepEqual(last.metadata.rcptTo, ["support@example.com"]);
    assert.equal(last.metadata.mailFrom, "customer@users.example.org");
  });

  test("a 5xx from the webhook is a temporary failure (451), a 4xx a permanent one (554)", async () => {
    status = 503;
    assert.match((await send()).output, /<~\* 451 4\.0\.0 Next hop deferred the message: webhook answered HTTP 503/);
    status = 400;
    assert.match((await send()).output, /<~\* 554 5\.0\.0 Next hop refused the message: webhook answered HTTP 400/);
    status = 200;
  });
});
