// A domain's relay runs as several pods, and each knows only the mail it saw:
// the verification email reaches one of them, each counts the logins made to
// it. The operator's client (verificationIO) asks every ready pod, as the
// internal Service's EndpointSlices list them, and merges what they say. Two
// real relays here stand in for two pods.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { NotYetServed } from "../../operator/address/verification.js";
import { verificationIO, type RelayIdentity } from "../../operator/address/verification-io.js";
import { freePort, randomPassword, sha256, swaksAuth } from "../support/mail.js";
import { exampleDomain, startRelay, type RelayHarness } from "../support/relay.js";

const password = randomPassword();
const controlToken = randomPassword();
const domain = { metadata: { name: "example-com", namespace: "acme" }, spec: { domain: "example.com" } } as SmtpDomain;

describe("the operator asks every relay pod", () => {
  let pods: RelayHarness[];
  before(async () => {
    pods = await Promise.all(
      [0, 1].map(() =>
        startRelay({
          domains: [exampleDomain(password)],
          configure: async (config) => {
            config.listeners.control = { port: await freePort(), tokenSha256: sha256(controlToken) };
          },
        }),
      ),
    );
  });
  after(() => Promise.all(pods.map((p) => p.stop())));

  const identity = (endpoints: () => { host: string; port: number }[]): RelayIdentity => ({
    controlToken: () => controlToken,
    certificatePins: () => pods.map((p) => new X509Certificate(readFileSync(p.config.tls.certFile)).fingerprint256),
    controlEndpoints: endpoints,
  });
  const everyPod = () => pods.map((p) => ({ host: "127.0.0.1", port: p.controlPort! }));
  /** The operator's client; nothing listens at the default control URL. */
  const operatorIO = ({
    url = "https://127.0.0.1:1",
    endpoints = everyPod,
    perPod = true,
  }: { url?: string; endpoints?: () => { host: string; port: number }[]; perPod?: boolean } = {}) =>
    verificationIO({ sender: "verify@helpdesk.example", controlUrl: url, perPod }, identity(endpoints));
  const io = () => operatorIO();
  /** One pod's answer alone: its URL, pods not asked. */
  const onePod = (pod: RelayHarness) => operatorIO({ url: `https://127.0.0.1:${pod.controlPort}`, perPod: false });
  /** Every pod, after one that nothing answers for. */
  const withDeadPod = async () => {
    const closed = await freePort();
    return operatorIO({ endpoints: () => [{ host: "127.0.0.1", port: closed }, ...everyPod()] });
  };
  const newToken = () =>
    `vrf_${randomPassword()
      .replace(/[^A-Za-z0-9]/g, "")
      .slice(0, 32)}`;

  const sendThrough = (pod: RelayHarness, header: string[] = []) =>
    swaksAuth(pod.implicitPort, { user: "example.com-v1", password }, header, { implicit: true, from: "verify@helpdesk.example" });

  test("a verification email that reached the second pod is found; asking one pod would not find it", async () => {
    const token = newToken();
    const sent = await sendThrough(pods[1]!, ["--header", `X-SmtpConnector-Verification: ${token}`]);
    assert.equal(sent.code, 0, sent.output);
    const receipt = await io().receipt(domain, sha256(token));
    assert.equal(receipt?.domain, "example.com");
    assert.equal(receipt?.credentialVersion, 1);
    // The operator as it was: one URL (a Service reaches one pod per connection), here the first pod's.
    assert.equal(await onePod(pods[0]!).receipt(domain, sha256(token)), undefined, "the first pod never saw it");
  });

  test("last use is the latest over the pods", async () => {
    assert.equal((await sendThrough(pods[0]!)).code, 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal((await sendThrough(pods[1]!)).code, 0);
    const [first, second] = [
      (await onePod(pods[0]!).credentialUse(domain)).get(1)!,
      (await onePod(pods[1]!).credentialUse(domain)).get(1)!,
    ];
    assert.ok(Date.parse(second) > Date.parse(first), `the second pod's last use (${second}) is the later one (${first})`);
    assert.equal((await io().credentialUse(domain)).get(1), second);
  });

  test("a pod that does not answer: what the others found still counts, but 'not arrived' is never concluded without it", async () => {
    const partly = await withDeadPod();
    const token = newToken();
    assert.equal((await sendThrough(pods[1]!, ["--header", `X-SmtpConnector-Verification: ${token}`])).code, 0);
    assert.equal((await partly.receipt(domain, sha256(token)))?.credentialVersion, 1);
    await assert.rejects(partly.receipt(domain, sha256("never sent")), /did not answer/);
    assert.ok((await partly.credentialUse(domain)).has(1), "last use from the pods that answered");
  });

  test("a verification send goes to the next pod only when the one before was never reached", async () => {
    // The second pod answers: it does not send for an address it has no outbound login for.
    await assert.rejects((await withDeadPod()).sendOutbound(domain, "support@example.com", "vrf_0123456789abcdef", {}), NotYetServed);
  });

  test("no pod known yet (no EndpointSlice, no ready pod): the control URL", async () => {
    const noPods = operatorIO({ url: `https://127.0.0.1:${pods[1]!.controlPort}`, endpoints: () => [] });
    assert.ok((await noPods.credentialUse(domain)).has(1));
  });
});
