// Leader election on a coordination.k8s.io Lease, with client-go's semantics
// so two replicas never both act:
// - Expiry is judged on this process's own monotonic clock, from when it last
//   saw the Lease record change, never from the holder's renewTime: another
//   replica's wall clock may run ahead or behind by any amount.
// - A leader must renew within renewDeadline (shorter than the lease
//   duration); a watchdog that does not wait for any request ends leadership
//   the moment that deadline passes, so a hung API server cannot keep a
//   deposed leader acting. A standby only takes the Lease after a whole lease
//   duration without change, by which time the old leader has stopped.
// - Writes replace the Lease with the resourceVersion read: a concurrent
//   writer gets 409 and loses.
import type { Logger } from "../lib/log.js";
import type { Cluster } from "./kube/cluster.js";

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  /** How long a leader keeps acting without a successful renewal; below leaseDurationMs. */
  renewDeadlineMs: number;
  /** How often to try to acquire or renew. */
  retryPeriodMs: number;
}

/** client-go's defaults (15 s, 10 s, 2 s) as ratios of the lease duration. */
export function leaderTimings(leaseDurationMs: number): Pick<LeaderOptions, "leaseDurationMs" | "renewDeadlineMs" | "retryPeriodMs"> {
  return {
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.max(200, Math.round((leaseDurationMs * 2) / 15)),
  };
}

export interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** The Lease as the elector needs it; every call gives up after timeoutMs. */
export interface LeaseStore {
  read(timeoutMs: number): Promise<Lease | undefined>;
  /** false when another writer created it first. */
  create(lease: Lease, timeoutMs: number): Promise<boolean>;
  /** false when the Lease changed since it was read (409). */
  replace(lease: Lease, timeoutMs: number): Promise<boolean>;
}

export interface Clock {
  /** Monotonic milliseconds: for every duration the elector judges. */
  monotonic(): number;
  /** Wall time: only written into the Lease for people and other tools to read. */
  wall(): Date;
}

const systemClock: Clock = { monotonic: () => performance.now(), wall: () => new Date() };
const microTime = (d: Date) => d.toISOString().replace("Z", "000Z");

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  /** The Lease record last read and when this process first saw it so (client-go's observedRecord and observedTime). */
  private observed: { record: string; at: number } | undefined;

  constructor(
    private readonly store: LeaseStore,
    private readonly options: LeaderOptions,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(options.renewDeadlineMs < options.leaseDurationMs))
      throw new Error("leader election: the renew deadline must be shorter than the lease duration");
    if (!(options.retryPeriodMs < options.renewDeadlineMs))
      throw new Error("leader election: the retry period must be shorter than the renew deadline");
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The Lease was read (or created) at least once: this replica reaches the API server with the rights a leader needs first. */
  get observedLease(): boolean {
    return this.observed !== undefined;
  }

  /** Runs until stopped: onStart when leadership is won, onLost the moment it is lost (never both leading and lost). */
  run(onStart: () => void, onLost: () => void): void {
    const tick = async () => {
      if (this.stopped) return;
      // A renewal may take only what is left of the deadline; acquiring, one retry period.
      const budget = this.leading ? this.lastRenew + this.options.renewDeadlineMs - this.clock.monotonic() : this.options.retryPeriodMs;
      try {
        const held = budget > 0 && (await this.tryAcquireOrRenew(budget));
        if (this.stopped) return;
        if (held) this.renewed(onLost);
        if (held && !this.leading) {
          this.leading = true;
          this.log.info("became leader", { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
          onStart();
        }
      } catch (error) {
        this.log.warn("lease update failed", { error: error instanceof Error ? error.message : String(error) });
      }
      if (this.leading && this.clock.monotonic() - this.lastRenew >= this.options.renewDeadlineMs) return this.lose(onLost);
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.options.retryPeriodMs);
    };
    void tick();
  }

  /** Stops trying and, if leading, releases the Lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    if (!this.leading) return;
    this.leading = false;
    const lease = await this.store.read(this.options.renewDeadlineMs);
    if (lease?.spec.holderIdentity === this.options.identity) {
      lease.spec = { ...lease.spec, holderIdentity: "", renewTime: microTime(new Date(0)) };
      await this.store.replace(lease, this.options.renewDeadlineMs);
    }
  }

  /**
   * One attempt: creates the Lease, renews it, or takes it when this process
   * saw it unchanged for a whole lease duration. Exposed for the unit tests.
   */
  async tryAcquireOrRenew(timeoutMs: number): Promise<boolean> {
    const seconds = Math.ceil(this.options.leaseDurationMs / 1000);
    const now = this.clock.wall();
    const lease = await this.store.read(timeoutMs);
    if (!lease) {
      const spec = {
        holderIdentity: this.options.identity,
        leaseDurationSeconds: seconds,
        acquireTime: microTime(now),
        renewTime: microTime(now),
        leaseTransitions: 0,
      };
      const created = await this.store.create(
        { metadata: { name: this.options.name, namespace: this.options.namespace }, spec },
        timeoutMs,
      );
      if (created) this.observe(spec);
      return created;
    }
    this.observe(lease.spec);
    const holder = lease.spec.holderIdentity;
    const duration = (lease.spec.leaseDurationSeconds ?? seconds) * 1000;
    if (holder && holder !== this.options.identity && this.clock.monotonic() < this.observed!.at + duration) return false;
    const taking = holder !== this.options.identity;
    const spec = {
      ...lease.spec,
      holderIdentity: this.options.identity,
      leaseDurationSeconds: seconds,
      renewTime: microTime(now),
      ...(taking ? { acquireTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 } : {}),
    };
    const replaced = await this.store.replace({ ...lease, spec }, timeoutMs);
    if (replaced) this.observe(spec);
    return replaced;
  }

  private observe(spec: Lease["spec"]): void {
    const record = JSON.stringify([
      spec.holderIdentity ?? "",
      spec.renewTime ?? "",
      spec.acquireTime ?? "",
      spec.leaseTransitions ?? 0,
      spec.leaseDurationSeconds ?? 0,
    ]);
    if (this.observed?.record !== record) this.observed = { record, at: this.clock.monotonic() };
  }

  private renewed(onLost: () => void): void {
    this.lastRenew = this.clock.monotonic();
    clearTimeout(this.watchdog);
    // Fires whatever the request in flight is doing: a hung API server must not keep us leading.
    this.watchdog = setTimeout(() => {
      if (this.leading && !this.stopped && this.clock.monotonic() - this.lastRenew >= this.options.renewDeadlineMs) this.lose(onLost);
    }, this.options.renewDeadlineMs + 1);
    this.watchdog.unref();
  }

  private lose(onLost: () => void): void {
    if (!this.leading) return;
    this.leading = false;
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.log.error("lost leadership: the lease was not renewed within the renew deadline", {
      renewDeadlineMs: this.options.renewDeadlineMs,
    });
    onLost();
  }
}

/** The Lease on the API server, through the operator's client, each request bounded by its timeout. */
export function apiLeaseStore(cluster: Cluster, namespace: string, name: string): LeaseStore {
  const path = (leaseName?: string) =>
    `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases${leaseName ? `/${encodeURIComponent(leaseName)}` : ""}`;
  return {
    read: async (timeoutMs) => {
      const { status, body } = await cluster.get(path(name), [404], timeoutMs);
      return status === 404 ? undefined : (JSON.parse(body) as Lease);
    },
    create: async (lease, timeoutMs) =>
      (await cluster.write("POST", path(), { apiVersion: "coordination.k8s.io/v1", kind: "Lease", ...lease }, [409], timeoutMs)).status <
      300,
    replace: async (lease, timeoutMs) =>
      (await cluster.write("PUT", path(name), { apiVersion: "coordination.k8s.io/v1", kind: "Lease", ...lease }, [409], timeoutMs)).status <
      300,
  };
}
