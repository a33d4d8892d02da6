// The operator's side of relay lockouts: which reported lockouts become a
// Warning Event on the SmtpDomain, once each.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { SmtpDomain } from "../../crds/schema.js";
import { LockoutAnnouncer, lockoutsToAnnounce, type RelayLockout } from "../../operator/domain/lockouts.js";
import type { Cluster } from "../../operator/kube/cluster.js";

const now = new Date("2026-12-01T12:00:00Z");
const lockout = (extra: Partial<RelayLockout> = {}): RelayLockout => ({
  kind: "inbound",
  scope: "UsernameAndSource",
  source: "203.0.113.5",
  domain: "example.com",
  version: 2,
  since: "2026-12-01T11:59:00.000Z",
  until: "2026-12-01T12:14:00.000Z",
  ...extra,
});

describe("relay lockouts to Events", () => {
  // [case, reported lockouts, announced before, how many Events]
  const cases: [string, RelayLockout[], string[], number][] = [
    ["a credential version locked out from a source", [lockout()], [], 1],
    ["the same lockout reported by two relay pods", [lockout(), lockout()], [], 1],
    ["already announced", [lockout()], ["inbound/UsernameAndSource/203.0.113.5/2/2026-12-01T11:59:00.000Z"], 0],
    [
      "a new lockout of the same pair after the first ended",
      [lockout({ since: "2026-12-01T11:59:30.000Z" })],
      ["inbound/UsernameAndSource/203.0.113.5/2/2026-12-01T11:59:00.000Z"],
      1,
    ],
    ["ended already", [lockout({ until: "2026-12-01T11:59:59.000Z" })], [], 0],
    ["another domain's credential", [lockout({ domain: "other.test" })], [], 0],
    ["a whole source, no known credential", [lockout({ scope: "Source", domain: undefined, version: undefined })], [], 1],
  ];
  for (const [name, reported, before, events] of cases) {
    test(`${name}: ${events} Event(s)`, () => {
      const notices = lockoutsToAnnounce(reported, "example.com", new Set(before), now);
      assert.equal(notices.length, events);
      for (const n of notices) assert.match(n.message, /203\.0\.113\.5/);
    });
  }

  test("the message names the version and the source, never a username", () => {
    const [notice] = lockoutsToAnnounce([lockout({ kind: "submission" })], "example.com", new Set(), now);
    assert.match(notice!.message, /credential version 2 from 203\.0\.113\.5 on the helpdesk's submission until 2026-12-01T12:14:00\.000Z/);
  });

  test("the announcer records one Warning Event per lockout across reconciles, and asks the relay at most every interval", async () => {
    const events: { type: string; reason: string }[] = [];
    const cluster = {
      postEvent: (_namespace: string, body: { type: string; reason: string }) => Promise.resolve(void events.push(body)),
    } as unknown as Cluster;
    const domain = {
      metadata: { name: "example", namespace: "acme", uid: "u1" },
      spec: { domain: "example.com" },
    } as unknown as SmtpDomain;
    let asked = 0;
    const announcer = new LockoutAnnouncer(100, 1_000);
    const report = () => (asked++, Promise.resolve([lockout()]));
    await announcer.announce(cluster, domain, report, now);
    await announcer.announce(cluster, domain, report, new Date(now.getTime() + 500));
    await announcer.announce(cluster, domain, report, new Date(now.getTime() + 2_000));
    assert.equal(asked, 2);
    assert.deepEqual(
      events.map((e) => [e.type, e.reason]),
      [["Warning", "LockedOut"]],
    );
  });
});
