/** What the cache remembers of a refusal, enough to answer the next request with correct headers. */
export interface CachedRefusal {
  /** Isolate clock (ms) at which a retry could succeed. */
  readonly retryAtMs: number;
  /** Isolate clock (ms) at which the bucket is full again. */
  readonly resetAtMs: number;
  /** Whole tokens left when refused. */
  readonly remaining: number;
}

/**
 * A size-bounded LRU of refused (rule, client) pairs, per isolate. While an entry holds, the
 * client's requests are refused at once, without a backend call: under a flood the backend
 * sees about one call per client per retry interval. An entry can only be too cautious by the
 * clock skew between isolate and store, never admit what the store would refuse.
 *
 * @example
 * const cache = new DenyCache(10_000);
 * cache.remember("login|ip:…", { retryAtMs: now + 2000, resetAtMs: now + 60000, remaining: 0 });
 * cache.lookup("login|ip:…", now); // the entry, until now + 2000
 */
export class DenyCache {
  private readonly entries = new Map<string, CachedRefusal>();

  constructor(private readonly maxEntries: number) {}

  /** The refusal for `key` if it still holds at `nowMs`; expired entries are dropped. */
  lookup(key: string, nowMs: number): CachedRefusal | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.retryAtMs <= nowMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  remember(key: string, refusal: CachedRefusal): void {
    if (this.maxEntries === 0) return;
    // Re-inserting moves the key to the newest end; Map keeps insertion order.
    this.entries.delete(key);
    this.entries.set(key, refusal);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }
}
