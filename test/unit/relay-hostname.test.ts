// The name the relay announces and the customer's server is told (relay config,
// status endpoint, client snippets): a host name the domain holds, so that its
// certificate covers it; never a listed name another domain holds
// (HostnameConflict), falling back to the default relay host name.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { withheldHostnames, type HostnameConflict } from "../../operator/domain/hostname-claims.js";
import { certificateNames, customerHostnames, relayHostname, type OperatorSettings } from "../../operator/domain/render.js";
import { clientSnippets } from "../../operator/domain/credentials.js";

const settings: OperatorSettings = { relayImage: "img", relayHostSuffix: "relay.example.net" };

function domain(hostnames?: string[]): SmtpDomain {
  return {
    apiVersion: "smtpconnector.dev/v1alpha1",
    kind: "SmtpDomain",
    metadata: { name: "mail", namespace: "team-b", uid: "uid-1" },
    spec: {
      domain: "example.com",
      inbound: { delivery: { smtp: { host: "ingest", port: 25 } } },
      ...(hostnames ? { relay: { hostnames } } : {}),
    },
  };
}

const taken = (...hostnames: string[]): Set<string> =>
  withheldHostnames(
    hostnames.map((hostname): HostnameConflict => ({ hostname, holder: { namespace: "team-a", name: "mail" }, why: "Earlier" })),
  );

describe("the relay host name told to the customer's server", () => {
  test("the first listed name, when the domain holds it", () => {
    assert.equal(relayHostname(domain(["relay.shared.test", "own.team-b.test"]), settings, taken()), "relay.shared.test");
    assert.equal(relayHostname(domain(), settings), "mail.team-b.relay.example.net");
  });

  test("a listed name another domain holds is skipped, whatever its case", () => {
    const d = domain(["Relay.Shared.Test", "own.team-b.test"]);
    assert.equal(relayHostname(d, settings, taken("relay.shared.test")), "own.team-b.test");
    assert.deepEqual(customerHostnames(d, settings, taken("relay.shared.test")), ["own.team-b.test"]);
  });

  test("holding none of its listed names: the default relay host name, which its certificate then covers", () => {
    const d = domain(["relay.shared.test"]);
    const withheld = taken("relay.shared.test");
    const host = relayHostname(d, settings, withheld);
    assert.equal(host, "mail.team-b.relay.example.net");
    const covered = certificateNames(d, settings, withheld);
    assert.ok(covered.includes(host), "the certificate covers the name announced");
    assert.ok(!covered.includes("relay.shared.test"), "and not the name another domain holds");
    // The snippets handed to the customer name that host, never the refused one.
    const snippets = Object.values(clientSnippets(d.spec.domain, host, "user", "secret-password", undefined)).join("\n");
    assert.ok(snippets.includes(host));
    assert.ok(!snippets.includes("relay.shared.test"));
  });
});
