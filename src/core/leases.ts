import { DEFAULTS } from "./defaults";
import { ceilDiv, floorDiv, refundBucket, stateExpiresInMs, takeTokens, type BucketDecision, type BucketPolicy, type BucketState } from "./algorithms/token-bucket";

/**
 * The lease math of a token bucket whose store keeps the leases beside the state (the Upstash
 * script's Lua twin, `src/backends/upstash/algorithms/token-bucket.lua.ts`, does the same step
 * for step; the TS ≡ Lua property test holds them together). Pure: the clock is passed in.
 *
 * A lease is charges an isolate took from the bucket in one step, to hand out without asking.
 * The store records each lease (id, whole tokens, until when it may be spent) and, while any is
 * live, lets the bucket refill only to its capacity less the tokens leased out: bucket plus
 * leases never exceed the capacity, so what is admitted in any stretch of time stays within the
 * token bucket's bound although leased tokens are spent after they were taken. The cap is taken
 * under the policy in force at each step, so a lowered limit (an override) holds from the next
 * step on, and a reset leaves the bucket full less the leases still out.
 *
 * The Durable Object backend keeps its leases per isolate beside each bucket
 * (`src/core/lease-ledger.ts`) and applies the same functions: the cap (`underLeases`), the
 * grant (`grantLease`), the live leases and the tokens out.
 */

/** One lease out of a bucket, as the store records it. */
export interface LeaseEntry {
  /** Names the lease (its isolate and call), so its give-back can end it. */
  readonly id: string;
  /** Whole tokens it took (charges × cost). */
  readonly tokens: number;
  /** Store clock (ms) until which its isolate may spend it: its lifetime plus {@link LEASE_SLACK_MS}. */
  readonly untilMs: number;
}

/** A bucket's state (none: full) and the leases out of it. */
export interface LeasedBucket {
  readonly state: BucketState | undefined;
  readonly leases: readonly LeaseEntry[];
}

/** A lease asked for: up to `want` charges of `cost`, spendable for `ttlMs`, named `id`. */
export interface LeaseAsk {
  readonly id: string;
  readonly want: number;
  readonly cost: number;
  readonly ttlMs: number;
}

/** The unused rest of a lease going back: `cost` tokens of the lease `id`, whose take wrote `charged`. */
export interface LeaseGiveBack {
  readonly id: string;
  readonly cost: number;
  readonly charged: BucketState;
}

/** A lease granted: `granted` charges; the state its take wrote; the bucket after it. */
export interface GrantedLease {
  readonly granted: number;
  readonly charged: BucketState;
  readonly remaining: number;
  readonly resetMs: number;
  readonly bucket: LeasedBucket;
}

/** A lease takes at most this share of what the bucket holds: a bucket with fewer than this × cost tokens grants none. */
export const LEASE_SHARE = DEFAULTS.leases.share;
/** The store counts a lease as out this much longer than its lifetime (clocks of isolate and store disagree). */
export const LEASE_SLACK_MS = DEFAULTS.leases.slackMs;

/**
 * The leases an isolate may still be spending at `nowMs`, all but `except`.
 *
 * @example
 * liveLeases([{ id: "a.1", tokens: 4, untilMs: 2_000 }], 1_000); // the one lease
 */
export function liveLeases(leases: readonly LeaseEntry[], nowMs: number, except?: string): LeaseEntry[] {
  return leases.filter((lease) => lease.untilMs > nowMs && lease.id !== except);
}

/**
 * Whole tokens of `leases` (all counted: pass live ones).
 *
 * @example
 * tokensOut([{ id: "a.1", tokens: 3, untilMs: 9_000 }, { id: "b.1", tokens: 2, untilMs: 9_000 }]); // 5
 */
export function tokensOut(leases: readonly LeaseEntry[]): number {
  let out = 0;
  for (const lease of leases) out += lease.tokens;
  return out;
}

/** The bucket's level in the policy's units at `nowMs` (the algorithm's own reckoning, repeated here in its integers). */
function levelAt(state: BucketState | undefined, policy: BucketPolicy, nowMs: number): number {
  const full = policy.capacity * policy.refillPeriodMs;
  if (state === undefined) return full;
  const level = state.unitsPerToken === policy.refillPeriodMs ? state.level : floorDiv(state.level, state.unitsPerToken) * policy.refillPeriodMs;
  const missing = full - Math.min(level, full);
  const elapsedMs = Math.max(0, nowMs - state.updatedAtMs);
  if (elapsedMs >= ceilDiv(missing, policy.refillTokens)) return full;
  return full - missing + elapsedMs * policy.refillTokens;
}

/**
 * The state as the bucket math must see it while `live` leases are out: at most the capacity
 * less the leased tokens (never below zero); unchanged when it holds no more. A bucket without
 * state (full) capped this way starts `generation`.
 *
 * @example
 * underLeases(undefined, [{ id: "a.1", tokens: 3, untilMs: 9_000 }], { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 0, 7);
 * // { level: 7000, unitsPerToken: 1000, updatedAtMs: 0, generation: 7 }
 */
export function underLeases(state: BucketState | undefined, live: readonly LeaseEntry[], policy: BucketPolicy, nowMs: number, generation: number): BucketState | undefined {
  const out = tokensOut(live);
  if (out === 0) return state;
  const cap = Math.max(0, policy.capacity - out) * policy.refillPeriodMs;
  if (levelAt(state, policy, nowMs) <= cap) return state;
  const capped = { level: cap, unitsPerToken: policy.refillPeriodMs, updatedAtMs: Math.max(nowMs, state?.updatedAtMs ?? nowMs), generation: state?.generation ?? generation };
  return state?.blockedUntilMs === undefined ? capped : { ...capped, blockedUntilMs: state.blockedUntilMs };
}

/**
 * When a leased bucket stops mattering: its state's end under the `rule` (the charge's own policy)
 * and its leases' ends, whichever is later; at least 1 ms from now.
 *
 * @example
 * leasedExpiresAtMs({ state: undefined, leases: [{ id: "a.1", tokens: 3, untilMs: 9_000 }] }, policy, 0); // 9000
 */
export function leasedExpiresAtMs(bucket: LeasedBucket, rule: BucketPolicy, nowMs: number): number {
  return leasesEndAtMs(bucket.leases, bucket.state === undefined ? nowMs + 1 : nowMs + stateExpiresInMs(bucket.state, rule, nowMs));
}

/**
 * When the last of `leases` ends, or `atMs` if that is later: a store keeps a bucket's leases
 * (and the bucket) at least this long, so each lease is counted out until it ends.
 *
 * @example
 * leasesEndAtMs([{ id: "a.1", tokens: 3, untilMs: 9_000 }], 5_000); // 9000
 */
export function leasesEndAtMs(leases: readonly LeaseEntry[], atMs: number): number {
  let at = atMs;
  for (const lease of leases) at = Math.max(at, lease.untilMs);
  return at;
}

/**
 * A charge of `cost` against a leased bucket: the bucket math on the state capped by the leases
 * out. `next` is what to store (undefined: nothing), with the live leases carried on.
 *
 * @example
 * takeLeased({ state: undefined, leases: [] }, policy, 1, Date.now(), newGeneration()).decision;
 */
export function takeLeased(bucket: LeasedBucket, policy: BucketPolicy, cost: number, nowMs: number, generation: number): { decision: BucketDecision; next: LeasedBucket | undefined } {
  const live = liveLeases(bucket.leases, nowMs);
  const { decision, next } = takeTokens(underLeases(bucket.state, live, policy, nowMs, generation), policy, cost, nowMs, generation);
  return { decision, next: next === undefined ? undefined : { state: next, leases: live } };
}

/**
 * A lease after an allowed charge: up to `ask.want` charges of `ask.cost`, at most
 * 1/{@link LEASE_SHARE} of what the bucket holds, taken from it and recorded beside it. None
 * (undefined) for a policy that blocks or queues, a bucket without state, or too few tokens.
 *
 * @example
 * grantLease(afterCharge, policy, { id: "a.2", want: 4, cost: 1, ttlMs: 1000 }, Date.now())?.granted; // ≤ 4
 */
export function grantLease(bucket: LeasedBucket, policy: BucketPolicy, ask: LeaseAsk, nowMs: number): GrantedLease | undefined {
  if ((policy.blockForMs ?? 0) > 0 || (policy.queueMs ?? 0) > 0 || bucket.state === undefined || ask.want < 1 || ask.cost < 1) return undefined;
  const live = liveLeases(bucket.leases, nowMs);
  const state = underLeases(bucket.state, live, policy, nowMs, bucket.state.generation);
  const remaining = Math.max(0, floorDiv(levelAt(state, policy, nowMs), policy.refillPeriodMs));
  const granted = Math.min(ask.want, floorDiv(remaining, LEASE_SHARE * ask.cost));
  if (granted < 1) return undefined;
  const taken = takeTokens(state, policy, granted * ask.cost, nowMs);
  if (taken.decision.outcome !== "allowed" || taken.next === undefined) return undefined;
  const lease = { id: ask.id, tokens: granted * ask.cost, untilMs: nowMs + ask.ttlMs + LEASE_SLACK_MS };
  return { granted, charged: taken.next, remaining: taken.decision.remaining, resetMs: taken.decision.resetMs, bucket: { state: taken.next, leases: [...live, lease] } };
}

/**
 * The unused rest of a lease comes back: the lease is no longer counted out, and its tokens
 * return with refund semantics (only what they still withhold, only to the generation they were
 * taken from: nothing across a reset), never more than the lease's record says it took.
 * Undefined when nothing changes.
 *
 * @example
 * giveBackLease(bucket, policy, { id: "a.2", cost: 3, charged: grant.charged }, Date.now());
 */
export function giveBackLease(bucket: LeasedBucket, policy: BucketPolicy, giveBack: LeaseGiveBack, nowMs: number): LeasedBucket | undefined {
  const before = liveLeases(bucket.leases, nowMs);
  const live = liveLeases(before, nowMs, giveBack.id);
  // Never more than the lease took, while the store still has its record.
  const cost = Math.min(giveBack.cost, before.find((lease) => lease.id === giveBack.id)?.tokens ?? giveBack.cost);
  const refunded = cost > 0 ? refundBucket(bucket.state, policy, cost, giveBack.charged, nowMs) : bucket.state;
  if (refunded === undefined || (refunded === bucket.state && live.length === before.length)) return undefined;
  return { state: underLeases(refunded, live, policy, nowMs, refunded.generation), leases: live };
}

/**
 * A charge given back (a `count` rule's response it does not count) in a leased bucket: refund
 * semantics, then the cap of the leases out. Undefined when nothing changes.
 *
 * @example
 * refundLeased(bucket, policy, 1, answer.charged, Date.now());
 */
export function refundLeased(bucket: LeasedBucket, policy: BucketPolicy, cost: number, charged: BucketState, nowMs: number): LeasedBucket | undefined {
  const refunded = refundBucket(bucket.state, policy, cost, charged, nowMs);
  if (refunded === undefined || refunded === bucket.state) return undefined;
  const live = liveLeases(bucket.leases, nowMs);
  return { state: underLeases(refunded, live, policy, nowMs, refunded.generation), leases: live };
}

/**
 * A reset: the state is forgotten (the bucket is full), but the leases still out stay recorded,
 * so the bucket holds its capacity less them until they end. Undefined when none is out.
 *
 * @example
 * resetLeased({ state, leases: [{ id: "a.1", tokens: 3, untilMs: Date.now() + 1500 }] }, Date.now()); // { state: undefined, leases: [that lease] }
 */
export function resetLeased(bucket: LeasedBucket, nowMs: number): LeasedBucket | undefined {
  const live = liveLeases(bucket.leases, nowMs);
  return live.length === 0 ? undefined : { state: undefined, leases: live };
}
