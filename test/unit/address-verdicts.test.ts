// The verdicts kept between reconciles and judged again only where something
// changed (operator/address/verdicts.ts) are always the ones judging
// everything gives: conflicts across namespaces, limits, domains claimed twice.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain, SupportAddress } from "../../crds/schema.js";
import { judgeAddresses, judgeDomains, type Limits } from "../../operator/address/rules.js";
import { VerdictCache, type VerdictWorld } from "../../operator/address/verdicts.js";

const limits: Limits = { addressesPerDomain: 3, domainsPerNamespace: 1, addressesPerNamespace: 4 };
const namespaces = ["a", "b", "c", "d", "e"];
const mailDomains = ["one.example", "two.example", "helpdesk.example.net"];

/** A small deterministic random source, so a failure is reproducible. */
function random(seed: number): () => number {
  let x = seed;
  return () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

describe("VerdictCache", () => {
  test("after every kind of change, the namespaces judged again give what judging everything gives", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const next = random(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
      // Few distinct instants: ties are broken by namespace/name, as in the cluster.
      const created = () => new Date(Date.parse("2026-01-01T00:00:00Z") + Math.floor(next() * 4) * 1000).toISOString();
      const domains = new Map<string, SmtpDomain>();
      const addresses = new Map<string, SupportAddress>();
      const cache = new VerdictCache();
      const world = (): VerdictWorld => ({
        domains: [...domains.values()],
        addresses: () => [...addresses.values()],
        addressesIn: (namespace) => [...addresses.values()].filter((a) => a.metadata.namespace === namespace),
        systemDomains: ["helpdesk.example.net"],
        limits,
        outboundSecret: (_namespace, name) => (name === "broken" ? "invalid" : "ok"),
      });
      for (let step = 0; step < 60; step++) {
        const namespace = pick(namespaces);
        const kind = next();
        if (kind < 0.2) {
          const name = pick(["d0", "d1"]);
          if (domains.has(`${namespace}/${name}`) && next() < 0.5) domains.delete(`${namespace}/${name}`);
          else
            domains.set(`${namespace}/${name}`, {
              apiVersion: "smtpconnector.dev/v1alpha1",
              kind: "SmtpDomain",
              metadata: { namespace, name, creationTimestamp: created() },
              spec: { domain: pick(mailDomains), inbound: { delivery: { smtp: { host: "ingest.svc" } } } },
            });
        } else {
          const name = `s${Math.floor(next() * 6)}`;
          const key = `${namespace}/${name}`;
          const existing = addresses.get(key);
          if (existing && next() < 0.3) addresses.delete(key);
          else {
            // A new address, or an existing one whose mail changes (the informer brings a new object).
            addresses.set(key, {
              apiVersion: "smtpconnector.dev/v1alpha1",
              kind: "SupportAddress",
              metadata: { namespace, name, creationTimestamp: existing?.metadata.creationTimestamp ?? created() },
              spec: {
                address: `${pick(["x", "y", "z"])}@${pick(mailDomains)}`,
                domainRef: { name: pick(["d0", "d1"]) },
                outbound: { host: "smtp.x.org", credentialsSecretRef: { name: next() < 0.1 ? "broken" : "creds" } },
              },
            });
          }
        }
        // What the controller does on an event: the namespace it happened in.
        cache.invalidate(namespace);
        if (next() < 0.3) continue; // several changes before the next reconcile looks
        const w = world();
        const domainVerdicts = judgeDomains(w.domains, limits, w.systemDomains);
        const expected = judgeAddresses({ ...w, addresses: w.addresses(), domainVerdicts });
        const got = cache.verdicts(world);
        assert.deepEqual(new Map([...got.addressVerdicts].sort()), new Map([...expected].sort()), `seed ${seed}, step ${step}`);
        assert.deepEqual(got.domainVerdicts, domainVerdicts, `seed ${seed}, step ${step}`);
        // The index the controller finds a conflict's other side with.
        for (const a of w.addresses())
          assert.ok(
            cache.namespacesWith(a.spec.address.toLowerCase()).has(a.metadata.namespace!),
            `seed ${seed}, step ${step}: ${a.spec.address}`,
          );
      }
    }
  });

  test("a domain freed in one namespace serves the addresses of the other, which nothing marked", () => {
    const domain = (namespace: string, creationTimestamp: string): SmtpDomain => ({
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SmtpDomain",
      metadata: { namespace, name: "d", creationTimestamp },
      spec: { domain: "one.example", inbound: { delivery: { smtp: { host: "ingest.svc" } } } },
    });
    const address: SupportAddress = {
      apiVersion: "smtpconnector.dev/v1alpha1",
      kind: "SupportAddress",
      metadata: { namespace: "sandbox", name: "s", creationTimestamp: "2026-01-01T00:00:05Z" },
      spec: {
        address: "support@one.example",
        domainRef: { name: "d" },
        outbound: { host: "smtp.x.org", credentialsSecretRef: { name: "creds" } },
      },
    };
    let domains = [domain("prod", "2026-01-01T00:00:00Z"), domain("sandbox", "2026-01-01T00:00:01Z")];
    const world = (): VerdictWorld => ({
      domains,
      addresses: () => [address],
      addressesIn: (namespace) => (namespace === "sandbox" ? [address] : []),
      systemDomains: [],
      limits,
      outboundSecret: () => "ok",
    });
    const cache = new VerdictCache();
    assert.equal(cache.verdicts(world).addressVerdicts.get("sandbox/s")?.served, false, "prod claimed one.example first");
    domains = [domains[1]!];
    cache.invalidate("prod");
    assert.equal(cache.verdicts(world).addressVerdicts.get("sandbox/s")?.served, true);
  });

  test("nothing changed: the verdicts are not judged again", () => {
    const cache = new VerdictCache();
    let asked = 0;
    const world = (): VerdictWorld => {
      asked++;
      return { domains: [], addresses: () => [], addressesIn: () => [], systemDomains: [], limits, outboundSecret: () => "ok" };
    };
    cache.verdicts(world);
    cache.verdicts(world);
    assert.equal(asked, 1);
    cache.invalidate("a");
    cache.verdicts(world);
    assert.equal(asked, 2);
  });
});
