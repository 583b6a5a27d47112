import type { BucketCharge, LimiterBackend } from "./backend";
import { ceilDiv, takeBuckets, type BucketState } from "./token-bucket";

/** Options of {@link memoryBackend}. */
export interface MemoryBackendOptions {
  /** The store's clock, ms. Default `Date.now`; tests inject their own. */
  readonly clock?: () => number;
}

interface StoredBucket {
  readonly state: BucketState;
  /** When the bucket is full again: then it can be forgotten (a missing bucket is full). */
  readonly fullAtMs: number;
}

/** Every this many writes, buckets that have refilled are swept, so memory does not grow without bound. */
const SWEEP_EVERY = 1_000;

/**
 * Buckets in this isolate's memory: for unit tests, library users' own tests, and local
 * experiments (`LIMITER_BACKEND=memory`). Nothing is shared across isolates or processes, so
 * in production every isolate would hand out the whole limit: use the Durable Object or Upstash
 * backend there. Same semantics as theirs (the core's token bucket), exact within one isolate.
 *
 * @example
 * const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", capacity: 5, rate: "1/1m" }] });
 */
export function memoryBackend(options: MemoryBackendOptions = {}): LimiterBackend {
  const clock = options.clock ?? Date.now;
  const buckets = new Map<string, StoredBucket>();
  let writes = 0;
  const keyOf = (charge: BucketCharge) => `${charge.bucket}|${charge.clientKey}`;

  const decide = (charges: readonly BucketCharge[], write: boolean) => {
    const nowMs = clock();
    const entries = charges.map((charge) => ({ ...charge, state: buckets.get(keyOf(charge))?.state }));
    const { decisions, next } = takeBuckets(entries, nowMs);
    if (write) {
      next.forEach((state, i) => {
        const charge = charges[i];
        if (state === undefined || charge === undefined) return;
        const missing = charge.policy.capacity * charge.policy.refillPeriodMs - state.level;
        buckets.set(keyOf(charge), { state, fullAtMs: state.updatedAtMs + ceilDiv(missing, charge.policy.refillTokens) });
        if (++writes % SWEEP_EVERY === 0) sweep(nowMs);
      });
    }
    return Promise.resolve(decisions);
  };
  const sweep = (nowMs: number) => {
    for (const [key, bucket] of buckets) if (bucket.fullAtMs <= nowMs) buckets.delete(key);
  };

  return {
    name: "memory",
    take: (charges, signal) => (signal.throwIfAborted(), decide(charges, true)),
    peek: (charges, signal) => (signal.throwIfAborted(), decide(charges, false)),
    ping: async (signal) => signal.throwIfAborted(),
  };
}
