// Kubernetes Events for meaningful transitions (what `kubectl describe`
// shows): a condition changing status, a credential version issued. Never on
// an unchanged world, so steady state writes nothing.
import { apiVersion, type Condition, type SmtpDomain, type SupportAddress } from "../crds/schema.js";
import type { Cluster } from "./kube/cluster.js";

export interface Involved {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid: string;
}

/** The involvedObject reference for one of our resources. */
export function involved(object: SmtpDomain | SupportAddress): Involved {
  const { name, namespace, uid } = object.metadata;
  // Derived from the shape, not from the cached object's apiVersion/kind, which a list may omit.
  return { apiVersion, kind: "address" in object.spec ? "SupportAddress" : "SmtpDomain", name: name!, namespace: namespace!, uid: uid! };
}

/**
 * Tells an Event: handed to the cluster's EventQueue when it has one (the Controller's: off the reconcile's
 * path), else written now.
 */
export async function recordEvent(
  cluster: Cluster,
  involved: Involved,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
): Promise<void> {
  const now = new Date().toISOString();
  const event: QueuedEvent = {
    involvedObject: involved,
    type,
    reason,
    message: message.slice(0, 1024),
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
  if (cluster.events) cluster.events.add(event);
  else await writeEvent(cluster, eventBody(event));
}

/** What an Event says; the rest of its body is the same for every Event, so the queue keeps only this. */
export interface QueuedEvent {
  involvedObject: Involved;
  type: "Normal" | "Warning";
  reason: string;
  message: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
}

export interface EventBody extends QueuedEvent {
  apiVersion: "v1";
  kind: "Event";
  metadata: { generateName: string; namespace: string };
  source: { component: string };
  reportingComponent: string;
  reportingInstance: string;
}

function eventBody(event: QueuedEvent): EventBody {
  const { involvedObject, type, reason, message, firstTimestamp, lastTimestamp, count } = event;
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { generateName: `${involvedObject.name}.`, namespace: involvedObject.namespace },
    involvedObject,
    type,
    reason,
    message,
    source: { component: "smtp-connector" },
    reportingComponent: "smtpconnector.dev/operator",
    reportingInstance: "smtp-connector",
    firstTimestamp,
    lastTimestamp,
    count,
  };
}

async function writeEvent(cluster: Cluster, event: EventBody): Promise<void> {
  // A namespace being deleted refuses new events: nothing to tell anyone there.
  await cluster.postEvent(event.metadata.namespace, event, [403, 404]);
}

/**
 * Why an Event was not written: the queue was full, its object had told too many, the API server refused it,
 * or it was told (or still waiting, or between retries) when the queue closed (the operator stopping).
 */
export const eventDrops = ["QueueFull", "Spam", "Failed", "Closed"] as const;
export type EventDrop = (typeof eventDrops)[number];

export interface EventQueueOptions {
  /** Events waiting at most. */
  capacity?: number;
  /** The messages of the Events waiting, in characters at most (a message is up to 1,024). */
  capacityCharacters?: number;
  /** Writes in flight at once. */
  writers?: number;
  /** Per object: Events told at once, and how often one more is allowed (client-go's spam filter: 25, one per 5 min). */
  burst?: number;
  refillMs?: number;
  /** Objects whose spam-filter buckets are kept, the least recently told let go first (client-go's: 4,096). */
  spamFilterObjects?: number;
  /** Waits before each retry of a write the API server answered 429 or 5xx, or never answered. */
  retryDelaysMs?: readonly number[];
  now?: () => number;
  onDrop?: (why: EventDrop, event: QueuedEvent) => void;
}

/**
 * Events off the reconcile's path, as client-go's EventBroadcaster and EventCorrelator: a bounded queue that a
 * couple of writers drain, so a reconcile never waits for an Event (at 10,000 new addresses there were 11,803
 * POSTs, nearly all Events, each awaited in a reconcile). An Event like one still waiting (same object, type,
 * reason and message) is counted on it (count, lastTimestamp), as client-go's correlator does. The queue keeps
 * what an Event says, not its body (made at write time), and holds 20,000 of them or 2,000,000 characters of
 * messages: a creation storm of 10,000 addresses tells one or two Events each faster than two writers write
 * them, and at 1,000 (client-go's bound) half of them were dropped. Full, an Event is dropped and counted, never
 * blocking; an object that tells more than `burst` at once is held to one per `refillMs` (the spam filter: an
 * object flapping can neither fill the queue nor the namespace's Events). `flush` waits for what is queued, up to
 * a deadline, and `close` (SIGTERM, after it) drops what is left and stops the retries.
 */
export class EventQueue {
  private readonly pending: QueuedEvent[] = [];
  /** The Events waiting, by object: where an Event like one of them is counted (one alone is not in an array: 56 bytes less each). */
  private readonly waiting = new Map<string, QueuedEvent | QueuedEvent[]>();
  private characters = 0;
  /** Normals waiting, and an index no Normal waits before: a Warning storm in a full queue finds room in O(1). */
  private normals = 0;
  private firstNormal = 0;
  private writing = 0;
  private closed = false;
  /** Retries waiting for their time, woken (to give up) by close. */
  private readonly retryWaits = new Set<() => void>();
  /** In the order last told, least recent first (a Map keeps its insertion order). */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private idleWaiters: (() => void)[] = [];
  private adds = 0;
  private readonly capacity: number;
  private readonly capacityCharacters: number;
  private readonly writers: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly spamFilterObjects: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly now: () => number;

  constructor(
    private readonly write: (event: EventBody) => Promise<void>,
    private readonly options: EventQueueOptions = {},
  ) {
    this.capacity = options.capacity ?? 20_000;
    this.capacityCharacters = options.capacityCharacters ?? 2_000_000;
    this.writers = options.writers ?? 2;
    this.burst = options.burst ?? 25;
    this.refillMs = options.refillMs ?? 300_000;
    this.spamFilterObjects = options.spamFilterObjects ?? 4_096;
    this.retryDelaysMs = options.retryDelaysMs ?? [1_000, 2_000, 4_000];
    // A monotonic clock: a wall clock stepped back would drain the buckets and silence objects for the step.
    this.now = options.now ?? (() => performance.now());
  }

  static forCluster(cluster: Cluster, options: EventQueueOptions = {}): EventQueue {
    return new EventQueue((event) => writeEvent(cluster, event), options);
  }

  /** Events waiting (not counting the ones being written). */
  get depth(): number {
    return this.pending.length;
  }

  /** Events waiting or being written: zero once the queue has drained. */
  get unwritten(): number {
    return this.pending.length + this.writing;
  }

  /** Objects the spam filter keeps a bucket for. */
  get spamFilterSize(): number {
    return this.buckets.size;
  }

  add(told: QueuedEvent): void {
    // A copy: the queue changes count and lastTimestamp of what waits, and keeps only what an Event says.
    const event: QueuedEvent = {
      involvedObject: told.involvedObject,
      type: told.type,
      reason: told.reason,
      message: told.message,
      firstTimestamp: told.firstTimestamp,
      lastTimestamp: told.lastTimestamp,
      count: told.count,
    };
    if (this.closed) {
      this.options.onDrop?.("Closed", event);
      return;
    }
    const key = objectKey(event.involvedObject);
    // Like one waiting: told on it, costing neither room nor a spam-filter token (client-go's correlator).
    const like = this.waitingFor(key).find((w) => w.type === event.type && w.reason === event.reason && w.message === event.message);
    if (like) {
      like.count += event.count;
      like.lastTimestamp = event.lastTimestamp;
      return;
    }
    // Full, a Warning takes the place of the oldest Normals waiting: what went wrong is told before what went well
    // (a Warning is told once, as its condition changes: one dropped is never told).
    const room = this.room(event);
    if (!room) {
      // Before the spam filter, so an Event there is no room for does not spend its object's tokens.
      this.options.onDrop?.("QueueFull", event);
      return;
    }
    if (!this.allowed(key)) {
      this.options.onDrop?.("Spam", event);
      return;
    }
    const made = room.reverse().map((index) => this.take(index));
    for (const dropped of made.reverse()) this.options.onDrop?.("QueueFull", dropped);
    if (event.type === "Normal" && this.normals++ === 0) this.firstNormal = this.pending.length;
    this.pending.push(event);
    this.characters += event.message.length;
    const same = this.waitingFor(key);
    this.waiting.set(key, same.length === 0 ? event : [...same, event]);
    this.pump();
  }

  /** Resolves when everything queued is written (or dropped), or at the deadline: whether it was all written. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.pending.length === 0 && this.writing === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<true>((resolve) => this.idleWaiters.push(() => resolve(true))),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /**
   * From now on nothing more is written: what waits, what is told and what waits to be tried again is dropped
   * (Closed), and no timer is left. A write in flight finishes (or fails, and is not tried again).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Taken before it is told: `onDrop?.(…, take())` would skip the take without an onDrop, and never end.
    while (this.pending.length > 0) {
      const dropped = this.take(this.pending.length - 1);
      this.options.onDrop?.("Closed", dropped);
    }
    for (const wake of [...this.retryWaits]) wake();
    if (this.writing === 0) this.idleWaiters.splice(0).forEach((w) => w());
  }

  /**
   * Whether the Event fits: [] when there is room, the indexes (ascending) of the oldest Normals a Warning
   * would take the place of, undefined when there is no room for it.
   */
  private room(event: QueuedEvent): number[] | undefined {
    const fits = (count: number, characters: number) =>
      count < this.capacity && characters + event.message.length <= this.capacityCharacters;
    let count = this.pending.length;
    let characters = this.characters;
    if (fits(count, characters)) return [];
    if (event.type !== "Warning" || this.normals === 0) return undefined;
    const taken: number[] = [];
    for (let index = this.firstNormal; index < this.pending.length; index++) {
      const waiting = this.pending[index]!;
      if (waiting.type !== "Normal") continue;
      // Everything before the first Normal found is a Warning: the next storm's scan starts here.
      if (taken.length === 0) this.firstNormal = index;
      taken.push(index);
      count--;
      characters -= waiting.message.length;
      if (fits(count, characters)) return taken;
    }
    return undefined;
  }

  /** Takes a waiting Event out of the queue. */
  private take(index: number): QueuedEvent {
    const event = index === 0 ? this.pending.shift()! : this.pending.splice(index, 1)[0]!;
    this.characters -= event.message.length;
    if (event.type === "Normal") this.normals--;
    if (index < this.firstNormal) this.firstNormal--;
    const key = objectKey(event.involvedObject);
    const same = this.waitingFor(key).filter((w) => w !== event);
    if (same.length === 0) this.waiting.delete(key);
    else this.waiting.set(key, same.length === 1 ? same[0]! : same);
    return event;
  }

  private waitingFor(key: string): readonly QueuedEvent[] {
    const same = this.waiting.get(key);
    return same === undefined ? [] : Array.isArray(same) ? same : [same];
  }

  /**
   * The token bucket of the Event's object: full for an object not seen for a while, so buckets are let go
   * then; and at most `spamFilterObjects` of them, the least recently told let go first (a storm of new
   * objects, each telling once, would otherwise keep one each until the next sweep).
   */
  private allowed(key: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) / this.refillMs);
    bucket.at = now;
    if (++this.adds % 1_000 === 0) this.sweep(now);
    // Deleted and set again: now the most recently told.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.spamFilterObjects) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Buckets that have filled up again say nothing a new one would not. */
  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) if (bucket.tokens + (now - bucket.at) / this.refillMs >= this.burst) this.buckets.delete(key);
  }

  private pump(): void {
    while (!this.closed && this.writing < this.writers && this.pending.length > 0) {
      const event = this.take(0);
      this.writing++;
      void this.deliver(event).finally(() => {
        this.writing--;
        this.pump();
        if (this.writing === 0 && this.pending.length === 0) this.idleWaiters.splice(0).forEach((w) => w());
      });
    }
  }

  private async deliver(event: QueuedEvent): Promise<void> {
    const body = eventBody(event);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.write(body);
        return;
      } catch (error) {
        const status = (error as { code?: unknown }).code;
        const transient = typeof status !== "number" || status === 429 || status >= 500;
        const delay = this.retryDelaysMs[attempt];
        if (!transient || delay === undefined) {
          this.options.onDrop?.("Failed", event);
          return;
        }
        if (!this.closed) await this.retryWait(delay);
        if (this.closed) {
          this.options.onDrop?.("Closed", event);
          return;
        }
      }
    }
  }

  /** Resolves after the delay, or at once when the queue closes. */
  private retryWait(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.retryWaits.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, delayMs);
      this.retryWaits.add(wake);
    });
  }
}

/** The spam filter's and the correlator's key of an object: its uid, or its name for an object without one. */
function objectKey(object: Involved): string {
  return object.uid || `${object.kind}/${object.namespace}/${object.name}`;
}

/** Reasons that warn while their condition is True: the thing works, but not as asked or not for long. */
const warningWhileTrue: ReadonlySet<string> = new Set(["ExpiringSoon", "LimitCapped"]);

export interface ConditionEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/**
 * The Events a status change tells: one per condition whose status changed, except kstatus'
 * Reconciling/Stalled (noise in describe), a condition that first appears Unknown (nothing is known
 * yet: "no verification has completed yet" told of every new address), and a Ready that repeats, reason
 * and message, another condition told in the same change (Ready=False names what blocks it). A creation
 * storm of 10,000 addresses otherwise made four Events of each, most of the operator's API requests. Pure.
 */
export function conditionChanges(before: readonly Condition[] | undefined, after: readonly Condition[]): ConditionEvent[] {
  const previous = new Map((before ?? []).map((c) => [c.type, c.status]));
  const changed = after.filter(
    (c) =>
      c.type !== "Reconciling" &&
      c.type !== "Stalled" &&
      previous.get(c.type) !== c.status &&
      !(c.status === "Unknown" && !previous.has(c.type)),
  );
  return changed
    .filter(
      (c) =>
        !(
          c.type === "Ready" && changed.some((other) => other.type !== "Ready" && other.reason === c.reason && other.message === c.message)
        ),
    )
    .map((c) => ({
      type:
        (c.status === "False" && c.reason !== "Progressing" && c.reason !== "VerificationPending") || warningWhileTrue.has(c.reason)
          ? "Warning"
          : "Normal",
      reason: c.reason,
      message: `${c.type}=${c.status}: ${c.message}`,
    }));
}

export async function conditionEvents(
  cluster: Cluster,
  involved: Involved,
  before: readonly Condition[] | undefined,
  after: readonly Condition[],
): Promise<void> {
  for (const event of conditionChanges(before, after)) await recordEvent(cluster, involved, event.type, event.reason, event.message);
}
