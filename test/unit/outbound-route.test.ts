// The outbound sender rules, on a config alone: which senders leave through
// which transport, and the refusal (with its stable reason) for every other.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseConfig } from "../../relay/contract/config-parser.js";
import type { RelayConfig } from "../../relay/contract/config.js";
import { routeSender } from "../../relay/outbound/route.js";
import { buildState } from "../../relay/state.js";
import { readFileSync } from "node:fs";

const docs = readFileSync(new URL("../../docs/relay-config.md", import.meta.url), "utf8");
const exampleText = /```yaml\n([\s\S]*?)```/.exec(docs)![1]!;

function stateWith(change: (config: RelayConfig) => void = () => undefined) {
  const config = parseConfig(exampleText);
  // The example names mounted files; these rules need no key or password.
  for (const domain of config.domains) {
    domain.outbound!.dkim = [];
    for (const sender of domain.outbound!.senders) sender.server.passwordFile = "/dev/null";
  }
  change(config);
  return buildState(config);
}

describe("outbound sender routing", () => {
  const state = stateWith();
  const cases: [string, string, string][] = [
    ["support@example.com", "example.com", "SupportAddress"],
    ["Support@Example.COM", "example.com", "SupportAddress"],
    ["billing@example.com", "example.com", "SenderNotSupportAddress"],
    ["noreply@helpdesk.example.net", "example.com", "SystemDomainSender"],
    ["support@example.org", "example.com", "SenderOutsideDomain"],
    ["", "example.com", "NullSender"],
    ["support%x@example.com", "example.com", "MalformedSender"],
    ["support@example.com", "other.test", "DomainNotServed"],
  ];
  for (const [sender, domain, expected] of cases) {
    test(`${JSON.stringify(sender)} authenticated for ${domain}: ${expected}`, () => {
      const route = routeSender(state, domain, sender);
      assert.equal(route.ok ? route.transport : route.reason, expected);
      if (route.ok) assert.equal(route.sender, "support@example.com");
      else assert.match(`${route.code} ${route.message}`, /^(4|5)\d\d \d\.\d\.\d /);
    });
  }

  test("an address that is not Ready is refused for the helpdesk but routed for its verification", () => {
    const pending = stateWith((c) => {
      c.domains[0]!.outbound!.senders.push({
        address: "news@example.com",
        ready: false,
        server: { ...c.domains[0]!.outbound!.senders[0]!.server },
      });
    });
    assert.equal((routeSender(pending, "example.com", "news@example.com") as { reason: string }).reason, "SenderNotReady");
    const verification = routeSender(pending, "example.com", "news@example.com", "Verification");
    assert.ok(verification.ok && verification.transport === "SupportAddress");
  });

  test("with a default transport, a domain's other senders use it; the rules before it still hold", () => {
    const withDefault = stateWith((c) => {
      c.outbound = {
        ...c.outbound!,
        unconnectedSenders: "DefaultTransport",
        defaultTransport: { host: "smtp.helpdesk.example.net", port: 587, tls: "StartTLS", username: "relay", passwordFile: "/dev/null" },
      };
    });
    const route = routeSender(withDefault, "example.com", "billing@example.com");
    assert.ok(route.ok && route.transport === "Default");
    assert.equal((routeSender(withDefault, "example.com", "x@example.org") as { reason: string }).reason, "SenderOutsideDomain");
  });

  test("addresses with the same server and login share one pool; a different login never does", () => {
    const shared = stateWith((c) => {
      const server = c.domains[0]!.outbound!.senders[0]!.server;
      c.domains[0]!.outbound!.senders.push(
        { address: "billing@example.com", ready: true, server: { ...server } },
        { address: "sales@example.com", ready: true, server: { ...server, username: "sales@example.com" } },
      );
    });
    const hop = (a: string) => (routeSender(shared, "example.com", a) as { nextHop: unknown }).nextHop;
    assert.equal(hop("support@example.com"), hop("billing@example.com"));
    assert.notEqual(hop("support@example.com"), hop("sales@example.com"));
  });
});
