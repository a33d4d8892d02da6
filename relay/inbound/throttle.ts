// Brute-force limits across connections, like Postfix's anvil: failures are
// counted per source and per username-and-address in a sliding window, and
// either one past its threshold is locked out for a while: its failures are
// answered 454 4.7.0 (a correct password is still accepted, see session.ts).
// A success clears its username-and-address count. Never per username alone: the username is in every inbound
// message's trace headers, and a lock on it would let anyone who read one
// message lock the customer's own server out from elsewhere. A guess from
// many sources stays hopeless anyway: passwords are 256-bit random.
//
// One throttle per credential kind (inbound, submission): a customer server
// that keeps retrying a revoked credential locks out only itself, and only on
// the inbound listeners, not the helpdesk submitting from the same address.
// Memory is bounded: each map keeps at most maxKeys entries, oldest forgotten,
// and a key is a fixed size whatever the username (a digest of it).
import { createHash } from "node:crypto";
import { isIPv6 } from "node:net";

export interface ThrottleOptions {
  /** Failures from one source, any username, that lock the source out. */
  threshold: number;
  /** Failures of one username from one source that lock that pair out (at most `threshold`). */
  usernameThreshold?: number;
  windowMs: number;
  lockoutMs: number;
  /** Most keys remembered per map; the oldest are forgotten first. */
  maxKeys?: number;
}

export type LockoutScope = "Source" | "UsernameAndSource";

export interface Lockout {
  scope: LockoutScope;
  /** The source as counted: an IPv4 address, or an IPv6 /64. */
  source: string;
  until: number;
}

export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();
  private readonly lockedUntil = new Map<string, Lockout>();
  private maxKeys = 0;
  private usernameThreshold = 0;

  constructor(
    private options: ThrottleOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.reconfigure(options);
  }

  /**
   * New limits from a config reload. The counts and the lockouts in force are kept, each lockout to the end it
   * was given: a reload must not set free a source the relay (and its control API) just reported locked out.
   */
  reconfigure(options: ThrottleOptions): void {
    this.options = options;
    this.maxKeys = options.maxKeys ?? 100_000;
    this.usernameThreshold = Math.min(options.usernameThreshold ?? options.threshold, options.threshold);
  }

  /** The lockout in force for this source, or this username from it. */
  lockout(ip: string, username?: string): Lockout | undefined {
    return this.locked(`s:${sourceOf(ip)}`) ?? (username === undefined ? undefined : this.locked(pairKey(ip, username)));
  }

  /** A correct password from this address: its username-and-address failures are forgiven. */
  recordSuccess(ip: string, username: string): void {
    const key = pairKey(ip, username);
    this.failures.delete(key);
    this.lockedUntil.delete(key);
  }

  isLocked(ip: string, username?: string): boolean {
    return this.lockout(ip, username) !== undefined;
  }

  /** Counts one failure; returns the lockouts it started (none, usually). */
  recordFailure(ip: string, username?: string): Lockout[] {
    const source = sourceOf(ip);
    const started: Lockout[] = [];
    const bySource = this.count(`s:${source}`, this.options.threshold, "Source", source);
    if (bySource) started.push(bySource);
    if (username !== undefined) {
      const pair = this.count(pairKey(ip, username), this.usernameThreshold, "UsernameAndSource", source);
      if (pair) started.push(pair);
    }
    return started;
  }

  /** How many lockouts are in force now, by scope (for the metrics gauge). */
  activeCounts(): Record<LockoutScope, number> {
    const counts: Record<LockoutScope, number> = { Source: 0, UsernameAndSource: 0 };
    const now = this.now();
    for (const lockout of this.lockedUntil.values()) if (now < lockout.until) counts[lockout.scope]++;
    return counts;
  }

  private locked(key: string): Lockout | undefined {
    const lockout = this.lockedUntil.get(key);
    if (lockout === undefined) return undefined;
    if (this.now() < lockout.until) return lockout;
    this.lockedUntil.delete(key);
    return undefined;
  }

  private count(key: string, threshold: number, scope: LockoutScope, source: string): Lockout | undefined {
    const now = this.now();
    const recent = (this.failures.get(key) ?? []).filter((t) => now - t < this.options.windowMs);
    recent.push(now);
    // Re-insert so Map order is least-recently-failed first, for eviction.
    this.failures.delete(key);
    let started: Lockout | undefined;
    if (recent.length >= threshold) {
      started = { scope, source, until: now + this.options.lockoutMs };
      this.lockedUntil.delete(key);
      this.lockedUntil.set(key, started);
    } else {
      this.failures.set(key, recent);
    }
    evictOldest(this.failures, this.maxKeys);
    evictOldest(this.lockedUntil, this.maxKeys);
    return started;
  }
}

/**
 * The username-and-address key: the exact address (a /64 may be many tenants'
 * hosts), and the username as a digest, so a 12 KB username costs what a short
 * one does.
 */
function pairKey(ip: string, username: string): string {
  return `u:${ip.replace(/%.*$/, "").toLowerCase()}\0${createHash("sha256").update(username).digest("base64url").slice(0, 22)}`;
}

/**
 * The unit a source is counted in. IPv4 (also IPv4-mapped IPv6) by address;
 * IPv6 by /64, the smallest block a site is given — per address, one host
 * would have 2^64 fresh sources.
 */
export function sourceOf(ip: string): string {
  const bare = ip.replace(/%.*$/, "");
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(bare)) return bare.slice(7);
  if (!isIPv6(bare)) return bare;
  const [head = "", tail] = bare.split("::");
  const first = head === "" ? [] : head.split(":");
  const last = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups =
    tail === undefined ? first : [...first, ...new Array<string>(Math.max(0, 8 - first.length - last.length)).fill("0"), ...last];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}

function evictOldest<V>(map: Map<string, V>, max: number): void {
  for (const key of map.keys()) {
    if (map.size <= max) return;
    map.delete(key);
  }
}

/** Delay before answering the n-th failed AUTH of one session (n from 1): it doubles each time. */
export function failureDelayMs(baseMs: number, failures: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, failures - 1), 30_000);
}
