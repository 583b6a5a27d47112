import type { BucketPolicy } from "./token-bucket";

/** What the cache remembers of a refusal, enough to answer the next request with correct headers. */
export interface CachedRefusal {
  /** Isolate clock (ms) at which a retry could succeed. */
  readonly retryAtMs: number;
  /** Isolate clock (ms) at which the bucket is full again. */
  readonly resetAtMs: number;
  /** Whole tokens left when refused. */
  readonly remaining: number;
  /** The policy the refusal was made under (headers report it). */
  readonly policy: BucketPolicy;
}

/**
 * What a lookup tells the caller: refused (the entry holds), wait for the request already asking
 * the backend about this client, or ask the backend itself and `release` the waiters after.
 */
export type DenyCacheAnswer =
  | { readonly kind: "refused"; readonly refusal: CachedRefusal }
  | { readonly kind: "wait"; readonly probe: Promise<void> }
  | { readonly kind: "probe"; readonly release: () => void }
  | { readonly kind: "miss" };

interface CacheEntry extends CachedRefusal {
  /** Set once the refusal has expired and one request is asking the backend again. */
  probe?: Promise<void>;
}

const MISS: DenyCacheAnswer = { kind: "miss" };

/**
 * A size-bounded LRU of refused (rule, client) pairs, per isolate: a hit or a new refusal makes
 * an entry the newest, and the least recently used one goes when the cache is full. While an entry holds, the
 * client's requests are refused at once, without a backend call. When it expires, one request
 * asks the backend again while the client's other requests wait for that answer (no thundering
 * herd at each retry time): under a flood the backend sees about one call per client per retry
 * interval. An entry never admits what the store would refuse; it can be too cautious by the clock
 * skew between isolate and store plus one response's transit.
 *
 * @example
 * const cache = new DenyCache(10_000);
 * cache.remember("login|ip:…", { retryAtMs: now + 2000, resetAtMs: now + 60000, remaining: 0, policy });
 * cache.lookup("login|ip:…", now); // { kind: "refused", refusal }, until now + 2000
 */
export class DenyCache {
  private readonly entries = new Map<string, CacheEntry>();
  /** The newest key (Map keeps insertion order): a flood's hits need not move it. */
  private newest: string | undefined;

  constructor(private readonly maxEntries: number) {}

  /** What to do about `key` at `nowMs`; see {@link DenyCacheAnswer}. */
  lookup(key: string, nowMs: number): DenyCacheAnswer {
    const entry = this.entries.get(key);
    if (entry === undefined) return MISS;
    if (entry.retryAtMs > nowMs) {
      this.touch(key, entry);
      return { kind: "refused", refusal: entry };
    }
    if (entry.probe !== undefined) return { kind: "wait", probe: entry.probe };
    let release!: () => void;
    entry.probe = new Promise<void>((resolve) => (release = resolve));
    return {
      kind: "probe",
      release: () => {
        // Unless a new refusal replaced it, the expired entry goes: the client may pass again.
        if (this.entries.get(key) === entry) this.entries.delete(key);
        release();
      },
    };
  }

  /** Forgets `key` (a reset, an override changed): the next request asks the store. */
  forget(key: string): void {
    this.entries.delete(key);
  }

  /** The refusal that holds for `key` at `nowMs`, if any (a hit, as for {@link lookup}); never starts a probe. */
  peek(key: string, nowMs: number): CachedRefusal | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.retryAtMs <= nowMs) return undefined;
    this.touch(key, entry);
    return entry;
  }

  /** Makes a hit entry the most recently used: a client still flooding stays in the cache. */
  private touch(key: string, entry: CacheEntry): void {
    if (this.newest === key) return;
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.newest = key;
  }

  remember(key: string, refusal: CachedRefusal): void {
    if (this.maxEntries === 0) return;
    // Answers to concurrent requests arrive out of order: the latest retry time wins.
    const current = this.entries.get(key);
    if (current !== undefined && current.probe === undefined && current.retryAtMs > refusal.retryAtMs) return;
    // Re-inserting moves the key to the newest end; Map keeps insertion order.
    this.entries.delete(key);
    this.entries.set(key, { ...refusal });
    this.newest = key;
    // Map keeps insertion order: the first key is the least recently used.
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
