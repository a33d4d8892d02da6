// spec.relay.proxyProtocol as the operator renders it: into the relay config (checked with the
// relay's own loader: the contract) and into the NetworkPolicy, which must let the balancers in.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { relayConfig, relayNetworkPolicy, type OperatorSettings } from "../../operator/domain/render.js";
import { parseConfig } from "../../relay/contract/config-parser.js";
import { stringify } from "yaml";

const settings: OperatorSettings = { relayImage: "i", relayHostSuffix: "relay.test" };
const domain = (spec: Partial<SmtpDomain["spec"]["relay"]> | undefined, allowedSourceRanges?: string[]): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { name: "example-com", namespace: "ns", uid: "u" },
  spec: {
    domain: "example.com",
    inbound: { ...(allowedSourceRanges ? { allowedSourceRanges } : {}), delivery: { smtp: { host: "ingest.svc" } } },
    ...(spec ? { relay: spec } : {}),
  },
});
const from = (policy: ReturnType<typeof relayNetworkPolicy>) =>
  ((policy.spec as { ingress: { from?: { ipBlock?: { cidr: string } }[] }[] }).ingress[0]!.from ?? []).map((p) => p.ipBlock?.cidr);

describe("spec.relay.proxyProtocol, rendered", () => {
  test("the trusted ranges reach the relay config, which the relay loads", () => {
    const config = relayConfig(domain({ proxyProtocol: { trustedRanges: ["10.0.12.0/24", "192.0.2.9"] } }), [], new Map(), [], settings);
    assert.deepEqual(parseConfig(stringify(config)).proxyProtocol, { trustedRanges: ["10.0.12.0/24", "192.0.2.9"] });
    assert.equal(relayConfig(domain(undefined), [], new Map(), [], settings).proxyProtocol, undefined);
  });

  test("allowedSourceRanges reach the relay as the clients a balancer may name (the NetworkPolicy sees only the balancer), for every Service type", () => {
    for (const type of ["LoadBalancer", "NodePort", "ClusterIP"] as const) {
      const config = relayConfig(
        domain({ service: { type }, proxyProtocol: { trustedRanges: ["10.0.12.0/24"] } }, ["203.0.113.0/24", "2001:db8:5::/48"]),
        [],
        new Map(),
        [],
        settings,
      );
      assert.deepEqual(
        parseConfig(stringify(config)).proxyProtocol,
        { trustedRanges: ["10.0.12.0/24"], allowedClients: ["203.0.113.0/24", "2001:db8:5::/48"] },
        type,
      );
    }
    // Without allowedSourceRanges any client may be named, as any may connect.
    assert.deepEqual(
      relayConfig(domain({ proxyProtocol: { trustedRanges: ["10.0.12.0/24"] } }, []), [], new Map(), [], settings).proxyProtocol,
      { trustedRanges: ["10.0.12.0/24"] },
    );
    // Without the PROXY protocol the NetworkPolicy enforces them: nothing for the relay.
    assert.equal(relayConfig(domain(undefined, ["203.0.113.0/24"]), [], new Map(), [], settings).proxyProtocol, undefined);
  });

  test("with allowedSourceRanges, the NetworkPolicy lets the balancers in too (the pods see their addresses); without, it is open as before", () => {
    const proxied = { proxyProtocol: { trustedRanges: ["10.0.12.0/24", "192.0.2.9", "2001:db8::5"] } };
    assert.deepEqual(from(relayNetworkPolicy(domain(proxied, ["203.0.113.0/24"]), settings)), [
      "203.0.113.0/24",
      "10.0.12.0/24",
      "192.0.2.9/32",
      "2001:db8::5/128",
    ]);
    assert.deepEqual(from(relayNetworkPolicy(domain(undefined, ["203.0.113.0/24"]), settings)), ["203.0.113.0/24"]);
    assert.deepEqual(from(relayNetworkPolicy(domain(proxied), settings)), []);
  });
});
