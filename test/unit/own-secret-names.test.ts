// The names of the Secrets the operator's read cache may hold whole
// (isOwnSecretName) are the names its renderers give: a renamed Secret can
// neither fall out of the cache unnoticed nor let another name in.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { relayObjectRefs } from "../../operator/domain/plan.js";
import {
  controlSecret,
  credentialSecret,
  dkimKeySecret,
  isOwnSecretName,
  relayTlsSecret,
  submissionSecret,
  type OperatorSettings,
} from "../../operator/domain/render.js";

const settings: OperatorSettings = { relayImage: "img", relayHostSuffix: "relay.example.net" };
const pair = { certPem: "cert", keyPem: "key" };
const login = { username: "u", password: "p" };

function domain(name: string, relay: SmtpDomain["spec"]["relay"] = {}): SmtpDomain {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name, namespace: "acme", uid: "uid-1", generation: 1 },
    spec: { domain: "example.com", inbound: { credentials: [{ version: 1 }], delivery: { smtp: { host: "ingest", port: 25 } } }, relay },
  };
}

const secretNames = (objects: readonly { kind: string; metadata: { name: string } }[]) =>
  objects.filter((o) => o.kind === "Secret").map((o) => o.metadata.name);

describe("the Secret names the read cache holds", () => {
  test("the relay config, the issued certificate and every credential version, as the renderers name them", () => {
    const d = domain("example-com");
    const held = [
      ...secretNames(relayObjectRefs(d, settings)),
      relayTlsSecret(d, pair, "ca").metadata.name,
      ...[1, 2, 10, 123].map((version) => credentialSecret(d, version, login, {}).metadata.name),
    ];
    assert.deepEqual(held, [
      "example-com-relay-config",
      "example-com-relay-tls",
      "example-com-inbound-v1",
      "example-com-inbound-v2",
      "example-com-inbound-v10",
      "example-com-inbound-v123",
    ]);
    for (const name of held) assert.ok(isOwnSecretName(d, name), name);
  });

  test("not the generated Secrets (read from the Secret informer), a tenant's TLS Secret, another domain's or a near name", () => {
    const d = domain("example-com");
    const notHeld = [
      submissionSecret(d, login).metadata.name,
      controlSecret(d, "t").metadata.name,
      dkimKeySecret(d, "s1", "pem").metadata.name,
      relayTlsSecret(domain("example-com", { tls: { secretName: "my-cert" } }), pair, "ca").metadata.name,
      ...secretNames(relayObjectRefs(domain("example-org"), settings)),
      credentialSecret(domain("example-org"), 1, login, {}).metadata.name,
      "example-com-inbound-v",
      "example-com-inbound-v1x",
      "example-com-inbound-v-1",
      "example-com-relay-tls-old",
    ];
    for (const name of notHeld) assert.equal(isOwnSecretName(d, name), false, name);
  });
});
