import { BackendTimeoutError, withDeadline } from "./deadline";
import type { IdentityOptions } from "./identity";
import { PrefixOverrides } from "./overrides";
import type { Rule } from "./rules";
import { SharedCallError, type CallTrace, type StoreGuard } from "./store-guard";

/** Prefix overrides are refreshed in the background once this old, and never used older than the maximum. */
const OVERRIDES_REFRESH_AFTER_MS = 5_000;
/** The bound the documentation promises: a prefix override reaches every isolate within 10 s. */
export const OVERRIDES_MAX_AGE_MS = 10_000;

/**
 * One isolate's copy of the prefix overrides (exact ones live beside their buckets in the store):
 * at most {@link OVERRIDES_MAX_AGE_MS} old, refreshed in the background after half that, one read
 * at a time, so traffic waits for the registry only when an isolate starts or has been idle.
 *
 * @example
 * const overrides = await cache.current(trace); // throws when the registry cannot be read and nothing fresh enough is cached
 * overrides.policyFor(rule, ["ent_abc"]);
 */
export class PrefixOverrideCache {
  private cached: { readonly loadedAtMs: number; readonly overrides: PrefixOverrides } | undefined;
  private loading: { readonly startedMs: number; readonly load: Promise<PrefixOverrides> } | undefined;

  constructor(
    private readonly store: StoreGuard,
    private readonly rules: readonly Rule[],
    private readonly identity: IdentityOptions,
    private readonly clock: () => number,
  ) {}

  /** The overrides as last read, however old (degraded decisions use them: the store is unreachable). */
  get lastKnown(): PrefixOverrides | undefined {
    return this.cached?.overrides;
  }

  /** The overrides when the copy is fresh (no read due), else undefined: for answers that make no store call. */
  get fresh(): PrefixOverrides | undefined {
    const cached = this.cached;
    return cached !== undefined && this.clock() - cached.loadedAtMs < OVERRIDES_REFRESH_AFTER_MS ? cached.overrides : undefined;
  }

  /** Forgets the copy: the next request reads the registry (after an operator changed it). */
  forget(): void {
    this.cached = undefined;
  }

  /**
   * The overrides, fresh enough to decide with. Throws when the registry cannot be read and
   * nothing fresh enough is cached (the caller's fail mode applies).
   */
  async current(trace: CallTrace): Promise<PrefixOverrides> {
    const cached = this.cached;
    const nowMs = this.clock();
    const age = cached === undefined ? Infinity : nowMs - cached.loadedAtMs;
    if (cached !== undefined && age < OVERRIDES_REFRESH_AFTER_MS) return cached.overrides;
    // One read at a time; one older than the budget was lost with the request that started it
    // (a cancelled request's I/O never settles), so start another.
    let loading = this.loading;
    let own = false;
    if (loading === undefined || nowMs - loading.startedMs > this.store.timeoutMs) {
      own = true;
      const started = { startedMs: nowMs, load: this.load() };
      // Kept alive past its starter's response, so a cancelled request does not strand the waiters.
      trace.background?.(started.load.catch(() => {}));
      this.loading = loading = started;
      void started.load
        .catch(() => {})
        .finally(() => {
          if (this.loading === started) this.loading = undefined;
        });
    }
    if (cached !== undefined && age < OVERRIDES_MAX_AGE_MS) return cached.overrides; // refreshing in the background
    // Waited for under this request's own deadline, whoever started the read.
    const { load } = loading;
    try {
      return await withDeadline(() => load, this.store.timeoutMs);
    } catch (error) {
      // Another request's read that did not answer in time may have been lost with that request:
      // this request gets its fail mode, but the breaker only counts reads a request made itself.
      if (!own && error instanceof BackendTimeoutError) throw new SharedCallError(error);
      throw error;
    }
  }

  private async load(): Promise<PrefixOverrides> {
    // Stamped before the read: the list is at least this fresh.
    const loadedAtMs = this.clock();
    const records = await this.store.send((signal) => this.store.backend.overrides.list(signal));
    const overrides = records.length === 0 ? PrefixOverrides.none : PrefixOverrides.from(records, this.rules, this.identity);
    this.cached = { loadedAtMs, overrides };
    return overrides;
  }
}
