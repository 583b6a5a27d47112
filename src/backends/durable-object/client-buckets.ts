import { DurableObject } from "cloudflare:workers";
import type { BucketAnswer, OverrideRecord } from "../../core/backend";
import { acquireSlots, releaseSlot, renewSlot, slotsExpireInMs, type SlotDecision, type SlotState } from "../../core/slots";
import { ceilDiv, refundTokens, takeBuckets, type BucketPolicy, type BucketState } from "../../core/token-bucket";

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

/** One slot claim as the object sees it: the concurrency rule's name, the lease id, limit and duration. */
export interface ObjectSlotClaim {
  readonly bucket: string;
  readonly id: string;
  readonly limit: number;
  readonly leaseMs: number;
  readonly enforced: boolean;
}

/** One charge's answer: the decision, the policy in force, and the state it wrote (what a refund needs), or null. */
export interface ObjectAnswer extends BucketAnswer {
  readonly charged: BucketState | null;
}

const BUCKET_PREFIX = "bucket:";
const OVERRIDE_PREFIX = "override:";
const REGISTRY_PREFIX = "registry:";
const SLOTS_PREFIX = "slots:";
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
 * An exact override of a bucket is kept beside it (`override:<bucket>`) and replaces the
 * charge's policy in the same call, so it costs no round trip. One object, named
 * `__limiter_registry`, also keeps the list of every override for the admin API and the
 * isolates' prefix caches.
 *
 * @example
 * const stub = env.LIMITER_BUCKETS.get(env.LIMITER_BUCKETS.idFromName(clientKey));
 * const [answer] = await stub.take([{ bucket: "default", policy, cost: 1, enforced: true }]);
 */
export class ClientBuckets extends DurableObject<object> {
  private readonly buckets = new Map<string, StoredBucket>();
  private readonly overrides = new Map<string, BucketPolicy>();
  private readonly registry = new Map<string, OverrideRecord>();
  /** Concurrency rules' leases, by rule name; written through like buckets, so a restart forgets no request in flight. */
  private readonly slots = new Map<string, SlotState>();
  /** Whether an alarm is already set; an early alarm just reschedules itself. */
  private alarmSet = false;

  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const load = async <T>(prefix: string, into: Map<string, T>) => {
        for (const [key, value] of await ctx.storage.list<T>({ prefix })) into.set(key.slice(prefix.length), value);
      };
      await load(BUCKET_PREFIX, this.buckets);
      await load(OVERRIDE_PREFIX, this.overrides);
      await load(REGISTRY_PREFIX, this.registry);
      await load(SLOTS_PREFIX, this.slots);
      this.alarmSet = (await ctx.storage.getAlarm()) !== null;
    });
  }

  /** Charges one request to some of this client's buckets, all or nothing, on this object's clock. */
  take(charges: readonly ObjectCharge[]): ObjectAnswer[] {
    const nowMs = Date.now();
    const { results } = takeBuckets(this.entries(charges), nowMs);
    return results.map(({ entry, decision, next, expiresInMs }) => {
      if (next !== undefined) this.store(entry.bucket, next, nowMs + expiresInMs);
      // Only spent tokens are something to refund; a block is not.
      return { decision, policy: entry.policy, charged: decision.outcome === "allowed" ? (next ?? null) : null };
    });
  }

  /** What `take` would answer now, changing nothing. */
  peek(charges: readonly ObjectCharge[]): BucketAnswer[] {
    return takeBuckets(this.entries(charges), Date.now()).results.map(({ entry, decision }) => ({ decision, policy: entry.policy, charged: null }));
  }

  /** Gives back what `take` charged (`charged` is the state it wrote), when another object refused the same request. */
  refund(charges: readonly (ObjectCharge & { readonly charged: BucketState })[]): void {
    const nowMs = Date.now();
    for (const { bucket, cost, charged, policy: given } of charges) {
      const policy = this.overrides.get(bucket) ?? given;
      const before = this.buckets.get(bucket);
      const state = refundTokens(before, policy, cost, charged, nowMs);
      if (state === undefined || state === before) continue;
      const missing = policy.capacity * policy.refillPeriodMs - state.level;
      this.store(bucket, state, Math.max(state.updatedAtMs + ceilDiv(missing, policy.refillTokens), state.blockedUntilMs ?? 0));
    }
  }

  /** Makes these buckets full again. */
  reset(buckets: readonly string[]): void {
    for (const name of buckets) {
      this.buckets.delete(name);
      void this.ctx.storage.delete(BUCKET_PREFIX + name);
    }
  }

  /** Sets or (with null) removes a bucket's exact override; its tokens stay, capped by the next take. */
  setOverride(bucket: string, policy: BucketPolicy | null): void {
    if (policy === null) {
      this.overrides.delete(bucket);
      void this.ctx.storage.delete(OVERRIDE_PREFIX + bucket);
    } else {
      const { capacity, refillTokens, refillPeriodMs } = policy;
      this.overrides.set(bucket, { capacity, refillTokens, refillPeriodMs });
      void this.ctx.storage.put(OVERRIDE_PREFIX + bucket, { capacity, refillTokens, refillPeriodMs });
    }
    // Its time to full was reckoned under the old policy: keep the bucket until the next take reckons it anew.
    const current = this.buckets.get(bucket);
    if (current !== undefined) {
      const kept: StoredBucket = { ...current, fullAtMs: Number.MAX_SAFE_INTEGER };
      this.buckets.set(bucket, kept);
      void this.ctx.storage.put(BUCKET_PREFIX + bucket, kept);
    }
  }

  /** The registry object's list of every override. */
  listOverrides(): OverrideRecord[] {
    return [...this.registry.values()];
  }

  putOverride(record: OverrideRecord): void {
    this.registry.set(record.id, record);
    void this.ctx.storage.put(REGISTRY_PREFIX + record.id, record);
  }

  removeOverride(id: string): boolean {
    void this.ctx.storage.delete(REGISTRY_PREFIX + id);
    return this.registry.delete(id);
  }

  /** Takes (or renews) one slot per claim, all or nothing over enforced claims (`acquireSlots`). */
  acquireSlots(claims: readonly ObjectSlotClaim[]): SlotDecision[] {
    const nowMs = Date.now();
    const { decisions, writes } = acquireSlots(claims.map((claim) => ({ claim, enforced: claim.enforced, state: this.slots.get(claim.bucket) })), nowMs);
    for (const { entry, next } of writes) this.storeSlots(entry.claim.bucket, next, nowMs);
    return decisions;
  }

  /** Extends the leases these ids still hold; never takes a slot. */
  renewSlots(claims: readonly ObjectSlotClaim[]): void {
    const nowMs = Date.now();
    for (const claim of claims) {
      const current = this.slots.get(claim.bucket);
      if (current !== undefined) this.storeSlots(claim.bucket, renewSlot(current, claim, nowMs), nowMs);
    }
  }

  /** Gives slots back; an id that holds none is ignored. */
  releaseSlots(claims: readonly { readonly bucket: string; readonly id: string }[]): void {
    const nowMs = Date.now();
    for (const { bucket, id } of claims) this.storeSlots(bucket, releaseSlot(this.slots.get(bucket), id, nowMs), nowMs);
  }

  /** Round trip for health checks: the object's clock. */
  ping(): number {
    return Date.now();
  }

  /** Forgets refilled buckets; deletes everything once all are full and nothing else is kept. */
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
    for (const [name, leases] of this.slots) {
      const expiresInMs = slotsExpireInMs(leases, nowMs);
      if (expiresInMs > 0) latestFullAt = Math.max(latestFullAt, nowMs + expiresInMs);
      else this.storeSlots(name, [], nowMs);
    }
    if (this.buckets.size > 0 || this.slots.size > 0) {
      await this.ctx.storage.setAlarm(Math.max(latestFullAt, nowMs + MIN_CLEANUP_DELAY_MS));
      return;
    }
    this.alarmSet = false;
    // Overrides and the registry are configuration: they stay until an operator removes them.
    if (this.overrides.size === 0 && this.registry.size === 0) await this.ctx.storage.deleteAll();
  }

  /** The charges as the bucket math takes them: current state, and an exact override's policy where one is set. */
  private entries(charges: readonly ObjectCharge[]) {
    return charges.map((charge) => {
      // An override replaces capacity and refill; the rule's block period stays.
      const override = this.overrides.get(charge.bucket);
      return { ...charge, policy: override === undefined ? charge.policy : { ...charge.policy, ...override }, state: this.buckets.get(charge.bucket) };
    });
  }

  private storeSlots(name: string, leases: SlotState, nowMs: number): void {
    if (leases.length === 0) {
      if (this.slots.delete(name)) void this.ctx.storage.delete(SLOTS_PREFIX + name);
      return;
    }
    this.slots.set(name, leases);
    void this.ctx.storage.put(SLOTS_PREFIX + name, leases);
    if (!this.alarmSet) {
      this.alarmSet = true;
      void this.ctx.storage.setAlarm(nowMs + Math.max(slotsExpireInMs(leases, nowMs), MIN_CLEANUP_DELAY_MS));
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
