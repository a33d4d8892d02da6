// The product's rules about which domains and addresses are served.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultLimits, judgeAddresses, judgeDomains, type AddressWorld } from "../../operator/address/rules.js";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";

let clock = Date.parse("2026-01-01T00:00:00Z");
const at = () => new Date((clock += 1000)).toISOString();

const domain = (namespace: string, name: string, mailDomain: string): SmtpDomain => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SmtpDomain",
  metadata: { namespace, name, creationTimestamp: at() },
  spec: { domain: mailDomain, inbound: { delivery: { smtp: { host: "ingest.svc" } } } },
});
const address = (namespace: string, name: string, mail: string, domainRef: string, secret = "creds"): SupportAddress => ({
  apiVersion: "smtpconnector.dev/v1alpha1",
  kind: "SupportAddress",
  metadata: { namespace, name, creationTimestamp: at() },
  spec: { address: mail, domainRef: { name: domainRef }, outbound: { host: "smtp.x.org", credentialsSecretRef: { name: secret } } },
});

function world(domains: SmtpDomain[], addresses: SupportAddress[], extra: Partial<AddressWorld> = {}): AddressWorld {
  return {
    domains,
    addresses,
    domainVerdicts: judgeDomains(domains, defaultLimits),
    systemDomains: ["helpdesk.example.net"],
    limits: defaultLimits,
    outboundSecret: (_ns, name) => (name === "missing" ? "missing" : name === "broken" ? "invalid" : "ok"),
    ...extra,
  };
}

describe("judgeDomains", () => {
  test("the same domain in two namespaces: the earlier keeps working", () => {
    const prod = domain("prod", "example", "example.com");
    const sandbox = domain("sandbox", "example", "example.com");
    const verdicts = judgeDomains([sandbox, prod], defaultLimits);
    assert.deepEqual(verdicts.get("prod/example"), { served: true });
    assert.equal((verdicts.get("sandbox/example") as { reason: string }).reason, "DomainConflict");
  });
  test("at most four domains per namespace; the oldest win", () => {
    const ds = ["a.com", "b.com", "c.com", "d.com", "e.com"].map((d, i) => domain("ns", `d${i}`, d));
    const verdicts = judgeDomains([...ds].reverse(), defaultLimits);
    assert.deepEqual(
      ds.map((d) => verdicts.get(`ns/${d.metadata.name}`)!.served),
      [true, true, true, true, false],
    );
    assert.equal((verdicts.get("ns/d4") as { reason: string }).reason, "LimitExceeded");
  });
  test("a system domain (or one under it) is never served, and takes no slot", () => {
    const ds = ["helpdesk.example.net", "eu.Helpdesk.example.net", "a.com", "b.com", "c.com", "d.com"].map((d, i) =>
      domain("ns", `d${i}`, d),
    );
    const verdicts = judgeDomains(ds, defaultLimits, ["helpdesk.example.net"]);
    assert.deepEqual(
      ds.map((d) => {
        const v = verdicts.get(`ns/${d.metadata.name}`)!;
        return v.served ? "served" : v.reason;
      }),
      ["SystemDomain", "SystemDomain", "served", "served", "served", "served"],
    );
    assert.equal(
      judgeDomains([domain("ns", "x", "nothelpdesk.example.net")], defaultLimits, ["helpdesk.example.net"]).get("ns/x")!.served,
      true,
    );
  });
});

describe("judgeAddresses", () => {
  const d = domain("ns", "example", "example.com");
  const reasonOf = (w: AddressWorld, name: string, ns = "ns") => {
    const v = judgeAddresses(w).get(`${ns}/${name}`)!;
    return v.served ? "served" : v.reason;
  };
  test("each rule has its reason", () => {
    const addresses = [
      address("ns", "ok", "support@example.com", "example"),
      address("ns", "mismatch", "support@other.org", "example"),
      address("ns", "system", "team@helpdesk.example.net", "example"),
      address("ns", "system-sub", "team@eu.helpdesk.example.net", "example"),
      address("ns", "nodomain", "x@example.com", "nope"),
      address("ns", "nosecret", "a@example.com", "example", "missing"),
      address("ns", "badsecret", "b@example.com", "example", "broken"),
      address("ns", "dup", "support@example.com", "example"),
    ];
    const w = world([d], addresses);
    assert.deepEqual(Object.fromEntries(addresses.map((a) => [a.metadata.name, reasonOf(w, a.metadata.name!)])), {
      ok: "served",
      mismatch: "DomainMismatch",
      system: "SystemAddress",
      "system-sub": "SystemAddress",
      nodomain: "DomainNotFound",
      nosecret: "CredentialsSecretNotFound",
      badsecret: "CredentialsSecretInvalid",
      dup: "AddressConflict",
    });
  });
  test("the same address in another namespace: the earlier keeps working", () => {
    const sandboxDomain = domain("sandbox", "example", "example.org");
    const prodDomain = domain("prod", "example", "example.com");
    const prod = address("prod", "support", "support@example.com", "example");
    const sandboxDomain2 = domain("sandbox", "example2", "example.com");
    const sandbox = address("sandbox", "support", "support@example.com", "example2");
    const w = world([sandboxDomain, prodDomain, sandboxDomain2], [sandbox, prod]);
    assert.equal(reasonOf(w, "support", "prod"), "served");
    assert.equal(reasonOf(w, "support", "sandbox"), "DomainNotReady", "its domain is itself a conflict");
  });
  test("limits: 50 per domain and 200 per namespace, oldest first, deterministic", () => {
    const domains = ["a.com", "b.com", "c.com", "d.com"].map((m, i) => domain("big", `d${i}`, m));
    const addresses = domains.flatMap((dom) =>
      Array.from({ length: 55 }, (_, i) => address("big", `${dom.metadata.name}-${i}`, `s${i}@${dom.spec.domain}`, dom.metadata.name!)),
    );
    const verdicts = judgeAddresses(world(domains, [...addresses].reverse()));
    const served = addresses.filter((a) => verdicts.get(`big/${a.metadata.name}`)!.served);
    assert.equal(served.length, 200);
    assert.ok(
      addresses.slice(0, 50).every((a) => verdicts.get(`big/${a.metadata.name}`)!.served),
      "the oldest 50 of the first domain",
    );
    assert.equal((verdicts.get("big/d0-50") as { reason: string }).reason, "LimitExceeded");
    const again = judgeAddresses(world(domains, addresses));
    assert.deepEqual([...again.entries()].sort(), [...verdicts.entries()].sort(), "input order does not matter");
  });
});
