// Brute-force limits across connections: failures are counted per source IP
// and per username in a sliding window; either one past the threshold is
// locked out for a while (the relay answers 454 4.7.0). Memory is bounded.
export interface ThrottleOptions {
  threshold: number;
  windowMs: number;
  lockoutMs: number;
  /** Most keys remembered; the oldest are forgotten first. */
  maxKeys?: number;
}

export class AuthThrottle {
  private readonly failures = new Map<string, number[]>();
  private readonly lockedUntil = new Map<string, number>();
  private readonly maxKeys: number;

  constructor(
    private readonly options: ThrottleOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.maxKeys = options.maxKeys ?? 100_000;
  }

  /** Whether this IP or this username is locked out now. */
  isLocked(ip: string, username?: string): boolean {
    return this.locked(`ip:${ip}`) || (username !== undefined && this.locked(`user:${username}`));
  }

  recordFailure(ip: string, username?: string): void {
    this.count(`ip:${ip}`);
    if (username !== undefined) this.count(`user:${username}`);
  }

  private locked(key: string): boolean {
    const until = this.lockedUntil.get(key);
    if (until === undefined) return false;
    if (this.now() < until) return true;
    this.lockedUntil.delete(key);
    return false;
  }

  private count(key: string): void {
    const now = this.now();
    const recent = (this.failures.get(key) ?? []).filter((t) => now - t < this.options.windowMs);
    recent.push(now);
    // Re-insert so Map order is least-recently-failed first, for eviction.
    this.failures.delete(key);
    if (recent.length >= this.options.threshold) {
      this.lockedUntil.set(key, now + this.options.lockoutMs);
    } else {
      this.failures.set(key, recent);
    }
    evictOldest(this.failures, this.maxKeys);
    evictOldest(this.lockedUntil, this.maxKeys);
  }
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
