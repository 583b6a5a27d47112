/**
 * The registry of rate-limit algorithms, and the multi-bucket operations that dispatch through
 * it. A policy names its algorithm (`policy.algorithm`, default {@link DEFAULT_ALGORITHM}); so
 * does a state. Adding an algorithm: its module here, its Lua twin under
 * `src/backends/upstash/algorithms/`, a property test, and one line in {@link ALGORITHMS}
 * (see docs/development.md).
 */
import type { Algorithm, AlgorithmName, BucketDecision, Taken } from "./algorithm";
import { calendar } from "./calendar";
import { fixedWindow } from "./fixed-window";
import { slidingWindow } from "./sliding-window";
import { tokenBucket } from "./token-bucket";

/** Every algorithm, by the id policies and states name it with. One line per algorithm (and its id in `AlgorithmName`). */
export const ALGORITHMS = {
  "token-bucket": tokenBucket,
  "fixed-window": fixedWindow,
  "sliding-window": slidingWindow,
  calendar,
} as const satisfies Record<AlgorithmName, unknown>;

/** An algorithm's id. */
export type AlgorithmId = keyof typeof ALGORITHMS;

/** The algorithm of a policy or state that names none: every policy before algorithms had names. */
export const DEFAULT_ALGORITHM = "token-bucket" satisfies AlgorithmId;

type PolicyOf<A> = A extends Algorithm<unknown, infer P> ? P : never;
type StateOf<A> = A extends Algorithm<infer S, unknown> ? S : never;

/** The policy type of one algorithm, by id. */
export type AlgorithmPolicy<K extends AlgorithmId> = PolicyOf<(typeof ALGORITHMS)[K]>;
/** The state type of one algorithm, by id. */
export type AlgorithmState<K extends AlgorithmId> = StateOf<(typeof ALGORITHMS)[K]>;

/** A policy of any registered algorithm (a union discriminated by `algorithm`). */
export type RatePolicy = PolicyOf<(typeof ALGORITHMS)[AlgorithmId]>;
/** A stored state of any registered algorithm (a union discriminated by `algorithm`). */
export type RateState = StateOf<(typeof ALGORITHMS)[AlgorithmId]>;

/**
 * The algorithm a policy names.
 *
 * @example
 * algorithmOf({ capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }); // the token bucket
 */
export function algorithmOf(policy: RatePolicy): Algorithm<RateState, RatePolicy> {
  const algorithm: unknown = ALGORITHMS[policy.algorithm ?? DEFAULT_ALGORITHM];
  if (algorithm === undefined) throw new Error(`unknown rate-limit algorithm: ${String(policy.algorithm)}`);
  // The policy names the algorithm, and `ownState` hands it only states it wrote.
  return algorithm as Algorithm<RateState, RatePolicy>;
}

/**
 * `state` if the policy's algorithm wrote it, else undefined: a rule whose algorithm changed
 * starts afresh, as after a reset (a state is only read by the algorithm that wrote it).
 */
function ownState(state: RateState | undefined, policy: RatePolicy): RateState | undefined {
  return state !== undefined && (state.algorithm ?? DEFAULT_ALGORITHM) === (policy.algorithm ?? DEFAULT_ALGORITHM) ? state : undefined;
}

/**
 * Charges `cost` under `policy`'s algorithm; a peek is this decision with nothing written.
 *
 * @example
 * const { decision, next } = take(state, policy, 1, Date.now());
 */
export function take(state: RateState | undefined, policy: RatePolicy, cost: number, nowMs: number, generation?: number): Taken<RateState> {
  return algorithmOf(policy).take(ownState(state, policy), policy, cost, nowMs, generation);
}

/**
 * How long a stored state matters under `policy` from `nowMs` (≥ 1 ms); a state of another
 * algorithm no longer matters to this policy, but is kept 1 ms, as a store must keep what it wrote.
 *
 * @example
 * store.expireIn(key, expiresInMs(next, policy, Date.now()));
 */
export function expiresInMs(state: RateState, policy: RatePolicy, nowMs: number): number {
  const own = ownState(state, policy);
  return own === undefined ? 1 : algorithmOf(policy).expiresInMs(own, policy, nowMs);
}

/**
 * Undoes a charge: another store refused the same request, or a `count` rule does not count
 * the response. `charged` is the state the charge wrote. The algorithm gives back only what the
 * charge still withholds, so a refund never over-admits (for the token bucket: see
 * `refundBucket`). A state of another algorithm than the policy's gets nothing back.
 *
 * @example
 * const { next } = takeTokens(state, policy, 1, now);
 * const restored = refundTokens(next, policy, 1, next!, Date.now());
 */
export function refundTokens(state: RateState | undefined, policy: RatePolicy, cost: number, charged: RateState, nowMs: number): RateState | undefined {
  const own = ownState(state, policy);
  if (own === undefined || ownState(charged, policy) === undefined) return state;
  return algorithmOf(policy).refund(own, policy, cost, charged, nowMs);
}

/**
 * A state that admits nothing now under `policy`'s algorithm (a degraded isolate's assumption for
 * a client it cannot track).
 *
 * @example
 * drained({ capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, Date.now()); // an empty bucket
 */
export function drained(policy: RatePolicy, nowMs: number): RateState {
  return algorithmOf(policy).drained(policy, nowMs);
}

/**
 * Whether a policy is a token bucket's: only those may be leased out, predicted empty by the deny
 * cache, or scaled by refill (a window's state is not a level that refills).
 *
 * @example
 * isTokenBucket({ algorithm: "fixed-window", capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }); // false
 */
export function isTokenBucket(policy: RatePolicy): boolean {
  return (policy.algorithm ?? DEFAULT_ALGORITHM) === "token-bucket";
}

/**
 * Whether a stored state is a token bucket's (the only kind a lease is taken from).
 *
 * @example
 * if (isBucketState(stored)) takeTokens(stored, policy, 0, nowMs);
 */
export function isBucketState(state: RateState): state is AlgorithmState<"token-bucket"> {
  return (state.algorithm ?? DEFAULT_ALGORITHM) === "token-bucket";
}

/** One bucket's part in a multi-bucket take. */
export interface BucketEntry {
  readonly state: RateState | undefined;
  readonly policy: RatePolicy;
  readonly cost: number;
  /** A refusal from an enforced bucket refuses the whole request; a shadow bucket only reports. */
  readonly enforced: boolean;
}

/** One bucket's result in a multi-bucket take: its entry, its decision, and the state to write (if any). */
export interface BucketResult<E extends BucketEntry> {
  readonly entry: E;
  readonly decision: BucketDecision;
  /** The state to write back; undefined when nothing is written. */
  readonly next: RateState | undefined;
  /** How long the written state matters (see {@link Taken}). */
  readonly expiresInMs: number;
  /** An allowed charge's receipt, what a refund of it needs ({@link receiptOf}); undefined when nothing was charged. */
  readonly charged: RateState | undefined;
}

/**
 * What a refund of a charge needs of the state it wrote: the algorithm's compact receipt (a
 * sliding window's one admission instead of its whole log), else the state itself.
 *
 * @example
 * receiptOf(next, policy, 1); // what to keep for `refundTokens(…, charged, …)`
 */
export function receiptOf(charged: RateState, policy: RatePolicy, cost: number): RateState {
  const algorithm = algorithmOf(policy);
  return ownState(charged, policy) === undefined || algorithm.receipt === undefined ? charged : algorithm.receipt(charged, cost);
}

/**
 * Charges one request to several buckets, all or nothing: if any enforced bucket refuses, no
 * bucket is charged (a refusal that writes, such as one starting a block, still writes).
 * Otherwise every bucket that allowed (shadow ones included) is charged. Each bucket is decided
 * by its policy's algorithm. This is the semantics of the Lua script's multi-key form. Each
 * result carries its entry, so callers never align arrays by index.
 *
 * @example
 * const { results } = takeBuckets([{ state: undefined, policy, cost: 1, enforced: true, bucket: "api" }], Date.now());
 * for (const { entry, next } of results) if (next) save(entry.bucket, next);
 */
export function takeBuckets<E extends BucketEntry>(entries: readonly E[], nowMs: number, generation?: number): { results: BucketResult<E>[]; refused: boolean } {
  const taken = entries.map((entry) => ({ entry, ...take(entry.state, entry.policy, entry.cost, nowMs, generation) }));
  const refused = taken.some(({ entry, decision }) => entry.enforced && decision.outcome !== "allowed");
  const writes = (result: (typeof taken)[number]) => !refused || result.decision.outcome !== "allowed";
  const charged = ({ entry, decision, next }: (typeof taken)[number]) => (decision.outcome === "allowed" && next !== undefined ? receiptOf(next, entry.policy, entry.cost) : undefined);
  return {
    results: taken.map((result) => (writes(result) ? { ...result, charged: charged(result) } : { ...result, next: undefined, expiresInMs: 0, charged: undefined })),
    refused,
  };
}
