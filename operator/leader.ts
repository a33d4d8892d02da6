// Leader election on a coordination.k8s.io Lease, so two replicas are safe:
// only the holder reconciles. Acquire by creating the Lease, or by taking one
// whose holder stopped renewing; renew by replacing it with the resourceVersion
// read (a concurrent writer gets 409 and loses). A leader that cannot renew
// within the lease duration stops leading at once.
import type { Logger } from "../relay/ops/log.js";
import type { Cluster } from "./kube/cluster.js";

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewEveryMs: number;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

const microTime = (d: Date) => d.toISOString().replace("Z", "000Z");

export class LeaderElector {
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private stopped = false;

  constructor(
    private readonly cluster: Cluster,
    private readonly options: LeaderOptions,
    private readonly log: Logger,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  /** Runs until stopped: calls onStart when leadership is won, onLost if it is lost. */
  run(onStart: () => void, onLost: () => void): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        const held = await this.tryAcquireOrRenew();
        if (held) this.lastRenew = Date.now();
        if (held && !this.leading) {
          this.leading = true;
          this.log.info("became leader", { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
          onStart();
        }
      } catch (error) {
        this.log.warn("lease update failed", { error: error instanceof Error ? error.message : String(error) });
      }
      if (this.leading && Date.now() - this.lastRenew > this.options.leaseDurationMs) {
        this.leading = false;
        this.log.error("lost leadership: the lease could not be renewed in time");
        onLost();
        return;
      }
      this.timer = setTimeout(() => void tick(), this.options.renewEveryMs);
    };
    void tick();
  }

  /** Stops renewing and, if leading, releases the lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    const lease = await this.read();
    if (lease?.spec.holderIdentity === this.options.identity) {
      lease.spec.holderIdentity = "";
      lease.spec.renewTime = microTime(new Date(0));
      await this.cluster.write("PUT", this.path(this.options.name), lease, [409]);
    }
    this.leading = false;
  }

  private path(name?: string): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.options.namespace)}/leases${name ? `/${encodeURIComponent(name)}` : ""}`;
  }

  private async read(): Promise<Lease | undefined> {
    const { status, body } = await this.cluster.get(this.path(this.options.name), [404]);
    return status === 404 ? undefined : (JSON.parse(body) as Lease);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    const seconds = Math.ceil(this.options.leaseDurationMs / 1000);
    const lease = await this.read();
    if (!lease) {
      const created = await this.cluster.write("POST", this.path(), {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: this.options.name, namespace: this.options.namespace },
        spec: { holderIdentity: this.options.identity, leaseDurationSeconds: seconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
      }, [409]);
      return created.status < 300;
    }
    const holder = lease.spec.holderIdentity;
    const renewed = lease.spec.renewTime ? Date.parse(lease.spec.renewTime) : 0;
    const expired = renewed + (lease.spec.leaseDurationSeconds ?? seconds) * 1000 < now.getTime();
    if (holder && holder !== this.options.identity && !expired) return false;
    const taking = holder !== this.options.identity;
    lease.spec = {
      ...lease.spec,
      holderIdentity: this.options.identity,
      leaseDurationSeconds: seconds,
      renewTime: microTime(now),
      ...(taking ? { acquireTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 } : {}),
    };
    const replaced = await this.cluster.write("PUT", this.path(this.options.name), lease, [409]);
    return replaced.status < 300;
  }
}
