// A keyed, de-duplicating work queue (the controller-runtime pattern): a key
// waiting is queued once however often it is added; a key being processed is
// never processed twice at once (added again meanwhile, it runs once more
// after); failures come back with exponential backoff. Created held, it
// runs nothing until `start()`: keys added while the informers make their
// first lists wait, as controller-runtime's workers wait for the caches to
// sync (a reconcile of half-listed caches writes a world that is not there).
export type Handler = (key: string) => Promise<{ requeueAfterMs?: number } | void>;

export class WorkQueue {
  private readonly waiting = new Set<string>();
  private readonly order: string[] = [];
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private running = 0;
  private held: boolean;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly handler: Handler,
    private readonly options: {
      concurrency: number;
      baseBackoffMs?: number;
      maxBackoffMs?: number;
      onError?: (key: string, error: unknown) => void;
      held?: boolean;
    },
  ) {
    this.held = options.held ?? false;
  }

  /** Runs the keys added while held, and from then on every key as it comes. */
  start(): void {
    this.held = false;
    this.pump();
  }

  get depth(): number {
    return this.waiting.size;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.waiting.has(key)) return;
    this.waiting.add(key);
    this.order.push(key);
    this.pump();
  }

  /** Adds the key after a delay; delays beyond a day (a certificate's renewal weeks ahead) come back after a day, to look again. */
  addAfter(key: string, delayMs: number): void {
    clearTimeout(this.timers.get(key));
    const timer = setTimeout(
      () => {
        this.timers.delete(key);
        this.add(key);
      },
      Math.min(delayMs, 86_400_000),
    );
    timer.unref();
    this.timers.set(key, timer);
  }

  /** Resolves when nothing is queued or running (tests, shutdown). */
  idle(): Promise<void> {
    if (this.running === 0 && this.waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
  }

  private pump(): void {
    if (this.held) return;
    while (!this.stopped && this.running < this.options.concurrency && this.order.length > 0) {
      const key = this.order.shift()!;
      this.waiting.delete(key);
      this.active.add(key);
      this.running++;
      void this.process(key);
    }
    if (this.running === 0 && this.waiting.size === 0) this.idleWaiters.splice(0).forEach((w) => w());
  }

  private async process(key: string): Promise<void> {
    try {
      const result = await this.handler(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      this.options.onError?.(key, error);
      const delay = Math.min((this.options.baseBackoffMs ?? 250) * 2 ** (failures - 1), this.options.maxBackoffMs ?? 60_000);
      this.addAfter(key, delay);
    } finally {
      this.active.delete(key);
      this.running--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
