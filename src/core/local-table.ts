/**
 * What an isolate keeps per client while it decides alone (degraded mode: local buckets and
 * local concurrency slots). Bounded, and it never forgets a live entry to make room: a forgotten
 * entry would hand its client a fresh local share, so other clients' traffic could lift a drained
 * client's limit. Room is made only from entries past their expiry (state that no longer
 * matters: a bucket full again, leases lapsed); when every entry is live, a new client is not
 * tracked, and callers refuse it (towards refusing, never admitting).
 *
 * @example
 * const table = new LocalTable<BucketState>(ISOLATE_BOUNDS.localEntries);
 * if (!table.tracks(key, now)) return refuse();
 * const state = table.get(key, now);
 * table.set(key, next, now + expiresInMs, now);
 */
export class LocalTable<V> {
  private readonly entries = new Map<string, { readonly value: V; readonly expiresAtMs: number }>();
  /** When the table was last found full of live entries: no entry expires before this. */
  private fullUntilMs = -Infinity;

  constructor(private readonly limit: number) {}

  /** The live value of `key`, if any; reading makes it the newest. */
  get(key: string, nowMs: number): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (entry.expiresAtMs <= nowMs) return undefined;
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Whether `key` has an entry, or room can be made for one now. */
  tracks(key: string, nowMs: number): boolean {
    return this.entries.has(key) || this.makeRoom(nowMs);
  }

  /** Stores `value` until `expiresAtMs`; false (nothing stored) when no room can be made. */
  set(key: string, value: V, expiresAtMs: number, nowMs: number): boolean {
    if (!this.entries.delete(key) && !this.makeRoom(nowMs)) return false;
    if (expiresAtMs > nowMs) this.entries.set(key, { value, expiresAtMs });
    return true;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Drops expired entries until one more fits; a table of live entries is scanned again only once one may have expired. */
  private makeRoom(nowMs: number): boolean {
    if (this.entries.size < this.limit) return true;
    if (nowMs < this.fullUntilMs) return false;
    let soonest = Infinity;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAtMs <= nowMs) this.entries.delete(key);
      else soonest = Math.min(soonest, entry.expiresAtMs);
    }
    if (this.entries.size < this.limit) return true;
    this.fullUntilMs = soonest;
    return false;
  }
}
