/**
 * The fixed window, registered as `"fixed-window"`: at most L units per window of W ms aligned to
 * the Unix epoch (windows start at every multiple of W since 1970-01-01T00:00:00Z on the store's
 * clock: a "1m" window starts on the minute, a "1h" on the hour, a "1d" at midnight UTC). Worst
 * case: 2L in a trailing W (L at the end of one window, L at the start of the next).
 * `src/backends/upstash/algorithms/fixed-window.lua.ts` is its Lua twin.
 */
import type { Algorithm, BucketDecision } from "./algorithm";
import { floorDiv, newGeneration, type BucketPolicy } from "./token-bucket";
import { windowMs } from "./window-policy";

/** What a fixed window stores between decisions. A missing state means "nothing used". */
export interface FixedWindowState {
  readonly algorithm: "fixed-window";
  /** Store clock (ms) at which the window this state counts started (a multiple of its W). */
  readonly windowStartMs: number;
  /** Units admitted in that window. */
  readonly used: number;
  /** Which life of the state this is (see `BucketState.generation`): a refund never crosses a reset. */
  readonly generation: number;
  /** Store clock (ms) until which a block (`blockForMs`) refuses every request; absent: none. */
  readonly blockedUntilMs?: number;
}

/** The start of the window of length `w` that holds `ms`. */
const aligned = (ms: number, w: number) => floorDiv(Math.max(0, ms), w) * w;

/**
 * The window in force at `nowMs` and what it has used: the stored window if it is the current one
 * (or a later one: the store's clock stepped back, so count it, towards refusing), else a new one.
 */
function current(state: FixedWindowState | undefined, policy: BucketPolicy, nowMs: number): { startMs: number; used: number } {
  const w = windowMs(policy);
  const now = aligned(nowMs, w);
  if (state === undefined) return { startMs: now, used: 0 };
  const stored = aligned(state.windowStartMs, w);
  return stored >= now ? { startMs: stored, used: state.used } : { startMs: now, used: 0 };
}

/**
 * Charges `cost` at `nowMs`. Allowed while the window's used units plus `cost` stay within L;
 * `resetMs` is the time to the window's end, and a refusal's `retryAfterMs` too (or the block's end).
 *
 * @example
 * const policy = { algorithm: "fixed-window", capacity: 100, refillTokens: 1, refillPeriodMs: 600 } as const; // 100 per 1m
 * takeFixedWindow(undefined, policy, 1, 30_000).decision; // { outcome: "allowed", remaining: 99, resetMs: 30000 }
 */
export function takeFixedWindow(
  state: FixedWindowState | undefined,
  policy: BucketPolicy,
  cost: number,
  nowMs: number,
  generation?: number,
): { decision: BucketDecision; next: FixedWindowState | undefined; expiresInMs: number } {
  const limit = policy.capacity;
  const { startMs, used } = current(state, policy, nowMs);
  const resetMs = startMs + windowMs(policy) - nowMs;
  const remaining = Math.max(0, limit - used);
  const blockForMs = policy.blockForMs ?? 0;
  const blockedUntilMs = blockForMs > 0 ? (state?.blockedUntilMs ?? 0) : 0;
  const unchanged = (decision: BucketDecision) => ({ decision, next: undefined, expiresInMs: 0 });
  if (cost > limit) return unchanged({ outcome: "cost_exceeds_capacity", remaining, resetMs });
  if (nowMs < blockedUntilMs) return unchanged({ outcome: "denied", remaining, resetMs, retryAfterMs: blockedUntilMs - nowMs });
  if (used + cost > limit) {
    if (blockForMs === 0 || state === undefined) return unchanged({ outcome: "denied", remaining, resetMs, retryAfterMs: resetMs });
    // This refusal starts a block: what the window used stays, the block's end is written beside it.
    const blocked = { algorithm: "fixed-window" as const, windowStartMs: startMs, used, generation: state.generation, blockedUntilMs: nowMs + blockForMs };
    return { decision: { outcome: "denied", remaining, resetMs, retryAfterMs: Math.max(resetMs, blockForMs) }, next: blocked, expiresInMs: fixedWindowExpiresInMs(blocked, policy, nowMs) };
  }
  const next = { algorithm: "fixed-window" as const, windowStartMs: startMs, used: used + cost, generation: state?.generation ?? generation ?? newGeneration() };
  return { decision: { outcome: "allowed", remaining: limit - used - cost, resetMs }, next, expiresInMs: fixedWindowExpiresInMs(next, policy, nowMs) };
}

/**
 * How long a state matters under `policy`: until its window ends and any block is over (≥ 1 ms).
 *
 * @example
 * fixedWindowExpiresInMs({ algorithm: "fixed-window", windowStartMs: 0, used: 3, generation: 1 }, policy, 45_000); // 15000 for a 1m window
 */
export function fixedWindowExpiresInMs(state: FixedWindowState, policy: BucketPolicy, nowMs: number): number {
  const w = windowMs(policy);
  return Math.max(1, aligned(state.windowStartMs, w) + w - nowMs, (state.blockedUntilMs ?? 0) - nowMs);
}

/**
 * Undoes a charge: while the window it was made in still runs (and the state was not reset since:
 * same generation), its cost comes back; after, it withholds nothing, and nothing comes back.
 *
 * @example
 * const { next } = takeFixedWindow(undefined, policy, 2, 1000);
 * refundFixedWindow(next, policy, 2, next!, 2000)?.used; // 0
 */
export function refundFixedWindow(state: FixedWindowState | undefined, policy: BucketPolicy, cost: number, charged: FixedWindowState, nowMs: number): FixedWindowState | undefined {
  if (state === undefined || state.generation !== charged.generation) return state;
  const w = windowMs(policy);
  const start = aligned(charged.windowStartMs, w);
  if (aligned(state.windowStartMs, w) !== start || nowMs >= start + w) return state;
  const used = Math.max(0, state.used - cost);
  return used === state.used ? state : { ...state, used };
}

/**
 * The fixed window on the algorithm seam (registered as `"fixed-window"`).
 *
 * @example
 * fixedWindow.take(undefined, { algorithm: "fixed-window", capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 1, 0).decision;
 * // { outcome: "allowed", remaining: 9, resetMs: 10000 }
 */
export const fixedWindow: Algorithm<FixedWindowState, BucketPolicy> = {
  take: takeFixedWindow,
  refund: refundFixedWindow,
  expiresInMs: fixedWindowExpiresInMs,
  drained: (policy, nowMs) => ({ algorithm: "fixed-window", windowStartMs: aligned(nowMs, windowMs(policy)), used: policy.capacity, generation: 0 }),
};
