import { DurableObject } from "cloudflare:workers";
import type { BucketAnswer, OverrideRecord } from "../../core/backend";
import { acquireSlots, releaseSlot, renewSlot, slotsExpireInMs, type SlotDecision, type SlotState } from "../../core/slots";
import { ceilDiv, floorDiv, newGeneration, refundTokens, stateExpiresInMs, takeBuckets, takeTokens, type BucketPolicy, type BucketState } from "../../core/token-bucket";

/** What one bucket keeps in storage: its state and when it will be full (then it can go). */
interface StoredBucket extends BucketState {
  readonly fullAtMs: number;
  /** Leases that isolates may still be handing out. */
  readonly leased?: LeasedOut;
}

/**
 * Leased tokens isolates may still hand out: per isolate (its batcher's id), what its current
 * lease took (whole tokens: granted × cost, whatever the policy's units), until when it may be
 * spent, and which of its calls took it (`seq`). An isolate holds one lease per client at a time
 * and ends it (giving back the rest) before its next call, so each later call from it clears its entry.
 */
interface LeasedOut {
  /** The policy the bucket was last reckoned under with these leases out (a change caps bucket plus leases). */
  readonly policy: ShapeOfBucket;
  readonly holders: Readonly<Record<string, LeaseHolder>>;
}

interface LeaseHolder {
  readonly tokens: number;
  readonly untilMs: number;
  /** The call that took the lease (increasing per isolate); absent for a caller that sent none. */
  readonly seq?: number;
}

/** A policy's capacity and refill, without its block period. */
type ShapeOfBucket = Pick<BucketPolicy, "capacity" | "refillTokens" | "refillPeriodMs">;

/** An isolate's clock and the object's may disagree a little: a lease is counted as out this much longer. */
const LEASE_SLACK_MS = 1_000;

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

/** A charge to give back: the charge as made (its cost is what to return) and the state its take wrote. */
export type ObjectRefund = ObjectCharge & { readonly charged: BucketState };

/** An unused lease's rest: a refund of tokens the lease took in the call numbered `seq`. */
export type LeaseReturn = ObjectRefund & { readonly seq?: number };

/**
 * One call of an isolate's batch (see {@link ClientBuckets.serve}): unused leased tokens to give
 * back, then several requests' charges applied one after another, then possibly a new lease.
 */
export interface ServeRequest {
  /** The calling isolate (its batcher's id): its previous leases of this client have ended with this call. */
  readonly holder?: string;
  /** This call's number: increasing per holder, so a late call cannot end (or replace) a newer call's lease. */
  readonly seq?: number;
  /**
   * Unused leased tokens, given back first with refund semantics (only what each still
   * withholds), and only while the object still counts that lease (its holder's entry, same
   * `seq`, live), at most what the lease took; otherwise dropped (towards refusing).
   */
  readonly giveBack?: readonly LeaseReturn[];
  /** Each request's charges, all or nothing per request, in order: exactly as many `take` calls. */
  readonly takes: readonly (readonly ObjectCharge[])[];
  /** After the takes: up to `want` more charges of `cost` on one bucket, for the isolate to spend locally. */
  readonly lease?: { readonly bucket: string; readonly policy: BucketPolicy; readonly cost: number; readonly want: number; readonly ttlMs: number };
}

/** A lease granted: `granted` charges of the lease's cost, taken from the bucket in one step. */
export interface LeaseGrant {
  readonly granted: number;
  /** The state the lease's take wrote: what giving back the unused part refunds against. */
  readonly charged: BucketState;
  /** The bucket after the lease (remaining whole tokens, time until full), under `policy`. */
  readonly remaining: number;
  readonly resetMs: number;
  readonly policy: BucketPolicy;
}

export interface ServeAnswer {
  readonly answers: ObjectAnswer[][];
  readonly lease: LeaseGrant | null;
}

/**
 * A lease takes at most this share of what a bucket holds after the batch: with k isolates
 * leasing at once, the bucket still keeps (1 − 1/8)^k of its tokens, and a bucket with fewer than
 * 8 × cost tokens grants nothing, so a client near its limit is decided exactly, one call per request.
 */
export const LEASE_SHARE = 8;

const BUCKET_PREFIX = "bucket:";
const OVERRIDE_PREFIX = "override:";
const REGISTRY_PREFIX = "registry:";
const SLOTS_PREFIX = "slots:";
/** The next cleanup: when the last bucket is full, not sooner than a minute, not later than a day (it then looks again). */
function cleanupAt(latestFullAtMs: number, nowMs: number): number {
  return Math.min(Math.max(latestFullAtMs, nowMs + MIN_CLEANUP_DELAY_MS), nowMs + MAX_CLEANUP_DELAY_MS);
}
const MAX_CLEANUP_DELAY_MS = 86_400_000;

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
    const dirty = new Set<string>();
    const answers = this.charge(charges, nowMs, dirty);
    this.persist(dirty);
    return answers;
  }

  /**
   * An isolate's batch in one call: gives back unused leased tokens (of leases it still
   * counts: see {@link ServeRequest.giveBack}), ends the caller's earlier leases, charges each request in
   * order (the same decisions as that many `take` calls), and may grant a lease: up to
   * `lease.want` more charges taken now, for the isolate to hand out without asking, never more
   * than 1/{@link LEASE_SHARE} of what the bucket then holds. Each bucket is written once per
   * call, before the reply leaves (write-through: the output gate holds it until durable).
   */
  serve(request: ServeRequest): ServeAnswer {
    const nowMs = Date.now();
    const dirty = new Set<string>();
    const { holder, seq } = request;
    if (request.giveBack !== undefined && request.giveBack.length > 0 && holder !== undefined) this.giveBack(this.counted(holder, request.giveBack, nowMs, dirty), nowMs, dirty);
    if (holder !== undefined) this.releaseHolder(holder, seq, dirty);
    const answers = request.takes.map((charges) => this.charge(charges, nowMs, dirty));
    // A lease is granted only to a caller that says who it is (so its next call can release it).
    const lease = request.lease === undefined || holder === undefined ? null : this.grantLease(request.lease, holder, seq, nowMs, dirty);
    this.persist(dirty);
    return { answers, lease };
  }

  /** What `take` would answer now, changing nothing. */
  peek(charges: readonly ObjectCharge[]): BucketAnswer[] {
    return takeBuckets(this.entries(charges), Date.now()).results.map(({ entry, decision }) => ({ decision, policy: entry.policy, charged: null }));
  }

  /** Gives back what `take` charged (`charged` is the state it wrote), when another object refused the same request. */
  refund(charges: readonly ObjectRefund[]): void {
    const dirty = new Set<string>();
    this.giveBack(charges, Date.now(), dirty);
    this.persist(dirty);
  }

  /**
   * Makes these buckets full again, less what isolates may still hand out from leases taken
   * before (they were spent from the old bucket, but can still be spent after the reset): so a
   * reset never lets more through than a full bucket. The bucket starts a new generation, so a
   * refund of a charge made before gives nothing; only the unused rest of a lease the reset
   * counted as out comes back (see `counted`).
   */
  reset(buckets: readonly string[]): void {
    const nowMs = Date.now();
    const dirty = new Set<string>();
    for (const name of buckets) {
      const leased = liveLease(this.buckets.get(name), nowMs);
      const out = leased === undefined ? 0 : leasedTokens(leased);
      if (leased === undefined || out === 0) {
        this.buckets.delete(name);
        void this.ctx.storage.delete(BUCKET_PREFIX + name);
        continue;
      }
      // Full under the policy in force (an exact override, else the one the leases were last reckoned under), in its units.
      const policy = shapeOf(this.overrides.get(name) ?? leased.policy);
      const tokens = Math.max(0, policy.capacity - out);
      const missing = (policy.capacity - tokens) * policy.refillPeriodMs;
      this.remember(name, { level: tokens * policy.refillPeriodMs, unitsPerToken: policy.refillPeriodMs, updatedAtMs: nowMs, generation: newGeneration() }, nowMs + ceilDiv(missing, policy.refillTokens), dirty, { ...leased, policy });
    }
    this.persist(dirty);
  }

  /**
   * Sets or (with null) removes a bucket's exact override; its tokens stay, capped by the next
   * take. The bucket is kept until it is full under the new override too; removing one needs
   * nothing more (each write keeps a bucket until it is full under the charge's own policy as well).
   */
  setOverride(bucket: string, policy: BucketPolicy | null): void {
    if (policy === null) {
      this.overrides.delete(bucket);
      void this.ctx.storage.delete(OVERRIDE_PREFIX + bucket);
    } else {
      const { capacity, refillTokens, refillPeriodMs } = policy;
      this.overrides.set(bucket, { capacity, refillTokens, refillPeriodMs });
      void this.ctx.storage.put(OVERRIDE_PREFIX + bucket, { capacity, refillTokens, refillPeriodMs });
    }
    const current = this.buckets.get(bucket);
    if (current !== undefined) {
      const nowMs = Date.now();
      const capped = withinNewLimit(current, policy, nowMs);
      const kept: StoredBucket = { ...capped, fullAtMs: policy === null ? capped.fullAtMs : Math.max(capped.fullAtMs, nowMs + stateExpiresInMs(capped, policy, nowMs)) };
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
      await this.ctx.storage.setAlarm(cleanupAt(latestFullAt, nowMs));
      return;
    }
    this.alarmSet = false;
    // Overrides and the registry are configuration: they stay until an operator removes them.
    if (this.overrides.size === 0 && this.registry.size === 0) await this.ctx.storage.deleteAll();
  }

  /** One request's charges, all or nothing; the buckets it changed join `dirty`. */
  private charge(charges: readonly ObjectCharge[], nowMs: number, dirty: Set<string>): ObjectAnswer[] {
    for (const charge of charges) this.reckon(charge.bucket, charge.policy, nowMs, dirty);
    const { results } = takeBuckets(this.entries(charges), nowMs);
    return results.map(({ entry, decision, next, expiresInMs }, i) => {
      if (next !== undefined) this.remember(entry.bucket, next, Math.max(nowMs + expiresInMs, fullUnder(next, charges[i]!.policy, nowMs)), dirty);
      // Only spent tokens are something to refund; a block is not.
      return { decision, policy: entry.policy, charged: decision.outcome === "allowed" ? (next ?? null) : null };
    });
  }

  /**
   * A bucket with leases out, charged under another policy than the one they were last reckoned
   * under (an override set or removed, a changed rule): the charge's capacity caps the bucket
   * plus the leases still out, as `setOverride` does (removing an override cannot: the rule's
   * policy is only known here).
   */
  private reckon(name: string, given: BucketPolicy, nowMs: number, dirty: Set<string>): void {
    const bucket = this.buckets.get(name);
    if (bucket?.leased === undefined) return;
    const policy = this.overrides.get(name) ?? given;
    const { policy: was } = bucket.leased;
    if (was !== undefined && was.capacity === policy.capacity && was.refillTokens === policy.refillTokens && was.refillPeriodMs === policy.refillPeriodMs) return;
    const capped = withinNewLimit(bucket, policy, nowMs);
    if (capped === bucket) return;
    this.buckets.set(name, capped);
    dirty.add(name);
  }

  /**
   * The give-backs of `holder`'s leases the object still has a record of, from the same call
   * (`seq`), at most what each took. A reset, an override or another charge of the bucket drops
   * the records of leases past their lifetime, and then their give-backs (towards refusing): a
   * reset or override no longer reckons with those tokens, so adding them could over-admit.
   */
  private counted(holder: string, returns: readonly LeaseReturn[], nowMs: number, dirty: Set<string>): ObjectRefund[] {
    const honoured: ObjectRefund[] = [];
    const left = new Map<string, number>();
    for (const item of returns) {
      this.reckon(item.bucket, item.policy, nowMs, dirty);
      // The holder's record, live or not: one past its lifetime is no longer counted as out, but
      // until a reset, an override or another charge of the bucket drops it, its unused rest can
      // still come back (a client that paused gets it back with its next call).
      const bucket = this.buckets.get(item.bucket);
      const entry = bucket?.leased?.holders[holder];
      if (bucket === undefined || entry === undefined || entry.seq !== item.seq) continue;
      const tokens = Math.min(item.cost, left.get(item.bucket) ?? entry.tokens);
      left.set(item.bucket, (left.get(item.bucket) ?? entry.tokens) - tokens);
      // A lease still on record is counted in this generation of the bucket (a reset subtracted
      // it from the new one), so its rest comes back, whichever generation it was taken from.
      if (tokens >= 1) honoured.push({ bucket: item.bucket, policy: item.policy, cost: tokens, enforced: item.enforced, charged: { ...item.charged, generation: bucket.generation } });
    }
    return honoured;
  }

  /**
   * An isolate calls again: its previous leases have ended (their rest comes back in this call),
   * so they are no longer out. A lease taken by a later call of it (this one arrived late) stays.
   */
  private releaseHolder(holder: string, seq: number | undefined, dirty: Set<string>): void {
    for (const [name, bucket] of this.buckets) {
      const leased = bucket.leased;
      const entry = leased?.holders[holder];
      if (leased === undefined || entry === undefined) continue;
      if (seq !== undefined && entry.seq !== undefined && entry.seq > seq) continue;
      const { [holder]: _ended, ...holders } = leased.holders;
      const { leased: _old, ...rest } = bucket;
      this.buckets.set(name, Object.keys(holders).length === 0 ? rest : { ...rest, leased: { ...leased, holders } });
      dirty.add(name);
    }
  }

  private giveBack(charges: readonly ObjectRefund[], nowMs: number, dirty: Set<string>): void {
    for (const { bucket, cost, charged, policy: given } of charges) {
      const policy = this.overrides.get(bucket) ?? given;
      const before = this.buckets.get(bucket);
      const state = refundTokens(before, policy, cost, charged, nowMs);
      if (state === undefined || state === before) continue;
      this.remember(bucket, state, Math.max(fullUnder(state, policy, nowMs), fullUnder(state, given, nowMs)), dirty);
    }
  }

  /** Takes up to `want` × `cost` tokens for an isolate to spend locally, within the bucket's share; null when none. */
  private grantLease(lease: NonNullable<ServeRequest["lease"]>, holder: string, seq: number | undefined, nowMs: number, dirty: Set<string>): LeaseGrant | null {
    if (lease.want < 1 || lease.cost < 1) return null;
    this.reckon(lease.bucket, lease.policy, nowMs, dirty);
    const [entry] = this.entries([{ bucket: lease.bucket, policy: lease.policy, cost: 0, enforced: true }]);
    // A policy that blocks after a refusal is decided by the object alone: a lease would keep admitting during a block.
    if (entry === undefined || (entry.policy.blockForMs ?? 0) > 0) return null;
    const before = liveLease(this.buckets.get(lease.bucket), nowMs);
    const mine = before?.holders[holder];
    // This call arrived after a later one of the same isolate, which holds the current lease: none for it.
    if (seq !== undefined && mine?.seq !== undefined && mine.seq > seq) return null;
    const { decision } = takeTokens(entry.state, entry.policy, 0, nowMs);
    if (decision.outcome !== "allowed") return null; // blocked
    const granted = Math.min(lease.want, Math.floor(decision.remaining / LEASE_SHARE / lease.cost));
    if (granted < 1) return null;
    const taken = takeTokens(entry.state, entry.policy, granted * lease.cost, nowMs);
    if (taken.decision.outcome !== "allowed" || taken.next === undefined) return null;
    // Amounts in whole tokens, so leases taken under another period are counted as what they are.
    const holders = { ...before?.holders, [holder]: { tokens: granted * lease.cost, untilMs: nowMs + Math.max(0, lease.ttlMs) + LEASE_SLACK_MS, ...(seq !== undefined && { seq }) } };
    this.remember(lease.bucket, taken.next, Math.max(nowMs + taken.expiresInMs, fullUnder(taken.next, lease.policy, nowMs)), dirty, { policy: shapeOf(entry.policy), holders });
    return { granted, charged: taken.next, remaining: taken.decision.remaining, resetMs: taken.decision.resetMs, policy: entry.policy };
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

  /**
   * Keeps a bucket's new state in memory; `persist` writes it (once per call, however many
   * charges changed it). Leases still out are kept beside it (`leased`, else the previous record
   * while live), and the bucket is kept at least as long as they are.
   */
  private remember(name: string, state: BucketState, fullAtMs: number, dirty: Set<string>, leased?: LeasedOut): void {
    const { level, unitsPerToken, updatedAtMs, generation, blockedUntilMs } = state;
    const out = leased ?? liveLease(this.buckets.get(name), Date.now());
    const stored: StoredBucket = {
      level,
      unitsPerToken,
      updatedAtMs,
      generation,
      ...(blockedUntilMs !== undefined && { blockedUntilMs }),
      fullAtMs: out === undefined ? fullAtMs : Math.max(fullAtMs, ...Object.values(out.holders).map((h) => h.untilMs)),
      ...(out !== undefined && { leased: out }),
    };
    this.buckets.set(name, stored);
    dirty.add(name);
  }

  /**
   * Writes the changed buckets through to storage, before this call's reply: the output gate
   * holds the reply until the write is durable, so no answer is ever based on a state a restart
   * could lose. The cleanup alarm is set once, not per write.
   */
  private persist(dirty: ReadonlySet<string>): void {
    if (dirty.size === 0) return;
    let latestFullAt = 0;
    if (dirty.size === 1) {
      for (const name of dirty) {
        const stored = this.buckets.get(name);
        if (stored === undefined) continue;
        void this.ctx.storage.put(BUCKET_PREFIX + name, stored);
        latestFullAt = stored.fullAtMs;
      }
    } else {
      const entries: Record<string, StoredBucket> = {};
      for (const name of dirty) {
        const stored = this.buckets.get(name);
        if (stored === undefined) continue;
        entries[BUCKET_PREFIX + name] = stored;
        latestFullAt = Math.max(latestFullAt, stored.fullAtMs);
      }
      void this.ctx.storage.put(entries);
    }
    if (!this.alarmSet) {
      this.alarmSet = true;
      void this.ctx.storage.setAlarm(cleanupAt(latestFullAt, Date.now()));
    }
  }
}

/**
 * A bucket under a new exact override while isolates hold leases of it: the new capacity caps
 * what the bucket holds plus what the leases may still hand out (they were taken under the old
 * limit), so a lowered limit holds from the next request on. Without live leases (or when the
 * override is removed: the rule's policy is not known here), the bucket is kept as it is and
 * the next take caps it.
 */
function withinNewLimit(bucket: StoredBucket, policy: BucketPolicy | null, nowMs: number): StoredBucket {
  const leased = liveLease(bucket, nowMs);
  if (leased === undefined) {
    // Past leases' rests are not given back across a change of policy.
    if (bucket.leased === undefined) return bucket;
    const { leased: _past, ...rest } = bucket;
    return rest;
  }
  if (policy === null) return bucket;
  const { decision } = takeTokens(bucket, { ...policy, blockForMs: 0 }, 0, nowMs);
  if (decision.outcome !== "allowed") return bucket;
  const out = leasedTokens(leased);
  const tokens = Math.max(0, Math.min(decision.remaining + out, policy.capacity) - out);
  const { blockedUntilMs, generation } = bucket;
  return { level: tokens * policy.refillPeriodMs, unitsPerToken: policy.refillPeriodMs, updatedAtMs: Math.max(nowMs, bucket.updatedAtMs), generation, ...(blockedUntilMs !== undefined && { blockedUntilMs }), fullAtMs: bucket.fullAtMs, leased: { ...leased, policy: shapeOf(policy) } };
}

/**
 * When a state stops mattering under a policy (full again, any block over). A bucket is kept
 * until then under both the policy in force and the charge's own (the rule's, or its prefix
 * override's), so removing an exact override never leaves a bucket without an end.
 */
function fullUnder(state: BucketState, policy: BucketPolicy, nowMs: number): number {
  return nowMs + stateExpiresInMs(state, policy, nowMs);
}

/** The leases of a bucket that isolates may still be spending, if any. */
function liveLease(bucket: StoredBucket | undefined, nowMs: number): LeasedOut | undefined {
  const leased = bucket?.leased;
  if (leased === undefined) return undefined;
  const { policy, holders } = fromStorage(leased);
  const live = Object.fromEntries(Object.entries(holders).filter(([, h]) => h.untilMs > nowMs && h.tokens > 0));
  return Object.keys(live).length === 0 ? undefined : { policy, holders: live };
}

/**
 * A record as stored, also in the earlier form (amounts in units of the policy of the last
 * grant: `full`, `unitsPerToken`, holders' `units`), read as tokens, rounded up (towards refusing).
 */
function fromStorage(leased: LeasedOut): LeasedOut {
  if (leased.policy !== undefined) return leased;
  const old = leased as unknown as { full: number; unitsPerToken: number; holders: Record<string, { units: number; untilMs: number }> };
  const unit = Math.max(1, old.unitsPerToken);
  const holders = Object.fromEntries(Object.entries(old.holders).map(([name, h]) => [name, { tokens: ceilDiv(h.units, unit), untilMs: h.untilMs }]));
  return { policy: { capacity: floorDiv(old.full, unit), refillTokens: 1, refillPeriodMs: unit }, holders };
}

function leasedTokens(leased: LeasedOut): number {
  let tokens = 0;
  for (const { tokens: held } of Object.values(leased.holders)) tokens += held;
  return tokens;
}

function shapeOf({ capacity, refillTokens, refillPeriodMs }: ShapeOfBucket): ShapeOfBucket {
  return { capacity, refillTokens, refillPeriodMs };
}
