// Brute-force lockouts the domain's relay reports (GET /v1/credential-use,
// `lockouts`), told to the platform team as a Warning Event on the SmtpDomain:
// a customer server that keeps retrying an old or revoked credential locks
// its own address out, and without this the only trace was a verification
// that timed out. One Event per lockout (kind, scope, source, version, start),
// not one per reconcile.
import type { SmtpDomain } from "../../crds/schema.js";
import { involved, recordEvent } from "../events.js";
import type { Cluster } from "../kube/cluster.js";
import type { LockoutEntry } from "../../relay/contract/control-api.js";

/** A lockout as the relay's control API reports it. */
export type RelayLockout = LockoutEntry;

export const lockoutReason = "LockedOut";

/** The lockouts not announced yet, in force at `now`, of this domain (or of no known credential), with their Event message. Pure. */
export function lockoutsToAnnounce(
  lockouts: readonly RelayLockout[],
  domain: string,
  announced: ReadonlySet<string>,
  now: Date,
): { key: string; until: number; message: string }[] {
  const fresh: { key: string; until: number; message: string }[] = [];
  for (const l of lockouts) {
    const until = Date.parse(l.until);
    if (!(until > now.getTime()) || (l.domain !== undefined && l.domain !== domain)) continue;
    const key = [l.kind, l.scope, l.source, l.version ?? "", l.since].join("/");
    if (announced.has(key) || fresh.some((f) => f.key === key)) continue;
    const listener = l.kind === "submission" ? "the helpdesk's submission" : "inbound AUTH";
    const who = l.version !== undefined ? `credential version ${l.version}` : "usernames that are no credential of this domain";
    const what = l.scope === "Source" ? `every AUTH from ${l.source}` : `${who} from ${l.source}`;
    fresh.push({
      key,
      until,
      message: `the relay locked out ${what} on ${listener} until ${l.until} after repeated failed AUTH (${who}). A server retrying an old or revoked password locks itself out: give it the current credential; other sources are not affected.`,
    });
  }
  return fresh;
}

/** Remembers what was announced (until each lockout ends, bounded) and records the Events for new ones. */
export class LockoutAnnouncer {
  private readonly announced = new Map<string, number>();
  private readonly asked = new Map<string, number>();

  constructor(
    private readonly maxRemembered = 10_000,
    private readonly minIntervalMs = 10_000,
  ) {}

  async announce(
    cluster: Cluster,
    domain: SmtpDomain,
    lockouts: (domain: SmtpDomain) => Promise<readonly RelayLockout[]>,
    now = new Date(),
  ): Promise<void> {
    const key = `${domain.metadata.namespace}/${domain.metadata.name}`;
    if (now.getTime() - (this.asked.get(key) ?? -Infinity) < this.minIntervalMs) return;
    this.asked.set(key, now.getTime());
    // A relay that cannot be asked now is asked again at the next reconcile.
    const reported = await lockouts(domain).catch(() => []);
    for (const [k, until] of this.announced)
      if (until <= now.getTime() || this.announced.size > this.maxRemembered) this.announced.delete(k);
    for (const notice of lockoutsToAnnounce(reported, domain.spec.domain, new Set(this.announced.keys()), now)) {
      this.announced.set(notice.key, notice.until);
      await recordEvent(cluster, involved(domain), "Warning", lockoutReason, notice.message);
    }
  }
}
