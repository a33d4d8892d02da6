// Leader election's rules with a Lease kept in memory and clocks the test
// moves: a skewed wall clock never decides expiry, a standby waits a whole
// lease duration from its own observation, and a leader whose renewals hang
// stops leading at its renew deadline, before any standby may take over.
import assert from "node:assert/strict";
import { describe, mock, test } from "node:test";
import { LeaderElector, leaderTimings, type Clock, type Lease, type LeaseStore } from "../../operator/leader.js";
import { createLogger } from "../../lib/log.js";

const log = createLogger("test", { level: "error" });

/** One Lease with resourceVersion checks, as the API server keeps it; `hang` makes every call wait forever. */
class MemoryLeases implements LeaseStore {
  lease: Lease | undefined;
  hang = false;
  private version = 0;
  private wait<T>(value: () => T): Promise<T> {
    return this.hang ? new Promise<T>(() => undefined) : Promise.resolve(value());
  }
  read(): Promise<Lease | undefined> {
    return this.wait(() => (this.lease ? structuredClone(this.lease) : undefined));
  }
  create(lease: Lease): Promise<boolean> {
    return this.wait(() => {
      if (this.lease) return false;
      this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.version) } };
      return true;
    });
  }
  replace(lease: Lease): Promise<boolean> {
    return this.wait(() => {
      if (lease.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) return false;
      this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.version) } };
      return true;
    });
  }
}

/** A monotonic clock the test moves, and a wall clock that may be set ahead of everyone else's. */
function clock(skewMs = 0): Clock & { advance(ms: number): void } {
  let now = 1_000_000;
  return { monotonic: () => now, wall: () => new Date(Date.UTC(2026, 11, 1) + now + skewMs), advance: (ms) => (now += ms) };
}

const timings = leaderTimings(15_000);
const elector = (store: LeaseStore, identity: string, c: Clock) =>
  new LeaderElector(store, { namespace: "ops", name: "lease", identity, ...timings }, log, c);

describe("leader election", () => {
  test("client-go's timings: renew deadline and retry period below the lease duration", () => {
    assert.deepEqual(leaderTimings(15_000), { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });
    assert.throws(
      () =>
        new LeaderElector(
          new MemoryLeases(),
          { namespace: "n", name: "l", identity: "a", leaseDurationMs: 10, renewDeadlineMs: 10, retryPeriodMs: 1 },
          log,
        ),
    );
  });

  test("a standby whose wall clock runs 20 s ahead does not take a lease that is being renewed", async () => {
    const store = new MemoryLeases();
    const [a, b] = [clock(), clock(20_000)];
    const leader = elector(store, "a", a);
    const standby = elector(store, "b", b);
    assert.equal(await leader.tryAcquireOrRenew(1_000), true);
    // For a minute the leader renews every retry period; the standby, 20 s ahead, keeps looking.
    for (let t = 0; t < 60_000; t += timings.retryPeriodMs) {
      a.advance(timings.retryPeriodMs);
      b.advance(timings.retryPeriodMs);
      assert.equal(await leader.tryAcquireOrRenew(1_000), true);
      assert.equal(await standby.tryAcquireOrRenew(1_000), false, `the standby took a live lease after ${t} ms`);
    }
    assert.equal(store.lease?.spec.holderIdentity, "a");
  });

  test("a standby whose wall clock runs behind still takes a lease nobody renews, one lease duration after it last saw a change", async () => {
    const store = new MemoryLeases();
    const [a, b] = [clock(), clock(-3_600_000)];
    assert.equal(await elector(store, "a", a).tryAcquireOrRenew(1_000), true);
    const standby = elector(store, "b", b);
    assert.equal(await standby.tryAcquireOrRenew(1_000), false);
    b.advance(timings.leaseDurationMs - 1);
    assert.equal(await standby.tryAcquireOrRenew(1_000), false);
    b.advance(1);
    assert.equal(await standby.tryAcquireOrRenew(1_000), true);
    assert.equal(store.lease?.spec.holderIdentity, "b");
    assert.equal(store.lease?.spec.leaseTransitions, 1);
  });

  test("a leader whose requests hang stops leading at its renew deadline, before a standby may take over", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const store = new MemoryLeases();
    const c = clock();
    const leader = elector(store, "a", c);
    let lostAt: number | undefined;
    const started = mock.fn();
    leader.run(started, () => (lostAt = c.monotonic()));
    const step = async (ms: number) => {
      for (let i = 0; i < ms / 100; i++) {
        c.advance(100);
        t.mock.timers.tick(100);
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    await step(100);
    assert.equal(started.mock.callCount(), 1);
    assert.equal(leader.isLeader, true);
    const lastRenewal = c.monotonic();
    store.hang = true;
    await step(timings.renewDeadlineMs + 500);
    assert.ok(lostAt !== undefined, "still leading with every request hung past the renew deadline");
    assert.equal(leader.isLeader, false);
    // A standby that saw the last renewal may take over only a lease duration after it: the old leader had stopped by then.
    assert.ok(lostAt - lastRenewal <= timings.renewDeadlineMs + 200, `stopped ${lostAt - lastRenewal} ms after the last renewal`);
    assert.ok(lostAt - lastRenewal < timings.leaseDurationMs);
  });
});
