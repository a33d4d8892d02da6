// One copy of each repeated string in the informers' caches. JSON.parse gives every string value of more
// than a few characters a copy of its own, so each cached object held its own copy of texts most objects
// share: condition types, reasons, messages and times, names, namespaces, label keys and values,
// apiVersion and kind. At 10,000 support addresses those copies were 26.5 MB of a 70 MB heap.

/**
 * Keys whose values differ in every object (or every version of it): pooling them would only fill the pool.
 * `address` is a SupportAddress's own (its spec.address, unique across the installation).
 */
const unique = new Set(["uid", "resourceVersion", "address"]);

export class StringPool {
  private strings = new Map<string, string>();
  private chars = 0;
  private starts = 0;

  /**
   * @param maxEntries past this many distinct strings the pool starts again (strings the caches hold stay
   *   valid; later objects share the new pool's copies), so texts that are never repeated cannot grow it
   *   without bound.
   * @param maxChars the same for their characters all together: the pool keeps its strings after the objects
   *   that brought them are gone, so without this a tenant making and deleting objects with long distinct
   *   labels, annotations or messages could keep maxEntries × maxLength (20 M) characters alive. 2,000,000 is
   *   2–4 MB (one or two bytes a character).
   * @param maxLength longer strings (certificates, whole documents) are left as they are.
   */
  constructor(
    private readonly maxEntries = 20_000,
    private readonly maxLength = 1_024,
    private readonly maxChars = 2_000_000,
  ) {}

  /** Distinct strings held now. */
  get size(): number {
    return this.strings.size;
  }

  /** Their characters, all together. */
  get characters(): number {
    return this.chars;
  }

  /** How many times the pool has started again (a bound reached). */
  get resets(): number {
    return this.starts;
  }

  /** Whether the pool holds `text` now. */
  has(text: string): boolean {
    return this.strings.has(text);
  }

  /** Replaces, in place, each string in `value` (its properties and items, at any depth) by the pool's copy; returns `value`. */
  intern<T>(value: T): T {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = this.one(value[i]);
    } else if (value !== null && typeof value === "object") {
      const object = value as Record<string, unknown>;
      for (const key of Object.keys(object)) if (!unique.has(key)) object[key] = this.one(object[key]);
    }
    return value;
  }

  private one(value: unknown): unknown {
    if (typeof value === "object" && value !== null) return this.intern(value);
    if (typeof value !== "string" || value.length > this.maxLength) return value;
    const pooled = this.strings.get(value);
    if (pooled !== undefined) return pooled;
    if (this.strings.size >= this.maxEntries || this.chars + value.length > this.maxChars) {
      this.strings = new Map();
      this.chars = 0;
      this.starts++;
    }
    this.strings.set(value, value);
    this.chars += value.length;
    return value;
  }
}
