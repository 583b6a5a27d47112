/**
 * The token bucket, in exact integer arithmetic.
 *
 * This is the one TypeScript implementation of the bucket the "Token bucket" section of docs/design.md
 * describes, registered as `"token-bucket"` (the default) in `./index.ts`; the Durable Object and
 * memory backends run it, and `src/backends/upstash/algorithms/token-bucket.lua.ts` is its Lua
 * twin (a property test proves they agree step for step).
 *
 * Units: a rate of `refillTokens` per `refillPeriodMs` is exact as a fraction, so one token is
 * `refillPeriodMs` units and the bucket gains `refillTokens` units per millisecond. Every value
 * is then an integer well below 2^53, which is what a Lua number in Redis can hold exactly.
 */
import type { Algorithm, AlgorithmName, BucketDecision } from "./algorithm";

export type { BucketDecision } from "./algorithm";

/**
 * A bucket's shape: how large and how fast it refills (tokens per period, as a fraction). Every
 * algorithm's policy has this shape (see `AlgorithmName`): a window's limit is `capacity`, its
 * window the time the rate takes to deliver it.
 */
export interface BucketPolicy {
  /** The algorithm (absent: the token bucket, the default). */
  readonly algorithm?: AlgorithmName;
  /** Largest burst, whole tokens, ≥ 1. */
  readonly capacity: number;
  /** Tokens added every `refillPeriodMs` (integer ≥ 1). */
  readonly refillTokens: number;
  /** Period of `refillTokens`, integer milliseconds ≥ 1. */
  readonly refillPeriodMs: number;
  /** After a refusal, refuse everything for this long (ms), whatever the bucket refills. Absent or 0: no block. */
  readonly blockForMs?: number;
  /**
   * Queue instead of refuse (token bucket and sliding window, never with `blockForMs`): a request
   * admitted within this many ms is allowed now and charged now (a bucket's level goes below
   * zero, by at most `queueMs` × rate: a debt the refill pays back; a sliding window logs it at
   * the time it proceeds); its decision's `waitMs` is how long it must wait before it proceeds.
   * Absent or 0: no queue.
   */
  readonly queueMs?: number;
}

/** What a bucket stores between decisions. A missing state means "full". */
export interface BucketState {
  /** The algorithm that wrote it (absent: the token bucket). */
  readonly algorithm?: "token-bucket";
  /** Tokens in units (1 token = `unitsPerToken` units); below zero while queued requests owe refill (`queueMs`). */
  readonly level: number;
  /** The `refillPeriodMs` the level was measured in; a changed policy rescales it. */
  readonly unitsPerToken: number;
  /** Store clock (ms) at which `level` was measured. */
  readonly updatedAtMs: number;
  /**
   * Which life of the bucket this is: a random number ({@link newGeneration}) the take that
   * started it from full chose; every later take carries it on. A reset forgets the state, so
   * the next take starts another, and a refund of a charge made before gives nothing (see
   * {@link refundBucket}). Random rather than a time, so that a bucket reset and started again
   * within one millisecond is still another.
   */
  readonly generation: number;
  /** Store clock (ms) until which a block (`blockForMs`) refuses every request; absent: none. */
  readonly blockedUntilMs?: number;
}

/** Largest integer every step of the arithmetic stays under (Lua numbers are doubles). */
export const MAX_SAFE_UNITS = 2 ** 50;

/**
 * A new bucket generation (see {@link BucketState.generation}): a random integer below 2^48,
 * exact in a Lua number.
 *
 * @example
 * takeTokens(undefined, policy, 1, Date.now(), newGeneration());
 */
export function newGeneration(): number {
  // Random words are drawn a pool at a time: one getRandomValues call costs about 4.5 µs in Node
  // whatever its size, and an Upstash charge takes a generation per script call. The pool is
  // filled on first use, never at a module's top level (Workers allow no randomness there).
  if (generationWordsUsed + 2 > generationWords.length) {
    crypto.getRandomValues(generationWords);
    generationWordsUsed = 0;
  }
  const high = generationWords[generationWordsUsed] ?? 0;
  const low = generationWords[generationWordsUsed + 1] ?? 0;
  generationWordsUsed += 2;
  return (high & 0xffff) * 2 ** 32 + low;
}

/** Random words for {@link newGeneration}, each handed out once; all used at first, so the first call fills them. */
const generationWords = new Uint32Array(512);
let generationWordsUsed = generationWords.length;

/**
 * Charges `cost` tokens against a bucket at `nowMs` (the store's clock).
 *
 * Returns the decision and the state to write back, if any: the spent tokens when allowed; when
 * a refusal starts a block (`blockForMs`), the unchanged tokens with the block's end. Otherwise
 * a denied request changes nothing. `expiresInMs` is how long the written state matters (until
 * the bucket is full and any block is over): a store may forget it after that. A bucket this
 * take starts from full gets `generation` (default: a {@link newGeneration}).
 *
 * @example
 * const policy = { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }; // 1 token/s
 * const first = takeTokens(undefined, policy, 1, Date.now());
 * first.decision; // { outcome: "allowed", remaining: 9, resetMs: 1000 }
 */
export function takeTokens(
  state: BucketState | undefined,
  policy: BucketPolicy,
  cost: number,
  nowMs: number,
  generation?: number,
): { decision: BucketDecision; next: BucketState | undefined; expiresInMs: number } {
  const unitsPerToken = policy.refillPeriodMs;
  const fullLevel = policy.capacity * unitsPerToken;
  const level = currentLevel(state, policy, nowMs);
  // Whole tokens left; none while queued requests owe refill (a level below zero).
  const remainingAfter = (units: number) => Math.max(0, floorDiv(units, unitsPerToken));
  const msUntil = (units: number) => ceilDiv(units, policy.refillTokens);
  const blockForMs = policy.blockForMs ?? 0;
  const blockedUntilMs = blockForMs > 0 ? (state?.blockedUntilMs ?? 0) : 0;
  const unchanged = (decision: BucketDecision) => ({ decision, next: undefined, expiresInMs: 0 });

  if (cost > policy.capacity) {
    return unchanged({ outcome: "cost_exceeds_capacity", remaining: remainingAfter(level), resetMs: msUntil(fullLevel - level) });
  }
  const resetMs = msUntil(fullLevel - level);
  if (nowMs < blockedUntilMs) {
    // Blocked: refused until the block ends, whatever the bucket holds.
    return unchanged({ outcome: "denied", remaining: remainingAfter(level), resetMs, retryAfterMs: blockedUntilMs - nowMs });
  }
  const costUnits = cost * unitsPerToken;
  // The wait until the cost has refilled; a queue admits it now if that is within `queueMs`.
  const waitMs = level < costUnits ? msUntil(costUnits - level) : 0;
  if (waitMs > (blockForMs === 0 ? (policy.queueMs ?? 0) : 0)) {
    if (blockForMs === 0 || state === undefined) return unchanged({ outcome: "denied", remaining: remainingAfter(level), resetMs, retryAfterMs: waitMs });
    // This refusal starts a block: the tokens stay as stored, the block's end is written beside them.
    // (A state stored by an earlier version has no generation: it starts one here.)
    const blocked = {
      level: state.level,
      unitsPerToken: state.unitsPerToken,
      updatedAtMs: state.updatedAtMs,
      generation: state.generation ?? generation ?? newGeneration(),
      blockedUntilMs: nowMs + blockForMs,
    };
    return {
      decision: { outcome: "denied", remaining: remainingAfter(level), resetMs, retryAfterMs: Math.max(waitMs, blockForMs) },
      next: blocked,
      expiresInMs: stateExpiresInMs(blocked, policy, nowMs),
    };
  }
  // A queued charge leaves the bucket exactly empty at the whole millisecond it proceeds: the
  // debt is the wait's refill, so the fraction of a ms the wait was rounded up by is spent too.
  // Queued requests then proceed ⌈cost / rate⌉ apart, and any T holds at most C + ρ·T units.
  const after = waitMs > 0 ? -waitMs * policy.refillTokens : level - costUnits;
  // A clock that stepped back must not refill the same stretch of time twice.
  const stamp = Math.max(nowMs, state?.updatedAtMs ?? nowMs);
  // A bucket taken from full starts a generation; every later take carries it on.
  const next = { level: after, unitsPerToken, updatedAtMs: stamp, generation: state?.generation ?? generation ?? newGeneration() };
  return {
    decision: { outcome: "allowed", remaining: remainingAfter(after), resetMs: msUntil(fullLevel - after), ...(waitMs > 0 && { waitMs }) },
    next,
    expiresInMs: stateExpiresInMs(next, policy, nowMs),
  };
}

/**
 * How long a stored state matters under `policy`, from `nowMs`: until the bucket is full again
 * (counted from the state's own stamp) and any block is over; at least 1 ms. A store may forget
 * the state after that (a missing bucket is full), and must not before.
 *
 * @example
 * const { next } = takeTokens(undefined, { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 3, 0);
 * stateExpiresInMs(next!, { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 500); // 2500
 */
export function stateExpiresInMs(state: BucketState, policy: BucketPolicy, nowMs: number): number {
  const fullLevel = policy.capacity * policy.refillPeriodMs;
  const missing = fullLevel - Math.min(storedLevel(state, policy), fullLevel);
  return Math.max(1, state.updatedAtMs - nowMs + ceilDiv(missing, policy.refillTokens), (state.blockedUntilMs ?? 0) - nowMs);
}

/** The state's level in the policy's units: a policy whose period changed measures tokens in other units, so keep the whole tokens. */
function storedLevel(state: BucketState, policy: BucketPolicy): number {
  return state.unitsPerToken === policy.refillPeriodMs ? state.level : floorDiv(state.level, state.unitsPerToken) * policy.refillPeriodMs;
}

/** The bucket's level in units at `nowMs`: the stored level plus continuous refill, capped. */
function currentLevel(state: BucketState | undefined, policy: BucketPolicy, nowMs: number): number {
  const fullLevel = policy.capacity * policy.refillPeriodMs;
  if (state === undefined) return fullLevel;
  const missing = fullLevel - Math.min(storedLevel(state, policy), fullLevel);
  const elapsedMs = Math.max(0, nowMs - state.updatedAtMs);
  // Compare before multiplying, so elapsed × rate cannot leave the exact integer range.
  if (elapsedMs >= ceilDiv(missing, policy.refillTokens)) return fullLevel;
  return fullLevel - missing + elapsedMs * policy.refillTokens;
}

/** Exact ⌊a / b⌋ for integers of magnitude below 2^53, b > 0 (float division can round up). */
export function floorDiv(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) q -= 1;
  else if ((q + 1) * b <= a) q += 1;
  return q;
}

/** Exact ⌈a / b⌉ for integers of magnitude below 2^53, b > 0. */
export function ceilDiv(a: number, b: number): number {
  const q = floorDiv(a, b);
  return q * b === a ? q : q + 1;
}

/**
 * Undoes a charge: another store refused the same request, or a `count` rule does not count
 * the response. `charged` is the state the charge wrote. What the charge still withholds fades
 * as refill would have filled the bucket anyway, so the refund gives back only that: it never
 * over-admits. A bucket that is gone (refilled and cleaned up, or reset), of another generation
 * (reset since the charge, then taken again: the charge was not made from this bucket) or whose
 * policy's period changed gets nothing back.
 *
 * @example
 * const { next } = takeTokens(state, policy, 1, now);
 * const restored = refundBucket(next, policy, 1, next!, Date.now());
 */
export function refundBucket(state: BucketState | undefined, policy: BucketPolicy, cost: number, charged: BucketState, nowMs: number): BucketState | undefined {
  if (state === undefined || state.generation !== charged.generation || charged.unitsPerToken !== policy.refillPeriodMs) return state;
  const full = policy.capacity * policy.refillPeriodMs;
  const sinceCharge = Math.max(0, nowMs - charged.updatedAtMs);
  const gapAtCharge = full - charged.level;
  // min(cost, gap left after the refill since the charge), compared before multiplying.
  const withheld = sinceCharge >= ceilDiv(gapAtCharge, policy.refillTokens) ? 0 : Math.min(cost * policy.refillPeriodMs, gapAtCharge - sinceCharge * policy.refillTokens);
  if (withheld === 0) return state;
  const level = Math.min(full, currentLevel(state, policy, nowMs) + withheld);
  const refunded = { level, unitsPerToken: policy.refillPeriodMs, updatedAtMs: Math.max(nowMs, state.updatedAtMs), generation: state.generation };
  return state.blockedUntilMs === undefined ? refunded : { ...refunded, blockedUntilMs: state.blockedUntilMs };
}

/**
 * A lower bound on the wait before `cost` more tokens are there, knowing only the bucket's time
 * to full (`resetMs`, rounded up to whole ms, as every decision reports it). An allowed decision
 * that leaves the bucket nearly empty thus tells the deny cache how long the next request would
 * be refused, without asking the store. Never longer than the true wait.
 *
 * @example
 * // capacity 10 at 1/s, just emptied: full in 10 s, the next token in (at least) 999 ms.
 * waitForTokensMs({ capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 1, 10_000); // 999
 */
export function waitForTokensMs(policy: BucketPolicy, cost: number, resetMs: number): number {
  // Missing units are above (resetMs - 1) × rate; the cost's share of the gap is all but (capacity - cost) tokens.
  const missingAtLeast = Math.max(0, resetMs - 1) * policy.refillTokens;
  const beyondCost = (policy.capacity - cost) * policy.refillPeriodMs;
  return missingAtLeast <= beyondCost ? 0 : floorDiv(missingAtLeast - beyondCost, policy.refillTokens);
}

/**
 * The token bucket on the algorithm seam (registered as `"token-bucket"`, the default).
 *
 * @example
 * tokenBucket.take(undefined, { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 1, 0).decision;
 * // { outcome: "allowed", remaining: 9, resetMs: 1000 }
 */
export const tokenBucket: Algorithm<BucketState, BucketPolicy> = {
  take: takeTokens,
  refund: refundBucket,
  expiresInMs: stateExpiresInMs,
  drained: (policy, nowMs) => ({ level: 0, unitsPerToken: policy.refillPeriodMs, updatedAtMs: nowMs, generation: 0 }),
};
