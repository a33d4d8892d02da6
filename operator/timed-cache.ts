// Answers from outside the cluster's API (DNS, the relay's control API) kept
// for a while, so that reconciles — which run on every related event — do not
// each repeat the same network call. One load in flight per key.
export class TimedCache<T> {
  private readonly entries = new Map<string, { at: number; value: Promise<T> }>();

  constructor(private readonly maxEntries = 10_000) {}

  get(key: string, ttlMs: number, load: () => Promise<T>, now = Date.now()): Promise<T> {
    const hit = this.entries.get(key);
    if (hit && now - hit.at < ttlMs) return hit.value;
    const value = load();
    // A failed load is not kept: the next caller tries again.
    value.catch(() => this.entries.delete(key));
    this.entries.delete(key);
    this.entries.set(key, { at: now, value });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    return value;
  }

  clear(): void {
    this.entries.clear();
  }
}
