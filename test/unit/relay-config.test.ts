// The relay config contract: the documented example loads, and every kind of
// mistake is refused with a message that names the field.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { parse, stringify } from "yaml";
import { ConfigError, parseConfig } from "../../relay/contract/config-parser.js";

const docs = readFileSync(new URL("../../docs/relay-config.md", import.meta.url), "utf8");
const exampleText = /```yaml\n([\s\S]*?)```/.exec(docs)![1]!;

function problemsOf(change: (config: Record<string, any>) => void): string[] {
  const config = parse(exampleText) as Record<string, any>;
  change(config);
  try {
    parseConfig(stringify(config));
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
}

describe("relay config", () => {
  test("the example in docs/relay-config.md is valid", () => {
    const config = parseConfig(exampleText);
    assert.equal(config.domains[0]!.domain, "example.com");
  });

  const cases: { name: string; change: (c: Record<string, any>) => void; problem: RegExp }[] = [
    {
      name: "another contract version",
      change: (c) => (c.version = "smtpconnector.dev/relay-config/v2"),
      problem: /this relay understands smtpconnector\.dev\/relay-config\/v1/,
    },
    { name: "a missing section", change: (c) => delete c.tls, problem: /^\/tls: Expected required property/ },
    {
      name: "a port out of range",
      change: (c) => (c.listeners.health.port = 0),
      problem: /^\/listeners\/health\/port: Expected integer to be greater or equal to 1/,
    },
    {
      name: "no SMTP listener",
      change: (c) => (delete c.listeners.starttls, delete c.listeners.implicitTls),
      problem: /at least one of starttls, implicitTls or forwarded/,
    },
    {
      name: "a Forwarded domain with credentials",
      change: (c) => ((c.listeners.forwarded = { port: 8025 }), (c.domains[0].mode = "Forwarded")),
      problem:
        /^\/domains\/0\/credentials: example\.com is Forwarded, so it has no inbound credentials: remove them, or set mode Authenticated$/,
    },
    {
      name: "a Forwarded domain without the forwarded listener",
      change: (c) => ((c.domains[0].mode = "Forwarded"), (c.domains[0].credentials = [])),
      problem: /^\/domains\/0\/mode: example\.com is Forwarded, but listeners\.forwarded is not set/,
    },
    { name: "a mode that does not exist", change: (c) => (c.domains[0].mode = "Open"), problem: /^\/domains\/0\/mode/ },
    {
      name: "a trusted sealer in upper case",
      change: (c) => (c.forwarded = { trustedArcSealers: ["Google.com"] }),
      problem: /trustedArcSealers\/0: Google\.com must be lowercase \(write google\.com\)/,
    },
    {
      name: "a trusted sealer that is no host name",
      change: (c) => (c.forwarded = { trustedArcSealers: ["google.com; arc=pass"] }),
      problem: /^\/forwarded\/trustedArcSealers\/0/,
    },
    {
      name: "a DNS server that is a name",
      change: (c) => (c.forwarded = { trustedArcSealers: [], dnsServers: ["dns.google"] }),
      problem: /dnsServers\/0: dns\.google is not an IP address/,
    },
    {
      name: "a DNS server with a port out of range",
      change: (c) => (c.forwarded = { trustedArcSealers: [], dnsServers: ["127.0.0.1:70000"] }),
      problem: /dnsServers\/0: 127\.0\.0\.1:70000 is not an IP address/,
    },
    {
      name: "a plaintext password instead of a digest",
      change: (c) => (c.domains[0].credentials[0].passwordSha256 = "hunter2"),
      problem: /^\/domains\/0\/credentials\/0\/passwordSha256/,
    },
    {
      name: "a username shared by two versions",
      change: (c) => (c.domains[0].credentials[1].username = c.domains[0].credentials[0].username),
      problem: /username: example-com-v1 is already used/,
    },
    {
      name: "an address outside the domain",
      change: (c) => c.domains[0].addresses.push("support@other.org"),
      problem: /support@other\.org is not a lowercase address in example\.com/,
    },
    {
      name: "two delivery targets",
      change: (c) => (c.domains[0].delivery.webhook = { url: "https://x.example/h", hmacKeyFile: "/k" }),
      problem: /set exactly one of smtp or webhook/,
    },
    {
      name: "next-hop AUTH without TLS",
      change: (c) => Object.assign(c.domains[0].delivery.smtp, { username: "u", passwordFile: "/p", tls: "None" }),
      problem: /AUTH to the next hop requires tls/,
    },
    {
      name: "a PROXY trust entry that is not an IP or CIDR",
      change: (c) => (c.proxyProtocol = { trustedRanges: ["10.0.0.0/8", "lb.internal"] }),
      problem: /trustedRanges\/1: lb\.internal is not an IP address or CIDR range/,
    },
    {
      name: "a PROXY trust range with a wrong prefix",
      change: (c) => (c.proxyProtocol = { trustedRanges: ["10.0.0.0/33"] }),
      problem: /10\.0\.0\.0\/33 has no valid prefix length/,
    },
    {
      name: "a PROXY trust range of every address",
      change: (c) => (c.proxyProtocol = { trustedRanges: ["::/0"] }),
      problem: /::\/0 trusts every address/,
    },
    {
      name: "a PROXY-named client range that is not an IP or CIDR",
      change: (c) => (c.proxyProtocol = { trustedRanges: ["10.0.0.0/8"], allowedClients: ["203.0.113.0/24", "mail.example.org"] }),
      problem: /allowedClients\/1: mail\.example\.org is not an IP address or CIDR range/,
    },
    {
      name: "a PROXY-named client range with a wrong prefix",
      change: (c) => (c.proxyProtocol = { trustedRanges: ["10.0.0.0/8"], allowedClients: ["2001:db8::/129"] }),
      problem: /allowedClients\/0: 2001:db8::\/129 has no valid prefix length/,
    },
    {
      name: "an empty list of PROXY-named clients (absent allows any)",
      change: (c) => (c.proxyProtocol = { trustedRanges: ["10.0.0.0/8"], allowedClients: [] }),
      problem: /^\/proxyProtocol\/allowedClients: Expected array length to be greater or equal to 1/,
    },
    {
      name: "outbound without a submission listener",
      change: (c) => delete c.listeners.submission,
      problem: /^\/outbound: set listeners\.submission/,
    },
    {
      name: "a default transport policy without a transport",
      change: (c) => (c.outbound.unconnectedSenders = "DefaultTransport"),
      problem: /^\/outbound\/defaultTransport: required/,
    },
    {
      name: "a connected system domain",
      change: (c) => c.outbound.systemDomains.push("example.com"),
      problem: /example\.com is a system domain and cannot be connected/,
    },
    {
      name: "a sender outside its domain",
      change: (c) => (c.domains[0].outbound.senders[0].address = "support@other.org"),
      problem: /senders\/0\/address: support@other\.org is not a lowercase address in example\.com/,
    },
    {
      name: "plaintext towards the customer's server",
      change: (c) => (c.domains[0].outbound.senders[0].server.tls = "None"),
      problem: /^\/domains\/0\/outbound\/senders\/0\/server\/tls/,
    },
    {
      name: "two keys of one algorithm",
      change: (c) => c.domains[0].outbound.dkim.push({ ...c.domains[0].outbound.dkim[0], selector: "other" }),
      problem: /two rsa-sha256 keys/,
    },
    {
      name: "a DKIM selector that is not a DNS label",
      change: (c) => (c.domains[0].outbound.dkim[0].selector = "a b"),
      problem: /^\/domains\/0\/outbound\/dkim\/0\/selector/,
    },
    {
      name: "a submission username equal to an inbound one",
      change: (c) => (c.domains[0].outbound.submission[0].username = "example-com-v1"),
      problem: /submission\/0\/username: example-com-v1 is already used/,
    },
    {
      name: "a forwarded memory budget below the largest message",
      change: (c) => (c.limits.forwardedMemoryBytes = c.limits.maxMessageBytes - 1),
      problem: /^\/limits\/forwardedMemoryBytes: must be at least limits\.maxMessageBytes/,
    },
    { name: "a misspelt field", change: (c) => (c.limits.maxRecipent = 5), problem: /^\/limits\/maxRecipent: unknown field/ },
    {
      name: "an unknown field deep in a domain",
      change: (c) => (c.domains[0].delivery.smtp.portt = 25),
      problem: /^\/domains\/0\/delivery\/smtp\/portt: unknown field/,
    },
    {
      name: "a username that could inject a header",
      change: (c) => (c.domains[0].credentials[0].username = "a\r\nX-Evil: 1"),
      problem: /^\/domains\/0\/credentials\/0\/username/,
    },
  ];
  for (const c of cases) {
    test(`refuses ${c.name}`, () => {
      const problems = problemsOf(c.change);
      assert.ok(
        problems.some((p) => c.problem.test(p)),
        `problems: ${JSON.stringify(problems)}`,
      );
    });
  }

  test("a forwarded listener and a Forwarded domain without credentials load; so does a forwarded listener with no domain at all", () => {
    const forwarded = problemsOf((c) => {
      c.listeners.forwarded = { port: 8025 };
      c.forwarded = { trustedArcSealers: ["microsoft.com", "google.com"], dnsServers: ["10.96.0.10", "127.0.0.1:5353", "[::1]:53"] };
      c.domains[0].mode = "Forwarded";
      c.domains[0].credentials = [];
    });
    assert.deepEqual(forwarded, []);
    assert.deepEqual(
      problemsOf(
        (c) => (
          (c.listeners.forwarded = { port: 8025 }),
          delete c.listeners.starttls,
          delete c.listeners.implicitTls,
          (c.domains = []),
          delete c.outbound
        ),
      ),
      [],
    );
  });

  test("refuses YAML that is not YAML, and YAML aliases", () => {
    assert.throws(() => parseConfig("version: [unclosed"), /not valid YAML or JSON/);
    assert.throws(() => parseConfig("a: &x [1]\nb: *x\n"), ConfigError);
  });
});
