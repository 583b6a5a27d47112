import { DurableObject } from "cloudflare:workers";
import {
  ceilDiv,
  refundTokens,
  takeBuckets,
  type BucketDecision,
  type BucketPolicy,
  type BucketState,
} from "../../core/token-bucket";

/** What one bucket keeps in storage: its state and when it will be full (then it can go). */
interface StoredBucket extends BucketState {
  readonly fullAtMs: number;
}

/** One charge as the object sees it: the bucket's name within this client. */
export interface ObjectCharge {
  readonly bucket: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly enforced: boolean;
}

/** A request's decisions, and for each charge the state it wrote (what a refund needs), or null. */
export interface ObjectTakeResult {
  readonly decisions: BucketDecision[];
  readonly charged: (BucketState | null)[];
}

const BUCKET_PREFIX = "bucket:";
/** The cleanup alarm never runs sooner than this: a busy client must not pay for one per request. */
export const MIN_CLEANUP_DELAY_MS = 60_000;

/**
 * The Durable Object behind the default backend: one object per client key, holding that
 * client's buckets. The object is single-threaded and `take` never awaits, so concurrent
 * requests are charged one after another: exact, with no locks.
 *
 * State is kept in memory and written through to storage (the output gate holds the reply
 * until the write is durable), so eviction or a restart never hands out a fresh bucket. An
 * alarm deletes the storage once every bucket would be full again (at the earliest a minute
 * after it was set, so a busy client does not pay for a cleanup cycle per request).
 *
 * @example
 * const stub = env.LIMITER_BUCKETS.get(env.LIMITER_BUCKETS.idFromName(clientKey));
 * const { decisions } = await stub.take([{ bucket: "default", policy, cost: 1, enforced: true }]);
 */
export class ClientBuckets extends DurableObject<object> {
  private readonly buckets = new Map<string, StoredBucket>();
  /** Whether an alarm is already set; an early alarm just reschedules itself. */
  private alarmSet = false;

  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const stored = await ctx.storage.list<StoredBucket>({ prefix: BUCKET_PREFIX });
      for (const [key, bucket] of stored) this.buckets.set(key.slice(BUCKET_PREFIX.length), bucket);
      this.alarmSet = (await ctx.storage.getAlarm()) !== null;
    });
  }

  /** Charges one request to some of this client's buckets, all or nothing, on this object's clock. */
  take(charges: readonly ObjectCharge[]): ObjectTakeResult {
    const nowMs = Date.now();
    const entries = charges.map((charge) => ({ ...charge, state: this.buckets.get(charge.bucket) }));
    const { decisions, next } = takeBuckets(entries, nowMs);
    charges.forEach((charge, i) => {
      const state = next[i];
      const decision = decisions[i];
      if (state !== undefined && decision !== undefined) this.store(charge.bucket, state, state.updatedAtMs + decision.resetMs);
    });
    return { decisions, charged: next.map((state) => state ?? null) };
  }

  /** What `take` would decide now, changing nothing. */
  peek(charges: readonly ObjectCharge[]): BucketDecision[] {
    const entries = charges.map((charge) => ({ ...charge, state: this.buckets.get(charge.bucket) }));
    return takeBuckets(entries, Date.now()).decisions;
  }

  /** Gives back what `take` charged (`charged` is the state it wrote), when another object refused the same request. */
  refund(charges: readonly (ObjectCharge & { readonly charged: BucketState })[]): void {
    const nowMs = Date.now();
    for (const { bucket, policy, cost, charged } of charges) {
      const before = this.buckets.get(bucket);
      const state = refundTokens(before, policy, cost, charged, nowMs);
      if (state === undefined || state === before) continue;
      const missing = policy.capacity * policy.refillPeriodMs - state.level;
      this.store(bucket, state, state.updatedAtMs + ceilDiv(missing, policy.refillTokens));
    }
  }

  /** Round trip for health checks: the object's clock. */
  ping(): number {
    return Date.now();
  }

  /** Forgets refilled buckets; deletes everything once all are full. */
  override async alarm(): Promise<void> {
    const nowMs = Date.now();
    let latestFullAt = 0;
    for (const [name, bucket] of this.buckets) {
      if (bucket.fullAtMs <= nowMs) {
        this.buckets.delete(name);
        void this.ctx.storage.delete(BUCKET_PREFIX + name);
      } else {
        latestFullAt = Math.max(latestFullAt, bucket.fullAtMs);
      }
    }
    if (this.buckets.size === 0) {
      this.alarmSet = false;
      await this.ctx.storage.deleteAll();
    } else {
      await this.ctx.storage.setAlarm(Math.max(latestFullAt, nowMs + MIN_CLEANUP_DELAY_MS));
    }
  }

  private store(name: string, state: BucketState, fullAtMs: number): void {
    const stored: StoredBucket = { ...state, fullAtMs };
    this.buckets.set(name, stored);
    void this.ctx.storage.put(BUCKET_PREFIX + name, stored);
    if (!this.alarmSet) {
      this.alarmSet = true;
      void this.ctx.storage.setAlarm(Math.max(fullAtMs, Date.now() + MIN_CLEANUP_DELAY_MS));
    }
  }
}
