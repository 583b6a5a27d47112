/**
 * The seam every rate-limit algorithm sits behind: state + policy + cost + now → decision + the
 * state to write. The stores (memory, Durable Object, Upstash's Lua twin) keep states and call
 * this; they never look inside one. See `./index.ts` for the registry and docs/development.md for
 * how to add an algorithm.
 */

/**
 * The id of every registered algorithm (`./index.ts` registers exactly these; a policy names one in
 * its `algorithm` field). Every algorithm's policy has the token bucket's shape (`BucketPolicy`):
 * a window's limit L is its `capacity`, and its window W the time its rate takes to deliver L
 * (`capacity × refillPeriodMs / refillTokens`), so overrides, headers and status read any policy alike.
 */
export type AlgorithmName = "token-bucket" | "fixed-window" | "sliding-window" | "calendar";

/** The outcome of one `take`; times are whole milliseconds on the store's clock. */
export type BucketDecision =
  | {
      readonly outcome: "allowed";
      readonly remaining: number;
      readonly resetMs: number;
      /** Queued (`queueMs`): charged now, but the request must wait this long (ms ≥ 1) before it proceeds. Absent: go now. */
      readonly waitMs?: number;
    }
  | {
      readonly outcome: "denied";
      readonly remaining: number;
      readonly resetMs: number;
      /** Time until `cost` is admitted (or the block ends). */
      readonly retryAfterMs: number;
    }
  /** The cost is larger than the limit: no wait will ever allow it. */
  | { readonly outcome: "cost_exceeds_capacity"; readonly remaining: number; readonly resetMs: number };

/** What one `take` returns: the decision, the state to write (undefined: write nothing), and how long that state matters. */
export interface Taken<State> {
  readonly decision: BucketDecision;
  readonly next: State | undefined;
  /** How long `next` matters from now (ms, ≥ 1 when written): a store may forget it after that. 0 when nothing is written. */
  readonly expiresInMs: number;
}

/**
 * One algorithm. `State` and `Policy` carry an optional or required `algorithm` discriminant (the
 * id it is registered under); a state is only ever handed to the algorithm that wrote it.
 * All arithmetic is in integers (the Lua twin must reach the same numbers). A peek is `take`'s
 * decision with nothing written.
 *
 * @example
 * const { decision, next, expiresInMs } = tokenBucket.take(undefined, policy, 1, Date.now());
 * if (next) store.put(key, next, { ttlMs: expiresInMs });
 */
export interface Algorithm<State, Policy> {
  /**
   * Charges `cost` at `nowMs` (the store's clock) against `state` (undefined: none stored, e.g. a
   * new client or a reset). A refusal may still write (a block). `generation` names the life of
   * a state this take starts from nothing (see `BucketState.generation`): an algorithm whose
   * refunds must not cross a reset keeps it in its state; one that needs none ignores it.
   */
  take(state: State | undefined, policy: Policy, cost: number, nowMs: number, generation?: number): Taken<State>;
  /**
   * Undoes a charge whose take wrote `charged`: gives back no more than the charge still
   * withholds now (never over-admits). Returns the state to write, or `state` itself when
   * nothing changes.
   */
  refund(state: State | undefined, policy: Policy, cost: number, charged: State, nowMs: number): State | undefined;
  /** How long a stored state matters under `policy` from `nowMs` (≥ 1 ms): a store may forget it after, never before. */
  expiresInMs(state: State, policy: Policy, nowMs: number): number;
  /** A state that admits nothing at `nowMs` (what a degraded isolate assumes of a client it has no room to track). */
  drained(policy: Policy, nowMs: number): State;
  /**
   * What a refund needs of the state a take of `cost` wrote, to be kept (and sent) as the charge's
   * receipt instead of the whole state; absent: the state itself (already small).
   */
  receipt?(charged: State, cost: number): State;
}
