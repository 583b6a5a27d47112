import { isBucketState, isTokenBucket, type RateState } from "./algorithms/index";
import { leasesEndAtMs, liveLeases, tokensOut, underLeases, type LeaseEntry } from "./leases";
import type { BucketPolicy, BucketState } from "./token-bucket";

export { LEASE_SHARE, LEASE_SLACK_MS } from "./leases";

/**
 * The lease ledger, pure: what a client's object records of the tokens isolates took in leases
 * and may still hand out, and the rules that keep every lease inside the bucket. The most delicate
 * invariant of the Durable Object backend lives here, with the clock passed in (`nowMs`), so it is
 * unit-tested in Node (test/core/bucket-table.test.ts).
 */

/** A request for a lease: up to `want` charges of `cost` on bucket `rule`, spendable for `ttlMs`. */
export interface LeaseRequest {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly want: number;
  readonly ttlMs: number;
}

/** A policy's capacity and refill, without its block period. */
export type ShapeOfBucket = Pick<BucketPolicy, "capacity" | "refillTokens" | "refillPeriodMs">;

/** One isolate's current lease of a bucket. */
export interface LeaseHolder {
  /** Whole tokens the lease took (granted × cost, whatever the policy's units). */
  readonly tokens: number;
  /** Until when the isolate may spend it (its lifetime plus {@link LEASE_SLACK_MS}). */
  readonly untilMs: number;
  /** The call that took the lease (increasing per isolate); absent for a caller that sent none. */
  readonly seq?: number;
}

/**
 * Leased tokens isolates may still hand out: per isolate (its batcher's id), what its current
 * lease took, until when, and which of its calls took it. An isolate holds one lease per client at
 * a time and ends it (giving back the rest) before its next call, so each later call from it
 * clears its entry.
 */
export interface LeasedOut {
  /** The policy the bucket was last reckoned under with these leases out (a change caps bucket plus leases). */
  readonly policy: ShapeOfBucket;
  readonly holders: Readonly<Record<string, LeaseHolder>>;
}

/**
 * What one bucket keeps: its state (of any algorithm), when it is full again (then it can go), and
 * the leases out of it (token buckets only: no window policy is ever leased).
 */
export type StoredBucket = RateState & {
  readonly fullAtMs: number;
  readonly leased?: LeasedOut;
};

/**
 * The leases of a bucket that isolates may still be spending, if any.
 *
 * @example
 * liveLease(bucket, Date.now()); // { policy, holders: { "isolate-a": { tokens: 4, untilMs, seq: 7 } } } or undefined
 */
export function liveLease(bucket: StoredBucket | undefined, nowMs: number): LeasedOut | undefined {
  const leased = bucket?.leased;
  if (leased === undefined) return undefined;
  const live = Object.fromEntries(Object.entries(leased.holders).filter(([, h]) => h.untilMs > nowMs && h.tokens > 0));
  return Object.keys(live).length === 0 ? undefined : { policy: leased.policy, holders: live };
}

/**
 * Whole tokens the leases of a record may still hand out.
 *
 * @example
 * leasedTokens({ policy, holders: { a: { tokens: 3, untilMs: 9 }, b: { tokens: 2, untilMs: 9 } } }); // 5
 */
export function leasedTokens(leased: LeasedOut): number {
  return tokensOut(leaseEntries(leased));
}

/**
 * A record's leases as the shared lease math takes them (src/core/leases.ts), each named by its holder.
 *
 * @example
 * leaseEntries({ policy, holders: { a: { tokens: 3, untilMs: 9, seq: 2 } } }); // [{ id: "a", tokens: 3, untilMs: 9 }]
 */
export function leaseEntries(leased: LeasedOut | undefined): LeaseEntry[] {
  return Object.entries(leased?.holders ?? {}).map(([id, { tokens, untilMs }]) => ({ id, tokens, untilMs }));
}

/**
 * A bucket's state as the bucket math must see it under `policy` while `leased` leases are out:
 * a token bucket holds at most its capacity less the tokens they took (`underLeases`, the cap the
 * Upstash script applies too), so the bucket and the leases together never exceed the capacity
 * however long the leases are held. Any other state, or one without live leases, as it is.
 *
 * @example
 * withinLeases(stored, stored.leased, policy, Date.now()); // the level is at most capacity − tokens leased out
 */
export function withinLeases<S extends RateState>(state: S | undefined, leased: LeasedOut | undefined, policy: BucketPolicy, nowMs: number): S | BucketState | undefined {
  const live = liveLeases(leaseEntries(leased), nowMs);
  if (state === undefined || live.length === 0 || !isBucketState(state) || !isTokenBucket(policy)) return state;
  return underLeases(state, live, policy, nowMs, state.generation);
}

/**
 * When a bucket kept with `leased` leases may go: `fullAtMs`, or when the last lease ends if later.
 *
 * @example
 * keptUntilMs(60_000, { policy, holders: { a: { tokens: 3, untilMs: 90_000 } } }); // 90000
 */
export function keptUntilMs(fullAtMs: number, leased: LeasedOut | undefined): number {
  return leasesEndAtMs(leaseEntries(leased), fullAtMs);
}

/**
 * A policy's capacity and refill only.
 *
 * @example
 * shapeOf({ capacity: 5, refillTokens: 1, refillPeriodMs: 1000, blockForMs: 60000 }); // { capacity: 5, refillTokens: 1, refillPeriodMs: 1000 }
 */
export function shapeOf({ capacity, refillTokens, refillPeriodMs }: ShapeOfBucket): ShapeOfBucket {
  return { capacity, refillTokens, refillPeriodMs };
}

/**
 * Whether two shapes are the same capacity and refill.
 *
 * @example
 * sameShape({ capacity: 5, refillTokens: 1, refillPeriodMs: 1000 }, policy); // true when policy has those three
 */
export function sameShape(a: ShapeOfBucket, b: ShapeOfBucket): boolean {
  return a.capacity === b.capacity && a.refillTokens === b.refillTokens && a.refillPeriodMs === b.refillPeriodMs;
}

/**
 * A bucket under a new exact override while isolates hold leases of it: the new capacity caps
 * what the bucket holds plus what the leases may still hand out (they were taken under the old
 * limit), so a lowered limit holds from the next request on. Without live leases (or when the
 * override is removed: the rule's policy is not known here), the bucket is kept as it is and the
 * next take caps it.
 *
 * @example
 * withinNewLimit(bucket, { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, Date.now());
 */
export function withinNewLimit(bucket: StoredBucket, policy: BucketPolicy | null, nowMs: number): StoredBucket {
  const leased = liveLease(bucket, nowMs);
  if (leased === undefined) {
    // Past leases' rests are not given back across a change of policy.
    if (bucket.leased === undefined) return bucket;
    const { leased: _past, ...rest } = bucket;
    return rest;
  }
  if (policy === null || !isBucketState(bucket)) return bucket;
  const state = withinLeases(bucket, leased, policy, nowMs) ?? bucket;
  return { ...state, fullAtMs: bucket.fullAtMs, leased: { ...leased, policy: shapeOf(policy) } };
}
